"""Fallbacks run in the tick: a failure report only marks the delivery's fallback due, a
silence past the plan's window makes it due by itself, and the tick hands the message to the
next channel, once, only when no delivery of the step (one per push device) can still succeed."""
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.tick import tick
from channels import routing
from channels.provider_reports import record_delivery_event
from channels.models import Delivery, EventType, MessageSource, MessageStatus
from contacts.models import Device
from omni.models import AuditEntry
from omni.tests.fakes import run_concurrently

from .conftest import make_contact

PUSH_THEN_SMS = [{"channel": "push", "fallback_after_seconds": 600}, {"channel": "sms"}]
CONTENT = [{"channel": "push", "title": "Order", "text_body": "Shipped"}, {"channel": "sms", "text_body": "Shipped"}]


@pytest.fixture
def push_message(transactional_db):
    """A push to a contact with two devices, then SMS; one delivery per device, not sent yet."""
    contact = make_contact("ann", phone="+14155550101", consents=())
    for platform in ("ios", "android"):
        Device.objects.create(contact=contact, platform=platform, token=f"token-{platform}")
    message, _ = routing.create_message(contact=contact, source=MessageSource.API, purpose="transactional",
                                        channel_plan=PUSH_THEN_SMS, content=CONTENT)
    routing.dispatch(message, now=timezone.now())
    return message


def report_failed(delivery):
    record_delivery_event("sandbox", f"failed:{delivery.pk}", "", EventType.FAILED, timezone.now(),
                          delivery_id=delivery.pk)


def test_one_failed_device_waits_for_the_other_devices_window(push_message):
    ios, android = push_message.deliveries.order_by("pk")
    dispatched_at = ios.queued_at

    # when one device fails
    report_failed(ios)
    tick(timezone.now())

    # then the other may still deliver: the message stays on push
    push_message.refresh_from_db()
    assert (push_message.plan_step, push_message.deliveries.filter(channel="sms").count()) == (0, 0)

    # when the other stays silent past the plan's window, the tick moves the message to SMS
    report = tick(dispatched_at + timedelta(seconds=600))
    assert report.fallbacks == 1
    push_message.refresh_from_db()
    assert (push_message.plan_step, push_message.status) == (1, MessageStatus.QUEUED)
    assert push_message.deliveries.filter(channel="sms").count() == 1


@pytest.mark.postgres
def test_two_ticks_running_the_fallbacks_of_both_devices_at_once_send_one_sms(push_message):
    # given both devices reported failed
    for delivery in push_message.deliveries.all():
        report_failed(delivery)
    now = timezone.now()

    # when two workers tick at the same instant
    _, errors = run_concurrently(lambda: tick(now))

    # then the message moved to SMS once
    assert errors == []
    push_message.refresh_from_db()
    assert (push_message.plan_step, push_message.status) == (1, MessageStatus.QUEUED)
    assert Delivery.objects.filter(message=push_message, channel="sms").count() == 1
    assert AuditEntry.objects.filter(action="message.fell_back", object_id=str(push_message.pk)).count() == 1
    assert not Delivery.objects.filter(message=push_message, fallback_due_at__isnull=False).exists()
