"""Each SMS delivery records its segments: as the provider reports them (Twilio), else as the
GSM-7/UCS-2 split SMS providers bill by counts them (the sandbox, Amazon SNS)."""
import pytest

from channels.delivery import send_delivery
from channels.models import Delivery, DeliveryStatus, Message, MessageSource, MessageStatus
from templates.models import Template, TemplateVersion

LONG_GSM = "Your order 4411 shipped today and should arrive on Tuesday. " * 3  # 180 characters: 2 segments
CURLY_QUOTE = "Your order shipped, we’re on our way to you with it now! Track it in the app any time."  # UCS-2: 2


def sms_delivery(contact, text: str, provider: str) -> Delivery:
    template = Template.objects.create(key=f"sms-{Template.objects.count()}", name="SMS", purpose="transactional")
    version = TemplateVersion.objects.create(template=template, number=1, purpose="transactional", variants=[
        {"channel": "sms", "locale": "en", "subject": "", "preheader": "", "text_body": text, "html_body": "",
         "title": "", "provider_template_id": ""}])
    message = Message.objects.create(contact=contact, purpose="transactional", template_version=version,
                                     source=MessageSource.API, channel_plan=[{"channel": "sms"}],
                                     status=MessageStatus.QUEUED)
    return Delivery.objects.create(message=message, contact=contact, channel="sms", provider=provider,
                                   status=DeliveryStatus.QUEUED, to_address=contact.phone)


@pytest.mark.parametrize(("text", "segments"), [("Your order shipped.", 1), (LONG_GSM, 2), (CURLY_QUOTE, 2)])
def test_a_sandbox_sms_records_the_segments_its_text_costs(contact, text, segments):
    delivery = sms_delivery(contact, text, "sandbox")

    send_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.segments) == (DeliveryStatus.SENT, segments)


def test_an_sns_sms_records_the_segments_its_text_costs(contact, aws_settings, moto_server):
    delivery = sms_delivery(contact, LONG_GSM, "sns")

    send_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.segments) == (DeliveryStatus.SENT, 2)


def test_an_email_records_no_segments(make_delivery):
    delivery = make_delivery("email")

    send_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.segments) == (DeliveryStatus.SENT, None)
