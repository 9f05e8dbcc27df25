"""Celery tasks of contacts: a large upload is checked and imported here, off the page
(contacts/imports.py holds the work), and erasures queued behind an import are carried out
(contacts/erasure_requests.py). Enqueued on the "default" queue."""
from celery import shared_task

from .erasure_requests import carry_out_erasure_requests
from .imports import check_import, discard_unused_uploads, fail_import, run_import
from .models import ContactImport


@shared_task(ignore_result=True)
def check_contact_import_task(contact_import_id: int) -> None:
    """Check every row of an upload (its page shows the errors and asks what to import)."""
    contact_import = ContactImport.objects.filter(pk=contact_import_id).first()
    if contact_import is None:
        return
    try:
        check_import(contact_import)
    except Exception as exc:
        fail_import(contact_import_id, f"The check stopped on an unexpected error: {exc.__class__.__name__}.")
        raise


@shared_task(ignore_result=True)
def run_contact_import_task(contact_import_id: int, mode: str) -> None:
    """Import a checked upload: the valid rows, or none if any is bad (`mode`)."""
    contact_import = ContactImport.objects.filter(pk=contact_import_id).first()
    if contact_import is None:
        return
    try:
        run_import(contact_import, mode)
    except Exception as exc:
        fail_import(contact_import_id, f"The import stopped on an unexpected error: {exc.__class__.__name__}.")
        raise


@shared_task(ignore_result=True)
def discard_unused_uploads_task() -> int:
    """Drop the files of uploads left unimported past OMNI_IMPORT_KEEP_HOURS (beat, hourly)."""
    return discard_unused_uploads()


@shared_task(ignore_result=True)
def carry_out_erasure_requests_task() -> dict:
    """Erase the contacts whose erasure waited for an import (beat, every minute; and queued at the
    end of every import)."""
    return carry_out_erasure_requests()
