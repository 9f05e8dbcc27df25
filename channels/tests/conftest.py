import json

import pytest
from django.utils import timezone
from twilio.request_validator import RequestValidator

from channels.models import Delivery, DeliveryStatus, Message, MessageSource, MessageStatus
from channels.providers.twilio import status_callback_url
from compliance.actions import record_consent_change
from contacts.models import Contact
from templates.models import Template, TemplateVersion

from .ses_events import ses_event


@pytest.fixture
def contact(db):
    return Contact.objects.create(external_id="alice", email="alice@example.com", phone="+14155550100",
                                  first_name="Alice")


@pytest.fixture
def marketing_consent(contact):
    """The contact opted in to marketing by email and SMS (before the test: no opt-in confirmation)."""
    for channel in ("email", "sms", "whatsapp"):
        record_consent_change(contact, channel, "marketing", "granted", "form", evidence={"form": "signup"},
                              announce=False)
    return contact


@pytest.fixture
def template_version(db):
    template = Template.objects.create(key="order-shipped", name="Order shipped", purpose="transactional")
    variants = [
        {"channel": "email", "locale": "en", "subject": "Your order shipped", "preheader": "",
         "text_body": "Your order shipped.", "html_body": "<p>Your order shipped.</p>",
         "title": "", "provider_template_id": ""},
        {"channel": "sms", "locale": "en", "subject": "", "preheader": "", "text_body": "Your order shipped.",
         "html_body": "", "title": "", "provider_template_id": ""},
        # The WhatsApp template approved for use outside the 24-hour session.
        {"channel": "whatsapp", "locale": "en", "subject": "", "preheader": "", "text_body": "Your order shipped.",
         "html_body": "", "title": "", "provider_template_id": "HX0000000000000000000000000000001"},
    ]
    return TemplateVersion.objects.create(template=template, number=1, variants=variants, purpose="transactional")


@pytest.fixture
def make_delivery(contact, template_version):
    """Build a queued message and its delivery on the first channel of `plan`, as dispatch would
    (the worker renders its content from template_version when it sends)."""

    def make(channel="email", *, to_address=None, provider="sandbox", purpose="transactional", plan=None,
             status=DeliveryStatus.QUEUED, message_status=MessageStatus.QUEUED, **fields):
        message = Message.objects.create(
            contact=contact, purpose=purpose, template_version=template_version, source=MessageSource.API,
            channel_plan=plan or [{"channel": channel}], status=message_status,
        )
        return Delivery.objects.create(
            message=message, contact=contact, channel=channel, provider=provider, status=status,
            to_address=contact.address_for(channel) if to_address is None else to_address, **fields,
        )

    return make


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def tick(db):
    """Run the beat tick once, as beat does: it runs the fallbacks webhooks marked due."""
    from campaigns.tick import tick

    return lambda now=None: tick(now or timezone.now())


# --- support: customers writing in, agents, queues -------------------------------------------

@pytest.fixture
def write_in(client, twilio_settings):
    """write_in(body, sender=Alice's number, channel="sms") posts a signed Twilio inbound message
    to the webhook, as Twilio does, and returns the InboundMessage stored."""
    import itertools

    from twilio.request_validator import RequestValidator

    from channels.models import InboundMessage

    sids = itertools.count(1)

    def post(body, sender="+14155550100", channel="sms"):
        sid = f"SMin{next(sids)}"
        params = {"MessageSid": sid, "SmsMessageSid": sid, "AccountSid": twilio_settings.TWILIO_ACCOUNT_SID,
                  "From": f"whatsapp:{sender}" if channel == "whatsapp" else sender,
                  "To": "+15005550006", "Body": body, "NumMedia": "0"}
        url = f"{twilio_settings.OMNI_PUBLIC_URL}/webhooks/twilio/inbound/"
        signature = RequestValidator(twilio_settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)
        response = client.post("/webhooks/twilio/inbound/", data=params, headers={"X-Twilio-Signature": signature})
        assert response.status_code == 200, response.content
        return InboundMessage.objects.get(provider="twilio", provider_message_id=sid)

    return post


@pytest.fixture
def agents(db):
    """Three support agents, Ann, Bea and Cy (staff users, in id order), none marked available yet."""
    from django.contrib.auth import get_user_model

    return [get_user_model().objects.create_user(name, f"{name}@omni.example", is_staff=True)
            for name in ("ann", "bea", "cy")]


# --- provider reports: SES through the moto server, Twilio through the local server ------------------

@pytest.fixture
def providers(sesv2_client, twilio_settings):
    """Email through SES (the moto server), SMS through Twilio (the local Twilio server)."""
    return twilio_settings


@pytest.fixture
def ses_report(client, sns_signer):
    """POST an SES event to the SES webhook in an SNS envelope signed as SNS signs it."""

    def post(name, delivery, **details):
        envelope = sns_signer.notification(ses_event(name, delivery.provider_message_id, **details))
        response = client.post("/webhooks/ses/", data=json.dumps(envelope), content_type="text/plain")
        assert response.status_code == 200
        return response

    return post


@pytest.fixture
def twilio_report(client, providers):
    """POST a Twilio status callback for a delivery to the URL Omni gave Twilio with it, signed."""

    def post(delivery, status, sid=None, **extra):
        url = status_callback_url(delivery)
        params = {"MessageSid": sid or delivery.provider_message_id, "MessageStatus": status,
                  "To": delivery.to_address, "From": "+15005550006", **extra}
        signature = RequestValidator(providers.TWILIO_AUTH_TOKEN).compute_signature(url, params)
        response = client.post(url.removeprefix(providers.OMNI_PUBLIC_URL), data=params,
                               headers={"X-Twilio-Signature": signature})
        assert response.status_code == 204
        return response

    return post
