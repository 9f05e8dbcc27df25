from datetime import timedelta

import pytest

from channels.delivery import reconcile_stuck_deliveries, send_delivery
from channels.provider_reports import record_delivery_event
from channels.models import Delivery, DeliveryStatus, EventType, MessageStatus, OutboxMessage
from compliance.actions import suppress
from omni.models import AuditEntry
from compliance.models import SendingPause
from omni.tests.fakes import run_concurrently


def test_claiming_a_delivery_twice_sends_it_once(make_delivery, twilio_settings, twilio_server):
    delivery = make_delivery("sms", provider="twilio")

    first = send_delivery(delivery.pk)
    second = send_delivery(delivery.pk)

    assert first is not None and second is None
    assert len(twilio_server.messages) == 1
    assert Delivery.objects.get(pk=delivery.pk).attempts == 1


@pytest.mark.postgres
def test_two_workers_claiming_at_the_same_moment_send_once(transactional_db, make_delivery, twilio_settings,
                                                           twilio_server):
    # given
    delivery = make_delivery("sms", provider="twilio")

    # when
    results, errors = run_concurrently(lambda: send_delivery(delivery.pk))

    # then
    assert not errors
    assert len(twilio_server.messages) == 1
    assert sum(result is not None for result in results) == 1
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.SENT


def test_a_delivery_of_a_cancelled_message_is_not_sent(make_delivery):
    delivery = make_delivery("email", message_status=MessageStatus.CANCELLED)

    send_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.CANCELLED
    assert delivery.error_message == "message_cancelled"
    assert not OutboxMessage.objects.exists()
    assert AuditEntry.objects.filter(action="delivery.cancelled", reason="message_cancelled").exists()


def test_an_expired_message_is_not_sent_and_ends_expired(make_delivery, now):
    delivery = make_delivery("email")
    delivery.message.expires_at = now - timedelta(minutes=1)
    delivery.message.save()

    send_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.CANCELLED
    assert delivery.message.status == MessageStatus.EXPIRED
    assert not OutboxMessage.objects.exists()


def test_a_paused_contact_gets_no_marketing_but_still_gets_transactional_messages(make_delivery, contact,
                                                                                  marketing_consent):
    # given
    contact.messaging_paused = True
    contact.save()
    marketing = make_delivery("email", purpose="marketing")
    transactional = make_delivery("email", purpose="transactional")

    # when
    send_delivery(marketing.pk)
    send_delivery(transactional.pk)

    # then
    marketing.refresh_from_db()
    transactional.refresh_from_db()
    assert marketing.status == DeliveryStatus.CANCELLED
    assert marketing.message.status == MessageStatus.SUPPRESSED
    assert marketing.message.status_reason == "contact_paused"
    assert transactional.status == DeliveryStatus.SENT
    assert list(OutboxMessage.objects.values_list("delivery", flat=True)) == [transactional.pk]


def test_an_address_suppressed_while_queued_moves_the_message_to_its_next_channel(make_delivery, contact):
    # given an email queued with SMS as the next channel; then the email address hard-bounces elsewhere
    delivery = make_delivery("email", plan=[{"channel": "email"}, {"channel": "sms"}])
    suppress(contact.email, channel="email", reason="hard_bounce", contact=contact)

    # when
    send_delivery(delivery.pk)

    # then
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.CANCELLED
    assert delivery.error_message == "suppressed:hard_bounce"
    next_delivery = delivery.message.deliveries.exclude(pk=delivery.pk).get()
    assert next_delivery.channel == "sms"
    assert not OutboxMessage.objects.exists()


def test_a_channel_paused_while_queued_defers_the_message(make_delivery):
    delivery = make_delivery("email")
    SendingPause.objects.create(channel="email", reason="Incident: SES reputation")

    send_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.CANCELLED
    assert delivery.message.status == MessageStatus.DEFERRED
    assert delivery.message.defer_until is not None


def test_a_delivery_stuck_in_sending_becomes_uncertain_and_is_never_sent_again(make_delivery, now, twilio_settings,
                                                                               twilio_server):
    # given a worker that died after claiming, during the provider call
    delivery = make_delivery("sms", provider="twilio", status=DeliveryStatus.SENDING, attempts=1,
                             claimed_at=now - timedelta(minutes=30))
    recent = make_delivery("sms", provider="twilio", status=DeliveryStatus.SENDING, attempts=1, claimed_at=now)

    # when
    marked = reconcile_stuck_deliveries(older_than=timedelta(minutes=10), now=now)
    resent = send_delivery(delivery.pk)

    # then
    assert marked == 1
    assert resent is None
    assert twilio_server.messages == []
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.UNCERTAIN
    assert Delivery.objects.get(pk=recent.pk).status == DeliveryStatus.SENDING
    assert AuditEntry.objects.filter(action="delivery.uncertain", object_id=str(delivery.pk)).count() == 1


def test_the_providers_webhook_settles_an_uncertain_delivery(make_delivery, now):
    delivery = make_delivery("sms", provider="twilio", status=DeliveryStatus.UNCERTAIN, attempts=1)

    record_delivery_event("twilio", "SM123:delivered", "SM123", EventType.DELIVERED, now, delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.provider_message_id == "SM123"
    assert delivery.message.status == MessageStatus.DELIVERED


def test_an_unknown_provider_fails_the_delivery_with_a_clear_error_instead_of_leaving_it_queued(make_delivery):
    # given a delivery routed to a provider the settings no longer know
    delivery = make_delivery("email", provider="carrier-pigeon")

    # when a worker picks it up
    send_delivery(delivery.pk)

    # then it fails for good, saying why, and is never retried or republished
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code, delivery.error_permanent) == (
        DeliveryStatus.FAILED, "unknown_provider", True)
    assert "Unknown provider 'carrier-pigeon'" in delivery.error_message
    assert delivery.message.status == MessageStatus.FAILED
    assert AuditEntry.objects.filter(action="delivery.failed", reason="unknown_provider").count() == 1


def test_a_delivery_left_behind_by_a_fallback_is_not_sent(make_delivery):
    # given the fallback timer moved the message on to SMS while the email waited in the queue
    delivery = make_delivery("email", plan=[{"channel": "email"}, {"channel": "sms"}])
    delivery.message.plan_step = 1
    delivery.message.save()

    send_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.CANCELLED
    assert delivery.error_message == "message_moved_to_next_channel"
    assert not OutboxMessage.objects.exists()
    assert delivery.message.deliveries.count() == 1


def test_a_push_device_refused_at_send_time_never_sends_the_message_again_on_the_others(contact, now):
    # given a push to two devices, then SMS
    from channels import routing
    from channels.models import MessageSource
    from contacts.models import Device

    for platform in ("ios", "android"):
        Device.objects.create(contact=contact, platform=platform, token=f"token-{platform}")
    message, _ = routing.create_message(
        contact=contact, source=MessageSource.API, purpose="transactional",
        channel_plan=[{"channel": "push"}, {"channel": "sms"}],
        content=[{"channel": "push", "title": "Order", "text_body": "Shipped"}, {"channel": "sms", "text_body": "x"}],
    )
    routing.dispatch(message, now=now)
    ios, android = message.deliveries.order_by("pk")

    # when the first device's token turns out invalid before its send
    suppress("token-ios", channel="push", reason="invalid_address")
    send_delivery(ios.pk)

    # then that delivery is cancelled; the other device still carries the message, alone
    ios.refresh_from_db()
    assert ios.status == DeliveryStatus.CANCELLED
    assert list(message.deliveries.order_by("pk").values_list("channel", "status")) == [
        ("push", DeliveryStatus.CANCELLED), ("push", DeliveryStatus.QUEUED)]
    send_delivery(android.pk)
    assert Delivery.objects.get(pk=android.pk).status == DeliveryStatus.SENT
