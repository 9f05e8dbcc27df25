"""Celery tasks for deliveries. Each takes ids and makes one call; the logic is in the modules."""
from celery import shared_task

from .base import DeliveryError
from .delivery import MAX_SEND_ATTEMPTS, reconcile_stuck_deliveries, send_delivery
from .providers.sandbox import simulate_events


# Only transient errors reach Celery (send_delivery settles permanent ones itself). Backoff
# from 10 s, capped at 5 minutes and jittered, so a provider outage is not hammered in step.
@shared_task(
    acks_late=True,
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


@shared_task(ignore_result=True)
def simulate_sandbox_events_task(delivery_id: int) -> None:
    """Report the sandbox's simulated provider events for a delivery."""
    simulate_events(delivery_id)


@shared_task(ignore_result=True)
def reconcile_deliveries_task() -> None:
    """Mark deliveries whose worker died mid-send as uncertain (beat, every minute)."""
    reconcile_stuck_deliveries()
