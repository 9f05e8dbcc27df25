"""Twilio Programmable Messaging for SMS, WhatsApp and RCS.

Status callbacks come back to channels/webhooks/twilio.py. The callback URL carries Omni's
delivery id, so a callback settles a delivery even when the send itself was never recorded.
"""
import json
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from urllib.parse import urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.urls import reverse
from django.utils.functional import cached_property
from requests import ConnectionError as RequestsConnectionError
from requests import ConnectTimeout, ReadTimeout
from requests.exceptions import SSLError
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from channels.base import CannotTell, DeliveryError, DeliveryOutcomeUnknown, Provider, SendResult
from channels.models import EVENT_DELIVERY_STATUS, Delivery, DeliveryStatus, EventType
from channels.whatsapp import in_whatsapp_session
from compliance.models import SuppressionReason
from omni.choices import Channel

REQUEST_TIMEOUT_SECONDS = 15
# Where to look for a message whose SID was never recorded, around the worker's claim: the
# call follows the claim within a request timeout; a minute each side covers clock skew.
FIND_SEND_BEFORE = timedelta(minutes=1)
FIND_SEND_AFTER = timedelta(seconds=REQUEST_TIMEOUT_SECONDS) + timedelta(minutes=1)

# Twilio error codes (https://www.twilio.com/docs/api/errors) that prove the number must not
# be messaged again on this channel, whether raised at send time or reported in a callback.
SUPPRESSING_ERROR_CODES = {
    21211: SuppressionReason.INVALID_ADDRESS,  # invalid 'To' phone number
    21610: SuppressionReason.STOP,  # the recipient replied STOP to this sender
    21614: SuppressionReason.INVALID_ADDRESS,  # 'To' is not a mobile number
    30005: SuppressionReason.INVALID_ADDRESS,  # unknown destination handset
    30006: SuppressionReason.INVALID_ADDRESS,  # landline or unreachable carrier
}
# Callback error codes that will not change on a later try, beyond the suppressing ones.
PERMANENT_FAILURE_CODES = frozenset(SUPPRESSING_ERROR_CODES) | {
    21408,  # sending to this region is not enabled on the account
    21612,  # Twilio cannot route to this number
    30004,  # message blocked by the recipient or carrier
    63016,  # WhatsApp: outside the 24h window and not a template
}
# Send-time codes worth another try; any other 4xx is about the request and fails again.
TRANSIENT_ERROR_CODES = frozenset({
    20429,  # too many requests
    20500,  # internal server error
    20503,  # service unavailable
    30001,  # queue overflow
})


class LocalTwilioHttpClient(TwilioHttpClient):
    """Sends every request to `base_url` instead of api.twilio.com (tests and local stacks).

    The twilio client only builds *.twilio.com names (edge and region too), so the scheme and
    host of each URL are rewritten here; path and query are kept.
    """

    def __init__(self, base_url: str, **kwargs):
        super().__init__(**kwargs)
        parts = urlsplit(base_url)
        self.scheme, self.netloc = parts.scheme, parts.netloc

    def request(self, method, url, *args, **kwargs):
        parts = urlsplit(url)
        url = urlunsplit((self.scheme, self.netloc, parts.path, parts.query, parts.fragment))
        return super().request(method, url, *args, **kwargs)


class TwilioProvider(Provider):
    name = "twilio"
    channels = frozenset({Channel.SMS, Channel.WHATSAPP, Channel.RCS})

    @cached_property
    def client(self) -> Client:
        if settings.TWILIO_API_BASE_URL:
            http_client = LocalTwilioHttpClient(settings.TWILIO_API_BASE_URL, timeout=REQUEST_TIMEOUT_SECONDS)
        else:
            http_client = TwilioHttpClient(timeout=REQUEST_TIMEOUT_SECONDS)
        return Client(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, http_client=http_client)

    def build_payload(self, delivery) -> dict:
        params = {"to": delivery.to_address, **sender_for(delivery.channel)}
        if delivery.channel == Channel.WHATSAPP:
            params["to"] = whatsapp_address(delivery.to_address)
        if uses_content_template(delivery):
            params["content_sid"] = delivery.content["provider_template_id"]
            if delivery.content.get("content_variables"):
                params["content_variables"] = json.dumps(delivery.content["content_variables"])
        elif delivery.text_body:
            params["body"] = delivery.text_body
        else:
            raise DeliveryError("Message has no text", code="empty_body", permanent=True)
        callback = status_callback_url(delivery)
        if callback:
            params["status_callback"] = callback
        return params

    def post(self, payload: dict):
        try:
            return self.client.messages.create(**payload)
        except TwilioRestException as exc:
            raise twilio_delivery_error(exc) from exc
        except TwilioException as exc:
            # Raised by the client itself before any request, e.g. missing credentials.
            raise DeliveryError(str(exc), code="not_configured", permanent=True) from exc
        except ReadTimeout as exc:
            # The request reached Twilio; it may have queued the message. The status callback
            # (which names the delivery) will tell.
            raise DeliveryOutcomeUnknown(f"No answer from Twilio: {exc}") from exc
        except (ConnectTimeout, RequestsConnectionError) as exc:
            if not never_reached_twilio(exc):
                # The connection dropped after the request went out ("Connection aborted"):
                # Twilio may have queued the message, so trying again could send it twice.
                raise DeliveryOutcomeUnknown(f"No answer from Twilio: {exc}") from exc
            raise DeliveryError(f"Twilio unreachable: {exc}", code=type(exc).__name__, permanent=False) from exc

    def fetch_status(self, delivery) -> str | None:
        if not delivery.provider_message_id:
            return None
        return fetch_status_of(self, delivery)

    def find_send(self, delivery) -> SendResult | None:
        """The message Twilio holds to this delivery's number, sent around its claim, with its
        text: found by number, time and body, since Twilio keeps no reference of ours on it."""
        if delivery.channel != Channel.SMS and delivery.content.get("provider_template_id"):
            # It may have gone as an approved content template, whose text Twilio fills in.
            raise CannotTell("a content template's text cannot be matched")
        if not delivery.text_body or delivery.claimed_at is None:
            raise CannotTell("nothing to match the message by")
        to = whatsapp_address(delivery.to_address) if delivery.channel == Channel.WHATSAPP else delivery.to_address
        try:
            listed = self.client.messages.list(to=to, date_sent_after=delivery.claimed_at - FIND_SEND_BEFORE,
                                               date_sent_before=delivery.claimed_at + FIND_SEND_AFTER, limit=200)
        except TwilioRestException as exc:
            raise twilio_delivery_error(exc) from exc
        except (ConnectTimeout, ReadTimeout, RequestsConnectionError) as exc:
            raise DeliveryError(f"Twilio unreachable: {exc}", code=type(exc).__name__) from exc
        matching = [m for m in listed if m.body == delivery.text_body and (m.direction or "").startswith("outbound")]
        # A message another delivery already owns (the same text sent to the same number twice) is not this one's.
        owned = set(Delivery.objects.filter(provider=self.name, provider_message_id__in=[m.sid for m in matching])
                    .values_list("provider_message_id", flat=True))
        matching = [m for m in matching if m.sid not in owned]
        if len(matching) != 1:
            return None
        found = self.parse_result(matching[0])
        found.status = delivery_status_of(matching[0].status) or found.status
        return found

    def answers_keywords(self, channel: str, sender: str) -> bool:
        """Twilio's opt-out handling replies to keywords on the channels TWILIO_OPT_OUT_HANDLING
        names (SMS by default: its default STOP filtering; WhatsApp only with Advanced Opt-Out in
        a Messaging Service), except on senders TWILIO_OPT_OUT_HANDLING_OFF_FOR lists.
        https://support.twilio.com/hc/en-us/articles/360034798533-Getting-Started-with-Advanced-Opt-Out-for-Messaging-Services"""
        off_for = {number.removeprefix("whatsapp:").strip() for number in settings.TWILIO_OPT_OUT_HANDLING_OFF_FOR}
        return channel in settings.TWILIO_OPT_OUT_HANDLING and sender.removeprefix("whatsapp:") not in off_for

    def parse_result(self, message) -> SendResult:
        cost, currency = None, ""
        if message.price:
            try:
                # Twilio reports what it charged as a negative amount.
                cost, currency = abs(Decimal(str(message.price))), (message.price_unit or "").upper()
            except InvalidOperation:
                pass
        return SendResult(
            provider_message_id=message.sid,
            segments=int(message.num_segments) if message.num_segments else None,
            cost=cost,
            currency=currency,
            raw={"sid": message.sid, "status": message.status, "num_segments": message.num_segments,
                 "error_code": message.error_code},
        )


def never_reached_twilio(exc: RequestsConnectionError) -> bool:
    """Whether a connection error happened before any request was sent: no connection could be
    made (refused, unknown host, connect timeout, TLS handshake). requests wraps urllib3's
    connect failures in a MaxRetryError whose reason says so."""
    if isinstance(exc, (ConnectTimeout, SSLError)):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


def fetch_status_of(provider: "TwilioProvider", delivery) -> str | None:
    """Ask Twilio for the message by SID and map its status to a delivery status."""
    try:
        message = provider.client.messages(delivery.provider_message_id).fetch()
    except TwilioRestException as exc:
        if exc.status == 404:
            return None
        raise twilio_delivery_error(exc) from exc
    except (ConnectTimeout, ReadTimeout, RequestsConnectionError) as exc:
        raise DeliveryError(f"Twilio unreachable: {exc}", code=type(exc).__name__) from exc
    return delivery_status_of(message.status)


def delivery_status_of(twilio_status: str) -> str | None:
    """The delivery status a Twilio message status means, or None when it says nothing."""
    event = TWILIO_STATUS_EVENTS.get(twilio_status)
    if event == EventType.QUEUED:
        # Twilio holds it (accepted, queued, sending): our send went through.
        return DeliveryStatus.SENT
    return EVENT_DELIVERY_STATUS.get(event)


def sender_for(channel: str) -> dict:
    """The from_ or messaging_service_sid parameter for a channel, from settings."""
    if channel == Channel.WHATSAPP and settings.TWILIO_WHATSAPP_FROM:
        return {"from_": whatsapp_address(settings.TWILIO_WHATSAPP_FROM)}
    # A Messaging Service picks the sender from its pool and handles opt-outs; RCS needs one
    # (it holds the RCS sender, and falls back to SMS where RCS is unavailable).
    if settings.TWILIO_MESSAGING_SERVICE_SID:
        return {"messaging_service_sid": settings.TWILIO_MESSAGING_SERVICE_SID}
    if channel == Channel.SMS and settings.TWILIO_FROM_NUMBER:
        return {"from_": settings.TWILIO_FROM_NUMBER}
    raise DeliveryError(f"No Twilio sender configured for {channel}", code="not_configured", permanent=True)


def whatsapp_address(number: str) -> str:
    return number if number.startswith("whatsapp:") else f"whatsapp:{number}"


def uses_content_template(delivery) -> bool:
    """WhatsApp and RCS send the approved template when there is one, except that WhatsApp
    sends the free-form text within the contact's 24-hour session."""
    if delivery.channel == Channel.SMS or not delivery.content.get("provider_template_id"):
        return False
    if delivery.channel == Channel.WHATSAPP and delivery.text_body:
        return not in_whatsapp_session(delivery.contact_id)
    return True


def status_callback_url(delivery) -> str:
    if not settings.OMNI_PUBLIC_URL:
        return ""
    query = urlencode({"delivery": delivery.pk})
    return f"{settings.OMNI_PUBLIC_URL}{reverse('webhooks:twilio-status')}?{query}"


def twilio_delivery_error(exc: TwilioRestException) -> DeliveryError:
    """The DeliveryError for a refusal from Twilio's API: 429, 5xx and a few codes retry."""
    status = exc.status or 0
    transient = exc.code in TRANSIENT_ERROR_CODES or status == 429 or status >= 500
    return DeliveryError(
        exc.msg or f"Twilio answered {status}",
        code=str(exc.code or status),
        permanent=not transient,
        suppression_reason="" if transient else SUPPRESSING_ERROR_CODES.get(exc.code, ""),
    )


# Twilio MessageStatus values. https://www.twilio.com/docs/messaging/api/message-resource#message-status-values
TWILIO_STATUS_EVENTS = {
    "accepted": EventType.QUEUED,
    "scheduled": EventType.QUEUED,
    "queued": EventType.QUEUED,
    "sending": EventType.QUEUED,
    "sent": EventType.SENT,
    "delivered": EventType.DELIVERED,
    "undelivered": EventType.UNDELIVERED,
    "failed": EventType.FAILED,
    "read": EventType.READ,
    # Only a message scheduled at Twilio can be canceled there; Omni schedules nothing at
    # Twilio, so for Omni it is a message that did not go out.
    "canceled": EventType.FAILED,
}


def twilio_event_type(status: str) -> str:
    return TWILIO_STATUS_EVENTS.get((status or "").lower(), EventType.UNKNOWN)
