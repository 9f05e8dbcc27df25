"""The shape later capabilities build on: a message with its own content, one delivery per push
device with its plan step, a decision row per channel tried, and history no delete can take."""
import pytest
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from campaigns.tick import tick

from channels import routing
from channels.delivery import send_delivery
from channels.provider_reports import record_delivery_event
from channels.models import Delivery, DeliveryStatus, EventType, Message, MessageSource, MessageStatus, OutboxMessage
from compliance.models import Decision
from contacts.models import Contact, Device
from omni.models import AuditEntry

pytestmark = pytest.mark.django_db

PUSH_THEN_SMS = [{"channel": "push"}, {"channel": "sms"}]


@pytest.fixture
def agent(django_user_model):
    return django_user_model.objects.create_user(username="sam", password="x", is_staff=True)


@pytest.fixture
def devices(contact):
    return [Device.objects.create(contact=contact, platform="ios", token="token-ios"),
            Device.objects.create(contact=contact, platform="android", token="token-android")]


def fail(delivery, event_id):
    """The provider reports the delivery failed; then the tick runs the fallback that made due."""
    record_delivery_event("sandbox", event_id, "", EventType.FAILED, delivery.queued_at, delivery_id=delivery.pk)
    tick(timezone.now())


def test_a_message_with_its_own_content_is_sent_as_written_with_its_agent(contact, agent, now):
    # given an agent's reply, not a template
    message, created = routing.create_message(
        contact=contact, source=MessageSource.AGENT, purpose="transactional", agent=agent,
        content=[{"channel": "sms", "text_body": "Hi {{ first_name }}, sorted: your refund is on its way."}],
        channel_plan=[{"channel": "sms"}],
    )

    # when
    delivery = routing.dispatch(message, now=now)

    send_delivery(delivery.pk)

    # then it goes out exactly as written, not rendered
    delivery.refresh_from_db()
    assert created and message.template_version is None and message.agent == agent
    assert delivery.text_body == "Hi {{ first_name }}, sorted: your refund is on its way."
    assert OutboxMessage.objects.get().text_body == delivery.text_body
    assert (delivery.channel, delivery.plan_step, delivery.to_address) == ("sms", 0, "+14155550100")


def test_a_message_needs_a_template_version_or_its_own_content_but_not_both(contact, template_version):
    with pytest.raises(ValueError, match="not both"):
        routing.create_message(contact=contact, source=MessageSource.API, channel_plan=[{"channel": "sms"}])
    with pytest.raises(ValueError, match="not both"):
        routing.create_message(contact=contact, source=MessageSource.API, template_version=template_version,
                               content=[{"channel": "sms", "text_body": "x"}], channel_plan=[{"channel": "sms"}])
    # and the database holds the same rule
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(contact=contact, purpose="transactional", source="api", channel_plan=[{"channel": "sms"}])


def test_push_goes_to_every_device_and_falls_back_only_when_no_device_can_deliver(contact, devices, now):
    # given a push to a contact with two devices
    message, _ = routing.create_message(
        contact=contact, source=MessageSource.API, purpose="transactional", channel_plan=PUSH_THEN_SMS,
        content=[{"channel": "push", "title": "Order", "text_body": "Shipped"}, {"channel": "sms", "text_body": "Shipped"}],
    )
    routing.dispatch(message, now=now)
    ios, android = Delivery.objects.filter(message=message).order_by("device_id")
    assert {(d.device, d.to_address, d.plan_step) for d in (ios, android)} == {
        (devices[0], "token-ios", 0), (devices[1], "token-android", 0)}

    # when one device fails, the other may still deliver: the message stays on push
    fail(ios, "ev-ios")
    message.refresh_from_db()
    assert (message.plan_step, Delivery.objects.filter(message=message, channel="sms").count()) == (0, 0)

    # when the other fails too, the message moves to SMS
    fail(android, "ev-android")
    message.refresh_from_db()
    sms = Delivery.objects.get(message=message, channel="sms")
    assert (message.plan_step, sms.plan_step, sms.device) == (1, 1, None)


def test_a_message_that_falls_back_has_one_decision_per_channel_tried(contact, now):
    message, _ = routing.create_message(
        contact=contact, source=MessageSource.API, purpose="transactional",
        content=[{"channel": "email", "subject": "Hi", "text_body": "x"}, {"channel": "sms", "text_body": "x"}],
        channel_plan=[{"channel": "email"}, {"channel": "sms"}],
    )
    email = routing.dispatch(message, now=now)

    fail(email, "ev-email")

    decided = list(Decision.objects.filter(message_id=message.pk).order_by("decided_at", "plan_step")
                   .values_list("channel", "plan_step", "outcome"))
    assert decided == [("email", 0, "allow"), ("sms", 1, "allow")]
    assert AuditEntry.objects.filter(action="gate.allow", contact_id=contact.pk).count() == 2


def test_deleting_a_contact_never_takes_what_was_sent_or_consented(contact, template_version, now):
    from compliance.actions import record_consent_change

    record_consent_change(contact, "sms", "marketing", "granted", "form", announce=False)
    message, _ = routing.create_message(contact=contact, source=MessageSource.API, template_version=template_version,
                                        channel_plan=[{"channel": "sms"}])
    routing.dispatch(message, now=now)

    with pytest.raises(ProtectedError):
        Contact.objects.filter(pk=contact.pk).delete()

    assert Message.objects.filter(contact=contact).exists() and contact.consent_changes.exists()
    assert Delivery.objects.get(message=message).status == DeliveryStatus.QUEUED
    assert message.status == MessageStatus.QUEUED
