import pytest

from channels.delivery import send_delivery
from channels.models import DeliveryEvent, DeliveryStatus, EventType, MessageStatus, OutboxMessage
from channels.webhooks.sandbox import simulate_events
from compliance.models import Consent, ConsentStatus, Suppression, SuppressionReason


def test_the_sandbox_stores_what_would_have_been_sent(make_delivery):
    delivery = make_delivery("email")

    send_delivery(delivery.pk)

    outbox = OutboxMessage.objects.get(delivery=delivery)
    assert (outbox.channel, outbox.to_address, outbox.subject) == ("email", "alice@example.com", "Your order shipped")
    assert outbox.html_body == "<p>Your order shipped.</p>"
    assert outbox.simulated_outcome == "delivered"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.provider_message_id == outbox.provider_message_id


@pytest.mark.parametrize("channel, address, final_status, message_status", [
    ("email", "alice@example.com", DeliveryStatus.DELIVERED, MessageStatus.DELIVERED),
    ("email", "alice+open@example.com", DeliveryStatus.OPENED, MessageStatus.ENGAGED),
    ("email", "alice+click@example.com", DeliveryStatus.CLICKED, MessageStatus.ENGAGED),
    ("email", "bounce@simulator.amazonses.com", DeliveryStatus.BOUNCED, MessageStatus.FAILED),
    ("email", "suppressionlist@simulator.amazonses.com", DeliveryStatus.BOUNCED, MessageStatus.FAILED),
    ("email", "complaint@simulator.amazonses.com", DeliveryStatus.COMPLAINED, MessageStatus.DELIVERED),
    ("sms", "+14155550100", DeliveryStatus.DELIVERED, MessageStatus.DELIVERED),
    ("sms", "+15005550009", DeliveryStatus.UNDELIVERED, MessageStatus.FAILED),
    ("sms", "+15005550003", DeliveryStatus.FAILED, MessageStatus.FAILED),
])
def test_sandbox_addresses_end_like_the_providers_test_addresses(make_delivery, tick, channel, address, final_status,
                                                                 message_status):
    # given
    delivery = make_delivery(channel, to_address=address)
    send_delivery(delivery.pk)

    # when the simulated provider events arrive, and the tick runs the fallbacks they made due
    simulate_events(delivery.pk)
    tick()

    # then
    delivery.refresh_from_db()
    assert delivery.status == final_status
    assert delivery.message.status == message_status
    assert DeliveryEvent.objects.filter(delivery=delivery, event_type=EventType.SENT).exists()


def test_a_simulated_hard_bounce_suppresses_the_address(make_delivery):
    delivery = make_delivery("email", to_address="bounce@simulator.amazonses.com")
    send_delivery(delivery.pk)

    simulate_events(delivery.pk)

    suppression = Suppression.objects.get(address="bounce@simulator.amazonses.com")
    assert (suppression.channel, suppression.reason) == ("email", SuppressionReason.HARD_BOUNCE)
    event = DeliveryEvent.objects.get(delivery=delivery, event_type=EventType.BOUNCED)
    assert event.permanent is True
    assert event.detail == "hard: General"


def test_a_simulated_complaint_suppresses_the_address_and_revokes_marketing_consent(make_delivery, marketing_consent):
    delivery = make_delivery("email", to_address="complaint@simulator.amazonses.com", purpose="marketing")
    send_delivery(delivery.pk)

    simulate_events(delivery.pk)

    assert Suppression.objects.get(address="complaint@simulator.amazonses.com").reason == SuppressionReason.COMPLAINT
    consent = Consent.objects.get(contact=delivery.contact, channel="email", purpose="marketing")
    assert consent.status == ConsentStatus.REVOKED
    assert consent.last_change.source == "complaint"


def test_the_invalid_magic_number_is_refused_at_send_time_and_falls_back(make_delivery):
    # given SMS first, then email
    delivery = make_delivery("sms", to_address="+15005550001", plan=[{"channel": "sms"}, {"channel": "email"}])

    # when
    send_delivery(delivery.pk)

    # then
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert (delivery.error_code, delivery.error_permanent) == ("21211", True)
    assert not OutboxMessage.objects.filter(delivery=delivery).exists()
    message = delivery.message
    message.refresh_from_db()
    assert message.plan_step == 1
    next_delivery = message.deliveries.exclude(pk=delivery.pk).get()
    assert (next_delivery.channel, next_delivery.status) == ("email", DeliveryStatus.QUEUED)


def test_simulating_twice_records_each_event_once(make_delivery):
    delivery = make_delivery("email", to_address="alice+click@example.com")
    send_delivery(delivery.pk)

    first = simulate_events(delivery.pk)
    second = simulate_events(delivery.pk)

    assert (first, second) == (4, 0)
    assert DeliveryEvent.objects.filter(delivery=delivery).count() == 4


def test_the_sandbox_schedules_its_events_through_celery_after_the_send_commits(
    make_delivery, eager_celery, django_capture_on_commit_callbacks
):
    delivery = make_delivery("email", to_address="alice+open@example.com")

    with django_capture_on_commit_callbacks(execute=True):
        send_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.OPENED
    assert delivery.message.status == MessageStatus.ENGAGED
