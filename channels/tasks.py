"""Celery tasks for deliveries. Each takes ids and makes one call; the logic is in the modules."""
import logging

from celery import shared_task

from .base import DeliveryError
from .delivery import MAX_SEND_ATTEMPTS, reconcile_stuck_deliveries, send_delivery, settle_uncertain_deliveries
from .providers.sandbox import simulate_events


# Only transient errors reach Celery (send_delivery settles permanent ones itself). Backoff
# from 10 s, capped at 5 minutes and jittered, so a provider outage is not hammered in step.
# A worker killed mid-task hands the message back to the broker (reject_on_worker_lost): the
# send is idempotent (it claims the row), so running it again is safe.
@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(DeliveryError,),
    retry_backoff=10,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=MAX_SEND_ATTEMPTS - 1,
    ignore_result=True,
)
def send_delivery_task(delivery_id: int) -> None:
    """Send a queued delivery. Enqueue on omni.choices.send_queue(purpose, channel)."""
    send_delivery(delivery_id)


log = logging.getLogger(__name__)

# Deliveries carried by one task: the broker round trip (about a millisecond to publish) is paid
# once per batch rather than once per message, while a batch of slow provider calls still
# finishes within seconds.
SEND_BATCH_SIZE = 50
# A delivery of a batch that meets a transient error is retried alone, after this long.
FIRST_RETRY_SECONDS = 10


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def send_deliveries_task(delivery_ids: list[int], queue: str) -> None:
    """Send a batch of queued deliveries from `queue`; each one that fails transiently is retried on its own."""
    for delivery_id in delivery_ids:
        try:
            send_delivery(delivery_id)
        except DeliveryError:
            send_delivery_task.apply_async((delivery_id,), queue=queue, countdown=FIRST_RETRY_SECONDS)
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
