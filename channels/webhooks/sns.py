"""Amazon SES events, delivered by Amazon SNS to POST /webhooks/ses/.

SNS signs every message with a key whose certificate it serves at SigningCertURL. The
signature is checked here (django-anymail does not) against a certificate fetched only from a
URL matching settings.SNS_CERT_URL_REGEX, so a forged message cannot point at its own key.
https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html
"""
import base64
import binascii
import json
import logging
import re
from datetime import datetime
from urllib.request import urlopen

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings
from django.http import HttpResponse, HttpResponseBadRequest, HttpResponseForbidden

from channels.events import record_delivery_event, ses_event_type
from channels.models import EventType
from channels.providers.ses import DELIVERY_TAG
from compliance import audit
from omni.choices import Channel
from omni.lib.dates import provider_time

from . import webhook_view

log = logging.getLogger(__name__)

# The fields signed for each message type, in the order they are signed.
SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
OPTIONAL_FIELDS = frozenset({"Subject"})
SIGNATURE_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
FETCH_TIMEOUT_SECONDS = 5
MAX_CERTIFICATE_BYTES = 64 * 1024
# SNS uses one certificate per region for months; a small cache avoids a fetch per message.
MAX_CACHED_CERTIFICATES = 20
_signing_keys: dict[str, rsa.RSAPublicKey] = {}

# Where each SES event type keeps its details.
SES_DETAIL_KEYS = {
    "Send": "send",
    "Delivery": "delivery",
    "Bounce": "bounce",
    "Complaint": "complaint",
    "Open": "open",
    "Click": "click",
    "Reject": "reject",
    "Rendering Failure": "failure",
    "DeliveryDelay": "deliveryDelay",
}


class UntrustedMessage(Exception):
    """The message does not prove it comes from SNS (answered 403)."""


class CertificateUnavailable(Exception):
    """The signing certificate could not be fetched (answered 503, so SNS tries again)."""


@webhook_view
def ses_events(request):
    try:
        envelope = json.loads(request.body)
    except ValueError:
        return HttpResponseBadRequest("Malformed JSON")
    problem = envelope_problem(envelope)
    if problem:
        return HttpResponseBadRequest(problem)
    if settings.SNS_TOPIC_ARNS and envelope["TopicArn"] not in settings.SNS_TOPIC_ARNS:
        return HttpResponseForbidden("Topic not accepted")
    try:
        verify_signature(envelope)
    except UntrustedMessage as exc:
        log.warning("Refused SNS message %s: %s", envelope.get("MessageId"), exc)
        return HttpResponseForbidden("Invalid signature")
    except CertificateUnavailable as exc:
        log.warning("Cannot verify SNS message %s: %s", envelope.get("MessageId"), exc)
        return HttpResponse("Signing certificate unavailable", status=503)

    if envelope["Type"] == "SubscriptionConfirmation":
        if not confirm_subscription(envelope):
            return HttpResponseForbidden("SubscribeURL is not an Amazon SNS address")
        return HttpResponse("Subscribed")
    if envelope["Type"] == "UnsubscribeConfirmation":
        log.info("SNS topic %s unsubscribed this endpoint", envelope["TopicArn"])
        return HttpResponse("OK")
    record_delivery_event(**ses_event_from_notification(envelope))
    return HttpResponse("OK")


def envelope_problem(envelope) -> str:
    """What makes this not an SNS message, or "" when it has every field its type signs."""
    if not isinstance(envelope, dict):
        return "Not an SNS message"
    fields = SIGNED_FIELDS.get(envelope.get("Type")) if isinstance(envelope.get("Type"), str) else None
    if fields is None:
        return "Unknown SNS message type"
    for name in fields:
        if name not in OPTIONAL_FIELDS and not isinstance(envelope.get(name), str):
            return f"Missing {name}"
    return ""


def string_to_sign(envelope: dict) -> bytes:
    """The canonical "name\\nvalue\\n" text SNS signs for this message's type."""
    return "".join(
        f"{name}\n{envelope[name]}\n" for name in SIGNED_FIELDS[envelope["Type"]] if envelope.get(name) is not None
    ).encode()


def verify_signature(envelope: dict) -> None:
    """Raise UntrustedMessage unless the envelope is signed by an SNS certificate."""
    hash_class = SIGNATURE_HASHES.get(str(envelope.get("SignatureVersion")))
    if hash_class is None:
        raise UntrustedMessage(f"unsupported SignatureVersion {envelope.get('SignatureVersion')!r}")
    cert_url = envelope.get("SigningCertURL")
    if not isinstance(cert_url, str) or not re.match(settings.SNS_CERT_URL_REGEX, cert_url):
        raise UntrustedMessage(f"certificate URL {cert_url!r} is not an SNS address")
    try:
        signature = base64.b64decode(envelope.get("Signature") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise UntrustedMessage("signature is not base64") from None
    try:
        signing_key(cert_url).verify(signature, string_to_sign(envelope), padding.PKCS1v15(), hash_class())
    except InvalidSignature:
        raise UntrustedMessage("signature does not match") from None


def signing_key(cert_url: str) -> rsa.RSAPublicKey:
    """The public key of the certificate at cert_url, fetched once and kept in memory."""
    key = _signing_keys.get(cert_url)
    if key is not None:
        return key
    try:
        with urlopen(cert_url, timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310 (URL checked by caller)
            pem = response.read(MAX_CERTIFICATE_BYTES)
    except OSError as exc:
        raise CertificateUnavailable(f"{cert_url}: {exc}") from exc
    try:
        key = x509.load_pem_x509_certificate(pem).public_key()
    except ValueError:
        raise UntrustedMessage(f"{cert_url} is not a PEM certificate") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise UntrustedMessage(f"{cert_url} does not hold an RSA key")
    if len(_signing_keys) >= MAX_CACHED_CERTIFICATES:
        _signing_keys.clear()
    _signing_keys[cert_url] = key
    return key


def confirm_subscription(envelope: dict) -> bool:
    """Visit the SubscribeURL of a verified confirmation, if it is an SNS address."""
    url = envelope["SubscribeURL"]
    if not re.match(settings.SNS_SUBSCRIBE_URL_REGEX, url):
        log.warning("Refused to confirm SNS subscription at %r", url)
        return False
    # An error here answers 500, and SNS sends the confirmation again.
    with urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310 (URL checked above)
        response.read(MAX_CERTIFICATE_BYTES)
    audit.record("webhook.sns_subscription_confirmed", actor_label="provider:sns", reason="subscription_confirmed",
                 data={"topic_arn": envelope["TopicArn"], "message_id": envelope["MessageId"]})
    return True


def ses_event_from_notification(envelope: dict) -> dict:
    """The record_delivery_event() arguments for an SNS notification carrying an SES event."""
    sns = {name: envelope.get(name) for name in ("Type", "MessageId", "TopicArn", "Timestamp")}
    received = {"provider": "ses", "provider_event_id": envelope["MessageId"], "channel": Channel.EMAIL}
    try:
        event = json.loads(envelope["Message"])
    except ValueError:
        event = None
    if not isinstance(event, dict):
        # e.g. the plain-text test message SES publishes when a topic is attached.
        return {**received, "provider_message_id": "", "event_type": EventType.UNKNOWN,
                "occurred_at": _parse_time(envelope["Timestamp"]), "detail": envelope["Message"][:200],
                "raw": {"sns": sns, "message": envelope["Message"]}}

    name = event.get("eventType") or event.get("notificationType") or ""
    mail = event.get("mail") or {}
    details = event.get(SES_DETAIL_KEYS.get(name, ""), {}) or {}
    detail, permanent = _describe(name, details)
    return {
        **received,
        "provider_message_id": mail.get("messageId", ""),
        "event_type": ses_event_type(name),
        "occurred_at": _parse_time(details.get("timestamp") or mail.get("timestamp") or envelope["Timestamp"]),
        "recipient": _recipient(name, details, mail),
        "detail": detail,
        "permanent": permanent,
        "raw": {"sns": sns, "event": event},
        "delivery_id": _tagged_delivery_id(mail),
    }


def _describe(name: str, details: dict) -> tuple[str, bool]:
    """A short human detail for the event, and whether it is a permanent failure."""
    if name == "Bounce":
        bounce_type = details.get("bounceType", "")
        kind = {"Permanent": "hard", "Transient": "soft"}.get(bounce_type, "undetermined")
        return f"{kind}: {details.get('bounceSubType', '')}", bounce_type == "Permanent"
    if name == "Complaint":
        return details.get("complaintFeedbackType", ""), False
    if name == "Click":
        return details.get("link", ""), False
    if name == "Reject":
        return details.get("reason", ""), True
    if name == "Rendering Failure":
        return details.get("errorMessage", ""), True
    if name == "DeliveryDelay":
        return details.get("delayType", ""), False
    if name not in SES_DETAIL_KEYS:
        return f"SES event {name!r}", False
    return "", False


def _recipient(name: str, details: dict, mail: dict) -> str:
    listed = {"Bounce": "bouncedRecipients", "Complaint": "complainedRecipients"}.get(name)
    if listed and details.get(listed):
        return details[listed][0].get("emailAddress", "")
    recipients = details.get("recipients") or mail.get("destination") or [""]
    return recipients[0]


def _tagged_delivery_id(mail: dict) -> int | None:
    values = (mail.get("tags") or {}).get(DELIVERY_TAG) or [""]
    return int(values[0]) if str(values[0]).isdigit() else None


def _parse_time(value) -> datetime:
    # Out of range or unreadable: the time of receipt (see omni.lib.dates.provider_time).
    return provider_time(value)
