"""The embedded default: stores what would have been sent and simulates what providers report.

The simulated outcome follows the real providers' test addresses, so journeys can branch on
bounces, complaints, opens and failures without any account:
- email local part containing "complaint" (SES complaint@simulator.amazonses.com): delivered,
  then a complaint; "suppressionlist" or "bounce": a hard bounce; a "+click" tag
  (alice+click@example.com): delivered, opened, clicked; "+open": delivered, opened;
- Twilio's magic numbers: +15005550001 is refused at send time as an invalid number (21211),
  +15005550009 ends undelivered, +15005550003 failed;
- anything else: delivered.
The events arrive settings.OMNI_SANDBOX_EVENT_DELAY seconds after the send and go through
channels/webhooks/sandbox.py, which records them through channels.provider_reports.record_delivery_event
exactly like a provider's webhook.
"""
import uuid

from django.conf import settings

from channels.base import DeliveryError, Provider, SendResult
from channels.models import EventType, OutboxMessage
from compliance.models import SuppressionReason
from omni.choices import PHONE_CHANNELS, Channel
from omni.lib.tasks import task_named

# https://www.twilio.com/docs/iam/test-credentials#test-sms-messages-parameters-To
INVALID_NUMBER = "+15005550001"
UNDELIVERABLE_NUMBER = "+15005550009"
FAILING_NUMBER = "+15005550003"

DELIVERED = "delivered"
OPENED = "opened"
CLICKED = "clicked"
COMPLAINED = "complained"
BOUNCED = "bounced"
UNDELIVERED = "undelivered"
FAILED = "failed"

# The events each outcome produces, in the order a real provider would report them.
SIMULATED_EVENTS = {
    DELIVERED: [EventType.SENT, EventType.DELIVERED],
    OPENED: [EventType.SENT, EventType.DELIVERED, EventType.OPENED],
    CLICKED: [EventType.SENT, EventType.DELIVERED, EventType.OPENED, EventType.CLICKED],
    COMPLAINED: [EventType.SENT, EventType.DELIVERED, EventType.COMPLAINED],
    BOUNCED: [EventType.SENT, EventType.BOUNCED],
    UNDELIVERED: [EventType.SENT, EventType.UNDELIVERED],
    FAILED: [EventType.SENT, EventType.FAILED],
}


def simulated_outcome(channel: str, address: str) -> str:
    """What the sandbox will report for a delivery to this address."""
    if channel == Channel.EMAIL:
        local_part = address.rsplit("@", 1)[0].lower()
        if "complaint" in local_part:
            return COMPLAINED
        if "suppressionlist" in local_part or "bounce" in local_part:
            return BOUNCED
        if "+click" in local_part:
            return CLICKED
        if "+open" in local_part:
            return OPENED
        return DELIVERED
    if address == UNDELIVERABLE_NUMBER:
        return UNDELIVERED
    if address == FAILING_NUMBER:
        return FAILED
    return DELIVERED


class SandboxProvider(Provider):
    name = "sandbox"
    channels = frozenset(Channel.values)

    def build_payload(self, delivery) -> dict:
        if delivery.channel in PHONE_CHANNELS and delivery.to_address == INVALID_NUMBER:
            raise DeliveryError("The 'To' number is not a valid phone number (sandbox)", code="21211", permanent=True,
                                suppression_reason=SuppressionReason.INVALID_ADDRESS)
        return {
            "delivery": delivery,
            "channel": delivery.channel,
            "to_address": delivery.to_address,
            "subject": delivery.subject,
            "text_body": delivery.text_body,
            "html_body": delivery.html_body,
            "content": delivery.content,
            "simulated_outcome": simulated_outcome(delivery.channel, delivery.to_address),
        }

    def post(self, payload: dict) -> OutboxMessage:
        return OutboxMessage.objects.create(provider_message_id=f"sandbox-{uuid.uuid4().hex}", **payload)

    def parse_result(self, outbox: OutboxMessage) -> SendResult:
        return SendResult(provider_message_id=outbox.provider_message_id,
                          raw={"outbox_message": outbox.pk, "simulated_outcome": outbox.simulated_outcome})

    def find_send(self, delivery) -> SendResult | None:
        """The outbox keeps the delivery it was written for: it holds the answer for certain."""
        outbox = OutboxMessage.objects.filter(delivery_id=delivery.pk).first()
        return self.parse_result(outbox) if outbox is not None else None

    def after_send(self, delivery) -> None:
        task_named("channels.tasks.simulate_sandbox_events_task").apply_async(
            (delivery.pk,), countdown=settings.OMNI_SANDBOX_EVENT_DELAY, queue="events"
        )


def failure_detail(event_type: str, address: str) -> tuple[str, bool]:
    if event_type == EventType.BOUNCED:
        sub_type = "OnAccountSuppressionList" if "suppressionlist" in address.lower() else "General"
        return f"hard: {sub_type}", True
    if event_type == EventType.UNDELIVERED:
        return "30003: unreachable destination handset", False
    if event_type == EventType.FAILED:
        return "30008: unknown error", False
    return "", False
