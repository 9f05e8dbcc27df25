"""Transactions that touch a message and its deliveries lock the message first, so webhooks about
two devices of one push queue instead of deadlocking."""
import pytest
from django.db import connection
from django.utils import timezone

from channels import routing, state
from channels.provider_reports import record_delivery_event
from channels.models import Delivery, DeliveryStatus, EventType, MessageSource
from contacts.models import Contact, Device
from omni.tests.fakes import run_concurrently

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql",
                       reason="row locks and deadlocks need PostgreSQL; set DATABASE_URL to run it"),
]

ROUNDS = 8


def two_device_push(index: int, now) -> list[Delivery]:
    """A push sent to both devices of a contact, each with a fallback timer still running."""
    contact = Contact.objects.create(external_id=f"p{index}", phone="+14155550100")
    for platform in ("ios", "android"):
        Device.objects.create(contact=contact, platform=platform, token=f"{platform}-{index}")
    message, _ = routing.create_message(
        contact=contact, source=MessageSource.API, purpose="transactional",
        channel_plan=[{"channel": "push", "fallback_after_seconds": 600}, {"channel": "sms"}],
        content=[{"channel": "push", "title": "Order", "text_body": "Shipped"},
                 {"channel": "sms", "text_body": "Shipped"}],
    )
    routing.dispatch(message, now=now)
    deliveries = list(Delivery.objects.filter(message=message).order_by("pk"))
    state.move_deliveries(deliveries, DeliveryStatus.SENT)
    for delivery in deliveries:
        Delivery.objects.filter(pk=delivery.pk).update(provider_message_id=f"sb-{delivery.pk}")
    return deliveries


def test_webhooks_about_two_devices_of_one_push_never_deadlock(transactional_db):
    now = timezone.now()
    for round_number in range(ROUNDS):
        deliveries = two_device_push(round_number, now)
        reports = iter([(f"ev-{d.pk}", f"sb-{d.pk}") for d in deliveries])

        def deliver():
            event_id, provider_id = next(reports)
            return record_delivery_event("sandbox", event_id, provider_id, EventType.DELIVERED, now)

        _, errors = run_concurrently(deliver)

        assert not errors, f"round {round_number}: {errors!r}"
        assert set(Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).values_list("status", flat=True)) == {
            DeliveryStatus.DELIVERED}

