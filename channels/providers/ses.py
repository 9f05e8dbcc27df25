"""Amazon SES (API v2) for email.

Delivery, bounce, complaint, open and click events come back through an SNS topic attached to
the configuration set; see channels/webhooks/sns.py. The EmailTags sent here come back in
those events (mail.tags), which links an event to its delivery even when the send was never
recorded (a worker that died after the provider call).
"""
from email import policy
from email.message import EmailMessage

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.utils.functional import cached_property

from channels.base import DeliveryError, Provider, SendResult
from channels.models import EventType
from omni.choices import Channel, Purpose

from . import aws_client, aws_send_error

DELIVERY_TAG = "omni_delivery"
MESSAGE_TAG = "omni_message"


class SesProvider(Provider):
    name = "ses"
    channels = frozenset({Channel.EMAIL})

    @cached_property
    def client(self):
        return aws_client("sesv2")

    def build_payload(self, delivery) -> dict:
        if not settings.SES_FROM_EMAIL:
            raise DeliveryError("SES_FROM_EMAIL is not set", code="not_configured", permanent=True)
        body = {}
        if delivery.text_body:
            body["Text"] = {"Data": delivery.text_body, "Charset": "UTF-8"}
        if delivery.html_body:
            body["Html"] = {"Data": delivery.html_body, "Charset": "UTF-8"}
        if not body:
            raise DeliveryError("Email has neither a text nor an HTML part", code="empty_body", permanent=True)
        # Marketing mail carries List-Unsubscribe and List-Unsubscribe-Post (one-click
        # unsubscribe, required by the big mailbox providers for bulk senders): sent as a MIME
        # message Omni builds, so the headers are exactly what Omni wrote (and what moto keeps).
        headers = delivery.content.get("headers") or {}
        if headers:
            content = {"Raw": {"Data": mime_message(delivery, headers)}}
        else:
            content = {"Simple": {"Subject": {"Data": delivery.subject, "Charset": "UTF-8"}, "Body": body}}
        payload = {
            "FromEmailAddress": settings.SES_FROM_EMAIL,
            "Destination": {"ToAddresses": [delivery.to_address]},
            "Content": content,
            "EmailTags": [
                {"Name": MESSAGE_TAG, "Value": str(delivery.message_id)},
                {"Name": DELIVERY_TAG, "Value": str(delivery.pk)},
            ],
        }
        configuration_set = configuration_set_for(delivery.message.purpose)
        if configuration_set:
            payload["ConfigurationSetName"] = configuration_set
        return payload

    def post(self, payload: dict) -> dict:
        try:
            return self.client.send_email(**payload)
        except (ClientError, BotoCoreError) as exc:
            raise aws_send_error(exc) from exc

    def parse_result(self, response: dict) -> SendResult:
        return SendResult(provider_message_id=response["MessageId"], raw={"MessageId": response["MessageId"]})


# Long header lines (a signed List-Unsubscribe URL) stay whole: the default 78 would turn them
# into RFC 2047 encoded words, which mailbox providers do not read as a URL.
MIME_POLICY = policy.SMTP.clone(max_line_length=998)


def mime_message(delivery, headers: dict[str, str]) -> bytes:
    """The delivery as a MIME message (text and HTML alternatives) with `headers` added."""
    message = EmailMessage(policy=MIME_POLICY)
    message["From"] = settings.SES_FROM_EMAIL
    message["To"] = delivery.to_address
    message["Subject"] = delivery.subject
    for name, value in headers.items():
        message[name] = value
    parts = [(body, subtype) for body, subtype in ((delivery.text_body, "plain"), (delivery.html_body, "html")) if body]
    (first, first_subtype), rest = parts[0], parts[1:]
    message.set_content(first, subtype=first_subtype, cte="quoted-printable")
    for body, subtype in rest:
        message.add_alternative(body, subtype=subtype, cte="quoted-printable")
    return message.as_bytes()


def configuration_set_for(purpose: str) -> str:
    """Marketing mail goes through its own configuration set (and IP pool) so its reputation
    never drags down password resets; empty means no configuration set."""
    if purpose == Purpose.MARKETING:
        return settings.SES_CONFIGURATION_SET_MARKETING
    return settings.SES_CONFIGURATION_SET_TRANSACTIONAL


# SES event publishing `eventType` and identity notification `notificationType` values.
# https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html
SES_EVENT_TYPES = {
    "Send": EventType.SENT,
    "Delivery": EventType.DELIVERED,
    "Bounce": EventType.BOUNCED,
    "Complaint": EventType.COMPLAINED,
    "Open": EventType.OPENED,
    "Click": EventType.CLICKED,
    "Reject": EventType.REJECTED,
    "Rendering Failure": EventType.FAILED,
    "DeliveryDelay": EventType.DEFERRED,
}


def ses_event_type(name: str) -> str:
    return SES_EVENT_TYPES.get(name, EventType.UNKNOWN)
