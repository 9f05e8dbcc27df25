"""Twilio webhooks: message status callbacks and inbound SMS, WhatsApp and RCS messages.

Both check X-Twilio-Signature, Twilio's HMAC of the full URL and the POST parameters keyed
with the account's auth token. The URL is rebuilt from settings.OMNI_PUBLIC_URL, because
behind a proxy the host and scheme Django sees are not the ones Twilio signed.
https://www.twilio.com/docs/usage/webhooks/webhooks-security
"""
from django.conf import settings
from django.http import HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.utils import timezone
from twilio.request_validator import RequestValidator

from channels.events import record_delivery_event, record_inbound_message, twilio_event_type
from channels.models import EventType
from channels.providers.twilio import PERMANENT_FAILURE_CODES, SUPPRESSING_ERROR_CODES
from omni.choices import Channel

from . import public_url, webhook_view

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
ADDRESS_PREFIXES = {"whatsapp:": Channel.WHATSAPP, "rcs:": Channel.RCS}


@webhook_view
def status_callback(request):
    if not signature_valid(request):
        return HttpResponseForbidden("Invalid signature")
    params = request.POST
    sid = params.get("MessageSid") or params.get("SmsSid")
    if not sid or not (params.get("MessageStatus") or params.get("SmsStatus")):
        return HttpResponseBadRequest("MessageSid and MessageStatus are required")
    record_delivery_event(**status_event_from_callback(params, request.GET.get("delivery")))
    return HttpResponse(status=204)


@webhook_view
def inbound_message(request):
    if not signature_valid(request):
        return HttpResponseForbidden("Invalid signature")
    params = request.POST
    sid = params.get("MessageSid") or params.get("SmsMessageSid") or params.get("SmsSid")
    if not sid or not params.get("From"):
        return HttpResponseBadRequest("MessageSid and From are required")
    channel, from_address = split_address(params["From"])
    record_inbound_message(
        "twilio", sid, channel, from_address,
        to_address=split_address(params.get("To", ""))[1],
        body=params.get("Body", ""),
        media=inbound_media(params),
        raw=params.dict(),
    )
    # An empty TwiML response: Omni answers later, from a journey or an agent, if at all.
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


def signature_valid(request) -> bool:
    token = settings.TWILIO_AUTH_TOKEN
    signature = request.headers.get("X-Twilio-Signature", "")
    if not token or not signature:
        return False
    return RequestValidator(token).validate(public_url(request), request.POST, signature)


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
        "raw": params.dict(),
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
    count = _as_int(params.get("NumMedia")) or 0
    return [
        {"url": params.get(f"MediaUrl{index}", ""), "content_type": params.get(f"MediaContentType{index}", "")}
        for index in range(count)
    ]


def _as_int(value) -> int | None:
    return int(value) if value and str(value).isdigit() else None
