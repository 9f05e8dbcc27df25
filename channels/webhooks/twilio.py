"""Twilio webhooks: message status callbacks and inbound SMS, WhatsApp and RCS messages.

Both check X-Twilio-Signature, Twilio's HMAC of the full URL and the POST parameters. Signed
with the account's auth token it is HMAC-SHA1; signed with a webhook signing key (SharedKey)
Twilio adds X-Twilio-Webhooks-Signature-Settings ("key=...,algorithm=HMAC_SHA256") naming
the algorithm, which twilio.request_validator implements (HMAC_SHA1 and HMAC_SHA256). The URL
is rebuilt from settings.OMNI_PUBLIC_URL, because behind a proxy the host and scheme Django
sees are not the ones Twilio signed.
https://www.twilio.com/docs/usage/webhooks/webhooks-security
"""
import hmac

from django.conf import settings
from django.core.exceptions import BadRequest, SuspiciousOperation
from django.http import HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.http.multipartparser import MultiPartParserError
from django.utils import timezone
from twilio.request_validator import SIGNATURE_SETTINGS_HEADER, RequestValidator, get_signature_algorithm

from channels.provider_reports import record_delivery_event, store_inbound_message
from channels.providers.twilio import twilio_event_type
from channels.models import EventType
from channels.providers.twilio import PERMANENT_FAILURE_CODES, SUPPRESSING_ERROR_CODES
from omni.choices import Channel
from omni.lib.text import storable

from . import public_url, webhook_view

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
ADDRESS_PREFIXES = {"whatsapp:": Channel.WHATSAPP, "rcs:": Channel.RCS}
# Twilio's SIDs are 34 characters; the columns hold 255 (ids) and 512 (addresses).
MAX_LENGTHS = {"MessageSid": 255, "SmsMessageSid": 255, "SmsSid": 255, "MessageStatus": 50, "SmsStatus": 50,
               "From": 512, "To": 512}
# Twilio delivers at most 10 media items with one inbound message.
MAX_MEDIA = 10


@webhook_view
def status_callback(request):
    if not form_readable(request):
        return HttpResponseBadRequest("Malformed form body")
    if not signature_valid(request):
        return HttpResponseForbidden("Invalid signature")
    params, problem = webhook_params(request.POST)
    if problem:
        return HttpResponseBadRequest(problem)
    sid = params.get("MessageSid") or params.get("SmsSid")
    if not sid or not (params.get("MessageStatus") or params.get("SmsStatus")):
        return HttpResponseBadRequest("MessageSid and MessageStatus are required")
    record_delivery_event(**status_event_from_callback(params, request.GET.get("delivery")))
    return HttpResponse(status=204)


@webhook_view
def inbound_message(request):
    if not form_readable(request):
        return HttpResponseBadRequest("Malformed form body")
    if not signature_valid(request):
        return HttpResponseForbidden("Invalid signature")
    params, problem = webhook_params(request.POST)
    if problem:
        return HttpResponseBadRequest(problem)
    sid = params.get("MessageSid") or params.get("SmsMessageSid") or params.get("SmsSid")
    if not sid or not params.get("From"):
        return HttpResponseBadRequest("MessageSid and From are required")
    channel, from_address = split_address(params["From"])
    store_inbound_message(
        "twilio", sid, channel, from_address,
        to_address=split_address(params.get("To", ""))[1],
        body=params.get("Body", ""),
        media=inbound_media(params),
        raw=params,
    )
    # An empty TwiML response: Omni answers later, from a journey or an agent, if at all.
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


def form_readable(request) -> bool:
    """Whether Django can read the POST parameters at all (Twilio always sends a plain form).

    A multipart body without a boundary, more fields than DATA_UPLOAD_MAX_NUMBER_FIELDS or a
    form in a charset other than UTF-8 raises when request.POST is first read: a malformed
    request (400), not a failure of ours.
    """
    try:
        request.POST
    except (MultiPartParserError, SuspiciousOperation, BadRequest):
        return False
    return True


def webhook_params(post) -> tuple[dict, str]:
    """The signed POST parameters as a plain dict that can be stored, and what is wrong with them.

    Called after the signature check (which needs them exactly as sent). NULs and lone
    surrogates become U+FFFD (PostgreSQL cannot store them); an id or address longer than its
    column is refused, naming the parameter.
    """
    params = storable(post.dict())
    for name, limit in MAX_LENGTHS.items():
        if len(params.get(name, "")) > limit:
            return params, f"{name} is longer than {limit} characters"
    return params, ""


def signature_valid(request) -> bool:
    """Whether Twilio signed this request, with the auth token or the webhook signing key.

    The algorithm is HMAC-SHA1 unless X-Twilio-Webhooks-Signature-Settings names another that
    the twilio library supports (HMAC_SHA256); an unknown one fails.
    """
    signature = request.headers.get("X-Twilio-Signature", "")
    secrets = [secret for secret in (settings.TWILIO_WEBHOOK_SIGNING_SECRET, settings.TWILIO_AUTH_TOKEN) if secret]
    if not secrets or not signature:
        return False
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER, ""))
    url = public_url(request)
    validators = [RequestValidator(secret) for secret in secrets]
    # Twilio signs the URL as configured, which is the public URL: one HMAC settles a genuine
    # request. validate() computes two (the URL with and without its port) every time, so it
    # only decides what this does not: another form of the URL, or an algorithm it refuses.
    try:
        if any(hmac.compare_digest(validator.compute_signature(url, request.POST, algorithm).encode(),
                                   signature.encode()) for validator in validators):
            return True
    except ValueError:  # an algorithm the library does not know: validate() refuses it, and logs why
        pass
    return any(validator.validate(url, request.POST, signature, algorithm) for validator in validators)


def status_event_from_callback(params, delivery_hint: str | None) -> dict:
    """The record_delivery_event() arguments for a Twilio status callback.

    The callback carries no event id and no time: one event per (message, status) is all a
    status can say, and it happened about now.
    """
    sid = params.get("MessageSid") or params.get("SmsSid")
    status = (params.get("MessageStatus") or params.get("SmsStatus")).lower()
    event_type = twilio_event_type(status)
    error_code = _as_int(params.get("ErrorCode"))
    failed = event_type in (EventType.FAILED, EventType.UNDELIVERED)
    channel, recipient = split_address(params.get("To", ""))
    return {
        "provider": "twilio",
        "provider_event_id": f"{sid}:{status}",
        "provider_message_id": sid,
        "event_type": event_type,
        "occurred_at": timezone.now(),
        "recipient": recipient,
        "detail": f"{status}: error {error_code}" if error_code else status,
        "permanent": failed and error_code in PERMANENT_FAILURE_CODES,
        "raw": params,
        "delivery_id": _as_int(delivery_hint),
        "channel": channel,
        "suppression_reason": SUPPRESSING_ERROR_CODES.get(error_code, "") if failed else "",
    }


def split_address(address: str) -> tuple[str, str]:
    """("whatsapp", "+14155550100") for "whatsapp:+14155550100"; plain numbers are SMS."""
    for prefix, channel in ADDRESS_PREFIXES.items():
        if address.startswith(prefix):
            return channel, address[len(prefix):]
    return Channel.SMS, address


def inbound_media(params) -> list[dict]:
    # Twilio sends at most MAX_MEDIA items with a message; NumMedia is only what the request says.
    count = min(_as_int(params.get("NumMedia")) or 0, MAX_MEDIA)
    return [
        {"url": params.get(f"MediaUrl{index}", ""), "content_type": params.get(f"MediaContentType{index}", "")}
        for index in range(count)
    ]


def _as_int(value) -> int | None:
    # isascii: "²".isdigit() is true, and int() refuses it. Bounded to fit an id column.
    text = str(value or "")
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None
