from celery import shared_task

from .audit import seal_pending


@shared_task(ignore_result=True)
def seal_audit_task() -> int:
    """Seal committed audit entries into the chain (beat, every OMNI_SEAL_SECONDS)."""
    return seal_pending()
