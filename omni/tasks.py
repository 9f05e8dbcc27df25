from celery import shared_task

from .audit import seal_pending


@shared_task(ignore_result=True)
def seal_audit_task() -> int:
    """Seal committed audit entries into the chain (beat, every OMNI_SEAL_SECONDS)."""
    return seal_pending()


@shared_task(ignore_result=True)
def verify_audit_task() -> bool:
    """Verify the audit chain and record the result (beat, nightly at OMNI_VERIFY_AUDIT_CRON)."""
    from .audit_verification import verify_and_record

    _, problems = verify_and_record(reason="beat")
    return not problems
