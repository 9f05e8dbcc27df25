"""Celery tasks for deliveries. Each takes ids and makes one call; the logic is in the modules."""
import logging

from celery import shared_task

from .conversations import close_waiting
from .delivery import reconcile_stuck_deliveries, send_delivery, settle_uncertain_deliveries
from .retention import apply_retention
from .support_automation import ask_satisfaction
from .webhooks.sandbox import simulate_events

log = logging.getLogger(__name__)

# No Celery retries: send_delivery puts a delivery that met a transient error back in the queue
# with its next attempt's time, and the tick publishes it when it is due (channels/publishing.py).
# An hour of backoff would not survive as broker countdowns (held in worker memory, redelivered
# by Redis after its visibility timeout). A worker killed mid-task hands the message back to the
# broker (reject_on_worker_lost): the send is idempotent (it claims the row), so running it again
# is safe.
@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def send_delivery_task(delivery_id: int) -> None:
    """Send a queued delivery. Enqueue on omni.choices.send_queue(purpose, channel)."""
    send_delivery(delivery_id)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def send_deliveries_task(delivery_ids: list[int], queue: str) -> None:
    """Send a batch of queued deliveries from `queue`."""
    for delivery_id in delivery_ids:
        try:
            send_delivery(delivery_id)
        except Exception:
            # send_delivery has marked it uncertain (never resent blindly); the rest of the
            # batch must not wait on one delivery's bug.
            log.exception("Delivery %s failed unexpectedly", delivery_id)


@shared_task(ignore_result=True)
def simulate_sandbox_events_task(delivery_id: int) -> None:
    """Report the sandbox's simulated provider events for a delivery."""
    simulate_events(delivery_id)


@shared_task(ignore_result=True)
def reconcile_deliveries_task() -> None:
    """Mark deliveries whose worker died mid-send as uncertain (beat, every minute)."""
    reconcile_stuck_deliveries()


@shared_task(ignore_result=True)
def settle_uncertain_deliveries_task() -> None:
    """Ask providers how uncertain deliveries ended, in batches (beat, every minute)."""
    settle_uncertain_deliveries()


@shared_task(ignore_result=True)
def close_waiting_conversations_task() -> None:
    """Close conversations left waiting on the customer too long (beat, hourly)."""
    close_waiting()


@shared_task(ignore_result=True)
def apply_retention_task() -> None:
    """Blank message bodies older than OMNI_RETENTION_DAYS, in batches (beat, daily)."""
    apply_retention()


@shared_task(ignore_result=True)
def ask_satisfaction_task() -> None:
    """Ask the satisfaction question in conversations that closed (beat, every minute)."""
    ask_satisfaction()
