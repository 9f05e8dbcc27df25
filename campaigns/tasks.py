from celery import shared_task
from django.conf import settings
from django.utils import timezone

from omni.lib.tasks import publish
from omni.lib.webhooks import backoff

from . import auto_pause, webhook_calls
from .advancing import ENROLLMENT_LEASE, run_claimed_enrollments
from .campaign_sending import RECIPIENT_LEASE, send_campaign_batch
from .campaign_start_requests import retry_stalled_starts, run_requested_start
from .tick import tick


# The Celery queue of run_enrollments_task, apart from sends so a send backlog never holds up steps.
JOURNEY_QUEUE = "journeys"
# The Celery queue of send_campaign_batch_task: a blast's fan-out never holds up journey steps.
CAMPAIGN_QUEUE = "campaigns"


@shared_task(ignore_result=True)
def tick_task():
    """Claim all due orchestration work (beat runs this every OMNI_TICK_SECONDS); due journey
    steps are handed to run_enrollments_task in batches, due campaign recipients to
    send_campaign_batch_task."""
    return tick(hand_off_to=hand_off_enrollments, hand_off_recipients_to=hand_off_recipients).as_dict()


@shared_task(ignore_result=True)
def watch_sends_task() -> int:
    """Pause the sending campaigns and active journeys whose sends breach a limit (beat runs this
    every OMNI_AUTO_PAUSE_SECONDS)."""
    return auto_pause.watch_sends(timezone.now())


# acks_late: a worker lost mid-start leaves the message to be redelivered (the snapshot's
# transaction rolled back); a copy that finds the campaign no longer starting does nothing.
@shared_task(acks_late=True, ignore_result=True)
def start_campaign_task(campaign_id: int) -> str:
    """Take the audience snapshot of a campaign whose start was asked for (request_start).
    Enqueued on the "default" queue."""
    return run_requested_start(campaign_id)


@shared_task(ignore_result=True)
def retry_stalled_starts_task() -> dict:
    """Hand off again the campaign starts a lost worker left starting, or give up on them (beat,
    every minute)."""
    return retry_stalled_starts()


# acks_late: a worker lost mid-batch leaves the message to be redelivered; the batch's lease
# also expires, so the steps run either way, once.
@shared_task(acks_late=True, ignore_result=True)
def run_enrollments_task(enrollment_ids: list[int]) -> int:
    """Run a batch of enrollments the tick claimed. Enqueue on JOURNEY_QUEUE."""
    return run_claimed_enrollments(enrollment_ids)


def hand_off_enrollments(enrollment_ids: list[int]) -> bool:
    """Publish a claimed batch to the workers. Never raises for a broker error: the claim has
    committed, and the batch is claimed again when its lease ends."""
    return publish(run_enrollments_task, (enrollment_ids,), queue=JOURNEY_QUEUE,
                   if_lost=f"Could not hand {len(enrollment_ids)} claimed enrollments to the workers; they are "
                           f"claimed again after {ENROLLMENT_LEASE}")


# acks_late: a worker lost mid-batch leaves the message to be redelivered; the batch's lease
# also expires, and the messages' idempotency keys make a second run send nothing twice.
@shared_task(acks_late=True, ignore_result=True)
def send_campaign_batch_task(recipient_ids: list[int]) -> int:
    """Send a batch of campaign recipients the tick claimed. Enqueue on CAMPAIGN_QUEUE."""
    return send_campaign_batch(recipient_ids)


def hand_off_recipients(recipient_ids: list[int]) -> bool:
    """Publish a claimed batch of campaign recipients to the workers. Never raises for a broker
    error: the claim has committed, and the batch is claimed again when its lease ends."""
    return publish(send_campaign_batch_task, (recipient_ids,), queue=CAMPAIGN_QUEUE,
                   if_lost=f"Could not hand {len(recipient_ids)} claimed campaign recipients to the workers; they "
                           f"are claimed again after {RECIPIENT_LEASE}")


# acks_late: a worker lost mid-call calls again, with the same Idempotency-Key.
@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=None)
def call_webhook_task(self, enrollment_id: int, waiting_for: str, step_key: str, endpoint_name: str,
                      body: dict) -> bool:
    """Call a journey webhook step's endpoint for one enrollment waiting for it, retrying with
    backoff what may be retried, then keep the answer and wake the enrollment. Enqueue on
    OUTBOUND_QUEUE (the step does, once its batch commits)."""
    attempt = self.request.retries + 1
    answer = webhook_calls.call_once(enrollment_id, waiting_for, endpoint_name, body, attempt)
    if answer is None:
        return False
    if answer.retryable and attempt < settings.OMNI_WEBHOOK_ATTEMPTS:
        raise self.retry(countdown=backoff(attempt, base=settings.OMNI_WEBHOOK_RETRY_BASE_SECONDS))
    return webhook_calls.keep_answer(enrollment_id, waiting_for, step_key, answer)
