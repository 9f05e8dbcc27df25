"""A contact with something of theirs in every app, built for the erasure tests (and the
composed browser test): what erasure must empty, and what it must leave."""
from datetime import timedelta

from django.utils import timezone

from campaigns.models import Enrollment, EnrollmentState, Journey
from channels.models import (
    Conversation,
    ConversationNote,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    InboundMessage,
    Message,
    MessageSource,
    MessageStatus,
    OutboxMessage,
)
from channels.conversations import block_sender
from compliance.actions import record_consent_change, suppress
from contacts.models import Contact, ContactEvent, Device
from omni.models import WebhookCall, WebhookEndpoint
from templates.models import Template, TemplateVersion

EMAIL = "erin.erased@example.com"
PHONE = "+14155550199"
SECRET_WORDS = ("Erin", "Erasmus", EMAIL, PHONE, "Flat 4", "device-token-erin", "my-secret-order")

_journeys = iter(range(1, 10_000))


def template_version():
    template, _ = Template.objects.get_or_create(key="erasure-receipt", defaults={
        "name": "Receipt", "purpose": "transactional"})
    version = TemplateVersion.objects.filter(template=template).first()
    if version is None:
        version = TemplateVersion.objects.create(template=template, number=1, purpose="transactional", variants=[
            {"channel": "email", "locale": "en", "subject": "Receipt", "preheader": "", "text_body": "Hi {{ name }}",
             "html_body": "<p>Hi {{ name }}</p>", "title": "", "provider_template_id": ""}])
    return version


def contact_with_everything(*, external_id="erin", email=EMAIL, phone=PHONE, messages=2) -> Contact:
    """A contact with consents (with evidence), a suppression, a device, an event, `messages`
    sent messages with deliveries, provider events and sandbox copies, one pending, one deferred
    and one queued message, own content, an inbound message with media, a conversation note, a
    live enrollment with context and a stored webhook answer, audit personal data, and a
    suppression and a block of the phone made with no contact."""
    now = timezone.now()
    contact = Contact.objects.create(
        external_id=external_id, email=email, phone=phone, first_name="Erin", last_name="Erasmus",
        timezone="Europe/London", country="GB", attributes={"address": "Flat 4", "plan": "gold"})
    for channel in ("email", "sms"):
        record_consent_change(contact, channel, "marketing", "granted", "form", announce=False,
                              evidence={"ip": "203.0.113.9", "user_agent": "Erin's phone", "text": "Flat 4"})
    suppress(email, channel="email", purpose="marketing", reason="complaint", contact=contact,
             detail=f"complaint from {email}")
    # Made before Omni knew the number was hers: tied to no contact, found by the address.
    suppress(phone, channel="sms", purpose="marketing", reason="manual", detail=f"asked by phone from {phone}")
    block_sender("whatsapp", phone, reason="abuse", note="Erin sent threats from Flat 4", actor=None)
    Device.objects.create(contact=contact, platform="ios", token=f"device-token-{external_id}",
                          provider_endpoint="arn:aws:sns:device-token-erin", app_version="1.2")
    ContactEvent.objects.create(contact=contact, name="order.placed", idempotency_key=f"{external_id}-order-1",
                                properties={"note": "my-secret-order"})
    version = template_version()
    for index in range(messages):
        message = Message.objects.create(contact=contact, purpose="transactional", template_version=version,
                                         source=MessageSource.API, channel_plan=[{"channel": "email"}],
                                         status=MessageStatus.SENT, variables={"name": "Erin"})
        delivery = Delivery.objects.create(
            message=message, contact=contact, channel="email", provider="sandbox", status=DeliveryStatus.SENT,
            to_address=email, subject="Receipt for Erin", text_body="Hi Erin", html_body="<p>Hi Erin</p>",
            content={"headers": {"To": email}}, provider_message_id=f"{external_id}-pm-{index}", sent_at=now,
            error_message=f"soft bounce for {email}")
        DeliveryEvent.objects.create(delivery=delivery, provider="sandbox", provider_event_id=f"{external_id}-ev-{index}",
                                     provider_message_id=delivery.provider_message_id, event_type="delivered",
                                     recipient=email, detail=f"delivered to {email}", raw={"to": email})
        OutboxMessage.objects.create(delivery=delivery, channel="email", to_address=email, subject="Receipt for Erin",
                                     text_body="Hi Erin", html_body="<p>Hi Erin</p>", content={"to": email},
                                     provider_message_id=f"{external_id}-outbox-{index}", simulated_outcome="delivered")
    for status in (MessageStatus.PENDING, MessageStatus.DEFERRED):
        Message.objects.create(contact=contact, purpose="marketing", template_version=version, source=MessageSource.API,
                               channel_plan=[{"channel": "email"}], status=status, variables={"name": "Erin"},
                               defer_until=now + timedelta(hours=1) if status == MessageStatus.DEFERRED else None)
    queued = Message.objects.create(contact=contact, purpose="transactional", source=MessageSource.AGENT,
                                    content=[{"channel": "sms", "locale": "en", "text_body": "Erin, your Flat 4 key"}],
                                    channel_plan=[{"channel": "sms"}], status=MessageStatus.QUEUED)
    Delivery.objects.create(message=queued, contact=contact, channel="sms", provider="sandbox",
                            status=DeliveryStatus.QUEUED, to_address=phone, text_body="Erin, your Flat 4 key")
    conversation = Conversation.objects.create(contact=contact, channel="sms")
    InboundMessage.objects.create(contact=contact, conversation=conversation, channel="sms", provider="sandbox",
                                  provider_message_id=f"{external_id}-in-1", from_address=phone, to_address="+15005550006",
                                  body="Hi, this is Erin from Flat 4", media=[{"url": "https://media.example/erin.jpg"}],
                                  raw={"From": phone, "Body": "Hi, this is Erin"})
    ConversationNote.objects.create(conversation=conversation, body="Erin Erasmus lives at Flat 4")
    journey = Journey.objects.create(name=f"Onboarding {next(_journeys)}", slug=f"onboarding-{next(_journeys)}")
    enrollment = Enrollment.objects.create(journey=journey, contact=contact, state=EnrollmentState.ACTIVE,
                                           next_run_at=now + timedelta(days=1),
                                           context={"trigger": {"type": "event", "properties": {"note": "my-secret-order"}},
                                                    "webhooks": {"lookup": {"answer": {"name": "Erin"}}}})
    endpoint, _ = WebhookEndpoint.objects.get_or_create(name="crm-lookup", defaults={"url": "https://crm.example/hook"})
    WebhookCall.objects.create(endpoint=endpoint, url=endpoint.url, idempotency_key=f"omni:webhook:{enrollment.pk}:1",
                               response_excerpt='{"name": "Erin Erasmus"}', error="", outcome="ok", status_code=200)
    return contact
