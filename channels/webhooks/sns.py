"""Amazon SES events, delivered by Amazon SNS to POST /webhooks/ses/.

SNS signs every message with a key whose certificate it serves at SigningCertURL. The
signature is checked here (django-anymail does not) against a certificate fetched only from a
URL matching settings.SNS_CERT_URL_REGEX, so a forged message cannot point at its own key.
Its signed Timestamp must also be recent (settings.SNS_MAX_AGE_SECONDS), as AWS's own message
validators require, so a captured message cannot be replayed once SNS has stopped retrying it.
https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html
"""
import base64
import binascii
import hashlib
import json
import logging
import re
from datetime import datetime, timedelta
from urllib.request import urlopen

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings
from django.http import HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from channels.provider_reports import record_delivery_event
from channels.providers.ses import ses_event_type
from channels.models import EventType
from channels.providers.ses import DELIVERY_TAG
from omni import audit
from omni.models import AuditEntry
from omni.choices import Channel
from omni.lib.dates import provider_time
from omni.lib.text import storable

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
# How far ahead of ours SNS's clock may run.
MAX_CLOCK_SKEW = timedelta(minutes=5)
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


SUBSCRIPTION_CONFIRMED = "webhook.sns_subscription_confirmed"


class UntrustedMessage(Exception):
    """The message does not prove it comes from SNS (answered 403)."""


class CertificateUnavailable(Exception):
    """The signing certificate could not be fetched (answered 503, so SNS tries again)."""


@webhook_view
def ses_events(request):
    try:
        envelope = json.loads(request.body)
    except (ValueError, RecursionError):
        # RecursionError: JSON nested deeper than the parser's stack, which SNS never sends.
        return HttpResponseBadRequest("Malformed JSON")
    problem = envelope_problem(envelope)
    if problem:
        return HttpResponseBadRequest(problem)
    if settings.SNS_TOPIC_ARNS and envelope["TopicArn"] not in settings.SNS_TOPIC_ARNS:
        return HttpResponseForbidden("Topic not accepted")
    # Before the signature: a replayed message costs no certificate fetch.
    stale = timestamp_problem(envelope["Timestamp"], timezone.now())
    if stale:
        log.warning("Refused SNS message %r: %s", envelope.get("MessageId"), stale)
        return HttpResponseForbidden("Stale or undated message")
    try:
        verify_signature(envelope)
    except UntrustedMessage as exc:
        log.warning("Refused SNS message %r: %s", envelope.get("MessageId"), exc)
        return HttpResponseForbidden("Invalid signature")
    except CertificateUnavailable as exc:
        log.warning("Cannot verify SNS message %r: %s", envelope.get("MessageId"), exc)
        return HttpResponse("Signing certificate unavailable", status=503)

    if envelope["Type"] == "SubscriptionConfirmation":
        try:
            confirmed = confirm_subscription(envelope)
        except OSError as exc:
            log.warning("Could not confirm SNS subscription to %r: %s", envelope["TopicArn"], exc)
            return HttpResponse("Subscription could not be confirmed", status=503)
        if not confirmed:
            return HttpResponseForbidden("SubscribeURL is not an Amazon SNS address")
        return HttpResponse("Subscribed")
    if envelope["Type"] == "UnsubscribeConfirmation":
        log.info("SNS topic %r unsubscribed this endpoint", envelope["TopicArn"])
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


def timestamp_problem(timestamp: str, now: datetime) -> str:
    """Why a message SNS signed at `timestamp` is not taken at `now`, or "" when it is fresh."""
    try:
        signed_at = parse_datetime(timestamp.strip())
        age = now - signed_at if signed_at is not None and not timezone.is_naive(signed_at) else None
    except (ValueError, OverflowError):  # OverflowError: year 1 with a positive offset
        age = None
    if age is None:
        return f"Timestamp {timestamp[:64]!r} is not an ISO 8601 time with an offset"
    if age > timedelta(seconds=settings.SNS_MAX_AGE_SECONDS):
        return f"Timestamp {timestamp!r} is too old (more than SNS_MAX_AGE_SECONDS={settings.SNS_MAX_AGE_SECONDS})"
    if age < -MAX_CLOCK_SKEW:
        return f"Timestamp {timestamp!r} is in the future"
    return ""


def string_to_sign(envelope: dict) -> bytes:
    """The canonical "name\\nvalue\\n" text SNS signs for this message's type."""
    return "".join(
        f"{name}\n{envelope[name]}\n" for name in SIGNED_FIELDS[envelope["Type"]] if envelope.get(name) is not None
    ).encode("utf-8", "replace")  # a lone surrogate cannot be in what SNS signed: it fails to verify


def verify_signature(envelope: dict) -> None:
    """Raise UntrustedMessage unless the envelope is signed by an SNS certificate."""
    hash_class = SIGNATURE_HASHES.get(str(envelope.get("SignatureVersion")))
    if hash_class is None:
        raise UntrustedMessage(f"unsupported SignatureVersion {envelope.get('SignatureVersion')!r}")
    cert_url = envelope.get("SigningCertURL")
    if not isinstance(cert_url, str) or not trusted_certificate_url(cert_url):
        raise UntrustedMessage(f"certificate URL {cert_url!r} is not an SNS address")
    try:
        signature = base64.b64decode(envelope.get("Signature") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise UntrustedMessage("signature is not base64") from None
    try:
        signing_key(cert_url).verify(signature, string_to_sign(envelope), padding.PKCS1v15(), hash_class())
    except InvalidSignature:
        raise UntrustedMessage("signature does not match") from None


def trusted_certificate_url(url: str) -> bool:
    """Whether SNS may have served its signing certificate from `url` (settings.SNS_CERT_URL_REGEX)."""
    return re.match(settings.SNS_CERT_URL_REGEX, url) is not None


def trusted_subscribe_url(url: str) -> bool:
    """Whether `url` is an Amazon SNS address worth visiting to confirm a subscription."""
    return re.match(settings.SNS_SUBSCRIBE_URL_REGEX, url) is not None


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
    """Visit the SubscribeURL of a verified confirmation once, if it is an SNS address.

    SNS may deliver the same confirmation again (and anyone may replay a captured one): a
    (topic, token) already confirmed is answered without visiting the URL a second time. The
    audit entry written on confirmation is the record of it. Raises OSError when the visit
    fails (answered 503, so SNS sends the confirmation again).
    """
    url = envelope["SubscribeURL"]
    if not trusted_subscribe_url(url):
        log.warning("Refused to confirm SNS subscription at %r", url)
        return False
    token_hash = hashlib.sha256(envelope["Token"].encode("utf-8", "replace")).hexdigest()
    topic_arn = storable(envelope["TopicArn"])
    confirmed = AuditEntry.objects.filter(action=SUBSCRIPTION_CONFIRMED, data__topic_arn=topic_arn)
    if confirmed.filter(data__token_sha256=token_hash).exists():
        log.info("SNS subscription to %r already confirmed; not visiting its SubscribeURL again", topic_arn)
        return True
    with urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310 (URL checked above)
        response.read(MAX_CERTIFICATE_BYTES)
    audit.record(SUBSCRIPTION_CONFIRMED, actor_label="provider:sns", reason="subscription_confirmed",
                 data={"topic_arn": topic_arn, "message_id": storable(envelope["MessageId"]),
                       "token_sha256": token_hash})
    return True


def ses_event_from_notification(envelope: dict) -> dict:
    """The record_delivery_event() arguments for an SNS notification carrying an SES event.

    Never raises on an odd shape (a field of the wrong type is read as missing), and what it
    returns can be stored (omni.lib.text.storable): SNS signed it, so refusing it would only
    make SNS deliver it again and again.
    """
    sns = storable({name: envelope.get(name) for name in ("Type", "MessageId", "TopicArn", "Timestamp")})
    received = {"provider": "ses", "channel": Channel.EMAIL,
                # Without a topic list any signed topic gets in (development only: omni.E006
                # refuses it in production), so its word about a message that is not ours
                # must not suppress anybody's address.
                "protect_unlinked": bool(settings.SNS_TOPIC_ARNS)}
    try:
        event = json.loads(envelope["Message"])
    except (ValueError, RecursionError):
        event = None
    if not isinstance(event, dict):
        # e.g. the plain-text test message SES publishes when a topic is attached.
        message = storable(envelope["Message"])
        return {**received, "provider_event_id": sns["MessageId"], "provider_message_id": "",
                "event_type": EventType.UNKNOWN, "occurred_at": _parse_time(envelope["Timestamp"]),
                "detail": message[:200], "raw": {"sns": sns, "message": message}}

    event = storable(event)
    name = _text(event.get("eventType")) or _text(event.get("notificationType"))
    mail = _mapping(event.get("mail"))
    details = _mapping(event.get(SES_DETAIL_KEYS.get(name, "")))
    message_id = _text(mail.get("messageId"))
    detail, permanent = _describe(name, details)
    occurred_at = _parse_time(details.get("timestamp") or mail.get("timestamp") or envelope["Timestamp"])
    recipients = _recipients(name, details, mail)
    return {
        **received,
        "provider_event_id": ses_event_identity(name, message_id, details, recipients) or sns["MessageId"],
        "provider_message_id": message_id,
        "event_type": ses_event_type(name),
        "occurred_at": occurred_at,
        "recipient": recipients[0] if recipients else "",
        "recipients": recipients,
        "detail": detail,
        "permanent": permanent,
        "raw": {"sns": sns, "event": event},
        "delivery_id": _tagged_delivery_id(mail),
    }


def ses_event_identity(name: str, message_id: str, details: dict, recipients: list[str]) -> str:
    """One id per SES event, whichever SNS envelope carries it ("" when SES gave no message id).

    SNS may deliver one SES event twice, each time under a new SNS MessageId, so the SNS id
    cannot tell repeats apart. SES's own fields can: the message, the event type, and the
    event's timestamp, feedback id (bounces, complaints), recipients and link (clicks).
    """
    if not message_id:
        return ""
    identity = [message_id, name, _text(details.get("timestamp")), _text(details.get("feedbackId")),
                sorted(recipients), _text(details.get("link"))]
    digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]
    return f"ses:{digest}"


def _describe(name: str, details: dict) -> tuple[str, bool]:
    """A short human detail for the event, and whether it is a permanent failure."""
    if name == "Bounce":
        bounce_type = _text(details.get("bounceType"))
        kind = {"Permanent": "hard", "Transient": "soft"}.get(bounce_type, "undetermined")
        return f"{kind}: {_text(details.get('bounceSubType'))}", bounce_type == "Permanent"
    if name == "Complaint":
        return _text(details.get("complaintFeedbackType")), False
    if name == "Click":
        return _text(details.get("link")), False
    if name == "Reject":
        return _text(details.get("reason")), True
    if name == "Rendering Failure":
        return _text(details.get("errorMessage")), True
    if name == "DeliveryDelay":
        return _text(details.get("delayType")), False
    if name not in SES_DETAIL_KEYS:
        return f"SES event {name[:100]!r}", False
    return "", False


def _recipients(name: str, details: dict, mail: dict) -> list[str]:
    """Every address the event is about: all bounced or complained recipients, else the
    recipients of a delivery (or the message's destination)."""
    listed = {"Bounce": "bouncedRecipients", "Complaint": "complainedRecipients"}.get(name)
    if listed and details.get(listed):
        addresses = [_text(_mapping(entry).get("emailAddress")) for entry in _sequence(details[listed])]
    else:
        addresses = [_text(entry) for entry in _sequence(details.get("recipients") or mail.get("destination"))]
    return list(dict.fromkeys(address[:512] for address in addresses if address))


def _tagged_delivery_id(mail: dict) -> int | None:
    values = _sequence(_mapping(mail.get("tags")).get(DELIVERY_TAG))
    value = _text(values[0]) if values else ""
    # Bounded: a value too large for the id column is not one of ours.
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def _sequence(value) -> list:
    return value if isinstance(value, list) else []


def _parse_time(value) -> datetime:
    # Out of range or unreadable: the time of receipt (see omni.lib.dates.provider_time).
    return provider_time(value)
