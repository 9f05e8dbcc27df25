from datetime import timedelta

from channels.provider_reports import adopt_orphan_events, record_delivery_event
from channels.models import DeliveryEvent, DeliveryStatus, EventType, MessageStatus
from omni.models import AuditEntry
from compliance.models import Suppression


def sent_delivery(make_delivery, channel="email", provider="ses", provider_message_id="ses-1", **fields):
    return make_delivery(channel, provider=provider, status=DeliveryStatus.SENT,
                         provider_message_id=provider_message_id, message_status=MessageStatus.SENT, **fields)


def test_a_late_sent_event_never_overwrites_delivered(make_delivery, now):
    # given
    delivery = sent_delivery(make_delivery)

    # when the delivery report overtakes the send report
    record_delivery_event("ses", "e-delivered", "ses-1", EventType.DELIVERED, now)
    record_delivery_event("ses", "e-sent", "ses-1", EventType.SENT, now - timedelta(seconds=5))

    # then
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.delivered_at == now
    assert delivery.last_event_at == now
    assert delivery.message.status == MessageStatus.DELIVERED
    assert DeliveryEvent.objects.filter(delivery=delivery).count() == 2


def test_an_open_before_its_delivery_report_still_records_both(make_delivery, now):
    delivery = sent_delivery(make_delivery)

    record_delivery_event("ses", "e-open", "ses-1", EventType.OPENED, now)
    record_delivery_event("ses", "e-delivered", "ses-1", EventType.DELIVERED, now - timedelta(seconds=1))

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.OPENED
    assert delivery.engaged_at == now
    assert delivery.delivered_at == now - timedelta(seconds=1)
    assert delivery.message.status == MessageStatus.ENGAGED


def test_a_repeated_event_is_counted_once(make_delivery, now):
    sent_delivery(make_delivery)

    first = record_delivery_event("ses", "e-1", "ses-1", EventType.DELIVERED, now)
    second = record_delivery_event("ses", "e-1", "ses-1", EventType.DELIVERED, now)

    assert first[1] is True and second[1] is False
    assert first[0].pk == second[0].pk
    assert DeliveryEvent.objects.count() == 1
    assert AuditEntry.objects.filter(action="delivery.delivered").count() == 1


def test_an_event_for_an_unknown_message_is_kept_without_a_delivery(db, now):
    event, created = record_delivery_event("ses", "e-1", "never-sent-by-us", EventType.DELIVERED, now,
                                           recipient="bob@example.com")

    assert created
    assert event.delivery is None
    assert AuditEntry.objects.filter(action="delivery.delivered", object_type="channels.deliveryevent").exists()


def test_events_that_arrived_before_the_send_was_recorded_are_adopted(make_delivery, now):
    # given an event stored while the delivery did not know its provider id yet
    record_delivery_event("twilio", "SM9:delivered", "SM9", EventType.DELIVERED, now)
    delivery = sent_delivery(make_delivery, channel="sms", provider="twilio", provider_message_id="SM9")

    # when
    adopted = adopt_orphan_events(delivery)

    # then
    assert adopted == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.events.count() == 1


def test_a_hard_bounce_suppresses_the_address_and_falls_back_to_the_next_channel(make_delivery, now, tick):
    # given email first, then SMS
    delivery = sent_delivery(make_delivery, plan=[{"channel": "email"}, {"channel": "sms"}])

    # when
    record_delivery_event("ses", "e-bounce", "ses-1", EventType.BOUNCED, now, recipient="alice@example.com",
                          detail="hard: General", permanent=True)

    # then
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.BOUNCED
    assert delivery.failed_at == now
    assert delivery.error_permanent is True
    assert Suppression.objects.get(address="alice@example.com").reason == "hard_bounce"
    tick()
    message = delivery.message
    message.refresh_from_db()
    assert message.plan_step == 1
    assert message.deliveries.filter(channel="sms", status=DeliveryStatus.QUEUED).exists()


def test_a_soft_bounce_fails_the_delivery_without_suppressing(make_delivery, now):
    delivery = sent_delivery(make_delivery)

    record_delivery_event("ses", "e-bounce", "ses-1", EventType.BOUNCED, now, recipient="alice@example.com",
                          detail="soft: MailboxFull", permanent=False)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.BOUNCED
    assert not Suppression.objects.exists()


def test_a_hard_bounce_for_an_unknown_message_still_suppresses_the_address(db, now):
    record_delivery_event("ses", "e-bounce", "unknown", EventType.BOUNCED, now, recipient="Bob@Example.com",
                          detail="hard: General", permanent=True, channel="email")

    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.channel) == ("bob@example.com", "email")


def test_an_unclassifiable_event_type_is_stored_as_unknown_and_moves_nothing(make_delivery, now):
    delivery = sent_delivery(make_delivery)

    event, _ = record_delivery_event("ses", "e-x", "ses-1", "teleported", now)

    assert event.event_type == EventType.UNKNOWN
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT


def test_recording_an_event_takes_a_bounded_number_of_queries(make_delivery, now, django_assert_max_num_queries):
    sent_delivery(make_delivery)

    # finding the delivery, then locking its message and it (the lock order) cost two more
    # queries than one locking find did
    with django_assert_max_num_queries(12):
        record_delivery_event("ses", "e-1", "ses-1", EventType.DELIVERED, now)


def test_delivery_and_engagement_of_a_journey_message_are_stored_once_as_contact_events(make_delivery, now):
    # given a journey's message, sent, and an API message, sent
    from channels.models import MessageSource
    from contacts.models import ContactEvent

    journeys = sent_delivery(make_delivery)
    journeys.message.source = MessageSource.JOURNEY
    journeys.message.save()
    sent_delivery(make_delivery, provider_message_id="ses-2")

    # when each is delivered, opened and opened again, and clicked
    for provider_message_id in ("ses-1", "ses-2"):
        record_delivery_event("ses", f"{provider_message_id}-d", provider_message_id, EventType.DELIVERED, now)
        record_delivery_event("ses", f"{provider_message_id}-o1", provider_message_id, EventType.OPENED, now)
        record_delivery_event("ses", f"{provider_message_id}-o2", provider_message_id, EventType.OPENED, now)
        record_delivery_event("ses", f"{provider_message_id}-c", provider_message_id, EventType.CLICKED, now)

    # then the journey's message has one contact event per kind, from channels; the other none
    events = ContactEvent.objects.order_by("pk")
    assert [(e.name, e.source, e.idempotency_key) for e in events] == [
        ("message.delivered", "channels", f"delivery:{journeys.pk}:delivered"),
        ("message.opened", "channels", f"delivery:{journeys.pk}:opened"),
        ("message.clicked", "channels", f"delivery:{journeys.pk}:clicked"),
    ]
    assert events[0].properties == {"message_id": journeys.message_id, "delivery_id": journeys.pk, "channel": "email"}
