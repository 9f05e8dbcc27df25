from celery import shared_task

from . import engine


@shared_task(ignore_result=True)
def tick_task():
    """Claim all due orchestration work (beat runs this every OMNI_TICK_SECONDS); due journey
    steps are handed to run_enrollments_task in batches."""
    return engine.tick(hand_off=True).as_dict()


# acks_late: a worker lost mid-batch leaves the message to be redelivered; the batch's lease
# also expires, so the steps run either way, once.
@shared_task(acks_late=True, ignore_result=True)
def run_enrollments_task(enrollment_ids: list[int]) -> int:
    """Run a batch of enrollments the tick claimed. Enqueue on engine.JOURNEY_QUEUE."""
    return engine.run_claimed_enrollments(enrollment_ids)
