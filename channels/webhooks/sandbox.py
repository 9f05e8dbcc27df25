"""The sandbox's reports: what it simulates a provider would report about a delivery, recorded
the way a provider's webhook is (the sandbox's stand-in for a webhook view)."""
from datetime import timedelta

from django.utils import timezone

from channels.models import OutboxMessage
from channels.provider_reports import record_delivery_event
from channels.providers.sandbox import SIMULATED_EVENTS, failure_detail


def simulate_events(delivery_id: int) -> int:
    """Record the simulated provider events for a sandbox delivery. Safe to run twice.

    Returns how many events were new.
    """
    outbox = OutboxMessage.objects.filter(delivery_id=delivery_id).first()
    if outbox is None:
        return 0
    outcome = outbox.simulated_outcome
    started = timezone.now()
    created_count = 0
    for position, event_type in enumerate(SIMULATED_EVENTS.get(outcome, [])):
        detail, permanent = failure_detail(event_type, outbox.to_address)
        _, created = record_delivery_event(
            "sandbox",
            f"{outbox.provider_message_id}:{event_type}",
            outbox.provider_message_id,
            event_type,
            # A millisecond apart, so the timeline shows them in the order a provider would.
            started + timedelta(milliseconds=position),
            recipient=outbox.to_address,
            detail=detail,
            permanent=permanent,
            raw={"simulated": True, "outcome": outcome},
            delivery_id=delivery_id,
            channel=outbox.channel,
        )
        created_count += created
    return created_count
