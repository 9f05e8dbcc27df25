"""Routing and the complete gate: the send ledger routing fills, caps counted across a batch and
across concurrent batches, quiet hours deferring to the window's end, the re-check at send
time, and the WhatsApp window passed down to the gate."""
import threading
import time as clock
from datetime import datetime, time, timedelta, timezone as dt_timezone

import pytest
from django.db import connection, transaction

from channels import routing
from channels.delivery import send_delivery
from channels.models import Delivery, DeliveryStatus, InboundMessage, Message, MessageSource, MessageStatus
from channels.whatsapp import in_whatsapp_session, session_ends
from compliance.models import CapAction, Decision, FrequencyCap, QuietHours, SendLedger
from contacts.models import Contact, Device
from omni.tests.fakes import run_concurrently

UTC = dt_timezone.utc


def new_message(contact, plan=("sms",), purpose="informational", **fields) -> Message:
    message, _ = routing.create_message(
        contact=contact, source=MessageSource.API, purpose=purpose, channel_plan=[{"channel": c} for c in plan],
        content=[{"channel": c, "text_body": "Hello", "title": "Hi"} for c in plan], **fields)
    return message


@pytest.fixture
def one_a_day(db):
    return FrequencyCap.objects.create(name="One a day", limit=1, window_seconds=86400)


def test_routing_writes_one_ledger_row_per_message_and_plan_step_not_per_device(contact, now):
    for platform in ("ios", "android"):
        Device.objects.create(contact=contact, platform=platform, token=f"{platform}-token")
    push = new_message(contact, plan=("push", "sms"))
    sms = new_message(contact)
    paused = new_message(contact, purpose="marketing")  # no opt-in: suppressed, never counted

    routing.dispatch_many([push, sms, paused], now=now)

    assert Delivery.objects.filter(message=push).count() == 2
    assert sorted(SendLedger.objects.values_list("message_id", "channel", "plan_step", "purpose")) == [
        (push.pk, "push", 0, "informational"), (sms.pk, "sms", 0, "informational")]
    assert set(SendLedger.objects.values_list("contact_id", "at")) == {(contact.pk, now)}


def test_a_cap_exactly_reached_drops_the_next_message_of_the_same_batch(contact, one_a_day, now):
    first, second = new_message(contact), new_message(contact)

    routing.dispatch_many([first, second], now=now)

    first.refresh_from_db(), second.refresh_from_db()
    assert (first.status, second.status, second.status_reason) == (
        MessageStatus.QUEUED, MessageStatus.SUPPRESSED, "frequency_cap")
    decision = Decision.objects.get(message_id=second.pk)
    assert decision.inputs["rules"] == [{"rule": "frequency_cap", "result": "suppress", "reason": "frequency_cap",
                                         "id": one_a_day.pk, "version": 1, "count": 1, "limit": 1,
                                         "window_seconds": 86400}]


def test_a_deferring_cap_waits_for_the_oldest_send_to_leave_the_window(contact, one_a_day, now):
    one_a_day.action = CapAction.DEFER
    one_a_day.save()
    routing.dispatch(new_message(contact), now=now - timedelta(hours=3))
    later = new_message(contact)

    routing.dispatch(later, now=now)

    later.refresh_from_db()
    assert (later.status, later.status_reason, later.defer_until) == (
        MessageStatus.DEFERRED, "frequency_cap", now - timedelta(hours=3) + timedelta(days=1))


def test_the_send_time_recheck_does_not_count_the_messages_own_ledger_row(contact, one_a_day, now):
    message = new_message(contact)
    delivery = routing.dispatch(message)

    sent = send_delivery(delivery.pk)

    assert sent.status == DeliveryStatus.SENT
    assert SendLedger.objects.filter(message_id=message.pk).count() == 1


def test_quiet_hours_defer_a_message_to_the_end_of_the_window_in_the_contacts_zone(contact):
    QuietHours.objects.create(name="Nights", start=time(21), end=time(8))
    contact.timezone = "Asia/Kolkata"
    contact.save()
    message = new_message(contact)
    # 23:45 in Kolkata, the night before
    routing.dispatch(message, now=datetime(2026, 6, 1, 18, 15, tzinfo=UTC))

    message.refresh_from_db()
    decision = Decision.objects.get(message_id=message.pk)
    assert (message.status, message.status_reason, message.defer_until) == (
        MessageStatus.DEFERRED, "quiet_hours", datetime(2026, 6, 2, 2, 30, tzinfo=UTC))
    assert (decision.inputs["local_time"], decision.inputs["zone_source"]) == ("2026-06-01T23:45:00+05:30", "profile")


def test_a_message_that_would_expire_in_quiet_hours_ends_expired(contact):
    QuietHours.objects.create(name="Nights", start=time(21), end=time(8))
    message = new_message(contact, expires_at=datetime(2026, 6, 2, 10, tzinfo=UTC))  # 03:00 in Los Angeles

    routing.dispatch(message, now=datetime(2026, 6, 2, 6, tzinfo=UTC))  # 23:00 in Los Angeles (the phone's zone)

    message.refresh_from_db()
    assert (message.status, message.status_reason) == (MessageStatus.EXPIRED, "expired")


def test_the_whatsapp_window_is_one_query_for_many_contacts_and_reaches_the_gate(contact, now,
                                                                                 django_assert_num_queries):
    others = [Contact.objects.create(external_id=f"o{i}", phone=f"+1415555020{i}") for i in range(3)]
    for who in [contact, others[0]]:
        InboundMessage.objects.create(contact=who, channel="whatsapp", provider="twilio",
                                      provider_message_id=f"in-{who.pk}", from_address=who.phone,
                                      received_at=now - timedelta(hours=2))

    with django_assert_num_queries(1):
        ends = session_ends([contact.pk, *[o.pk for o in others]], now)
    message = new_message(contact, plan=("whatsapp",))
    routing.dispatch(message, now=now)

    assert ends == {contact.pk: now + timedelta(hours=22), others[0].pk: now + timedelta(hours=22)}
    assert in_whatsapp_session(contact.pk, now) and not in_whatsapp_session(others[1].pk, now)
    assert Decision.objects.get(message_id=message.pk).inputs["channel_facts"] == {"whatsapp_session": True}


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL; set DATABASE_URL")
def test_two_concurrent_batches_for_one_contact_cannot_both_pass_a_cap(transactional_db):
    contact = Contact.objects.create(external_id="racer", phone="+14155550100", timezone="UTC")
    FrequencyCap.objects.create(name="One a day", limit=1, window_seconds=86400)
    messages = iter([new_message(contact), new_message(contact)])
    lock = threading.Lock()

    def dispatch_and_hold():
        with lock:
            message = next(messages)
        with transaction.atomic():
            routing.dispatch_many([Message.objects.select_related("contact").get(pk=message.pk)])
            # Hold the transaction open: without the contact's lock the other batch reads the
            # ledger now, before this one's row is committed, and passes the cap too.
            clock.sleep(0.5)
        return message.pk

    _, errors = run_concurrently(dispatch_and_hold)

    assert not errors, errors
    statuses = sorted(Message.objects.values_list("status", "status_reason"))
    assert statuses == [(MessageStatus.QUEUED, "consent:unknown"), (MessageStatus.SUPPRESSED, "frequency_cap")]
    assert SendLedger.objects.count() == 1
