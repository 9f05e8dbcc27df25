"""Customers writing in through Twilio's inbound webhook, signed as Twilio signs it (for the
conversation and blocked-sender tests)."""
from twilio.request_validator import RequestValidator

from channels.models import InboundMessage

INBOUND_PATH = "/webhooks/twilio/inbound/"
OUR_NUMBER = "+15005550006"
ALICE = "+14155550100"


def post_inbound(client, settings, body: str, *, sid: str, sender: str = ALICE, channel: str = "sms"):
    """POST one signed inbound message (WhatsApp senders get Twilio's "whatsapp:" prefix) and
    return the response."""
    prefix = "whatsapp:" if channel == "whatsapp" else ""
    params = {"MessageSid": sid, "SmsMessageSid": sid, "AccountSid": "AC00000000000000000000000000000001",
              "From": f"{prefix}{sender}", "To": f"{prefix}{OUR_NUMBER}", "Body": body, "NumMedia": "0"}
    url = f"{settings.OMNI_PUBLIC_URL}{INBOUND_PATH}"
    signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)
    return client.post(INBOUND_PATH, data=params, headers={"X-Twilio-Signature": signature})


def writer(client, settings):
    """write_in("Hello", sid="SM1") posts a signed inbound message, checks Twilio got its 200, and
    returns the stored InboundMessage."""

    def write_in(body: str, *, sid: str, sender: str = ALICE, channel: str = "sms") -> InboundMessage:
        response = post_inbound(client, settings, body, sid=sid, sender=sender, channel=channel)
        assert response.status_code == 200, response.content
        return InboundMessage.objects.select_related("contact", "conversation").get(provider_message_id=sid)

    return write_in
