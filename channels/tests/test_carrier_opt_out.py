"""Twilio 21610 (the recipient replied STOP to the sender) is an opt-out as well as a suppression:
a CARRIER consent change, whether Twilio refuses the send or reports it in a callback. A hard
bounce stays a suppression only (reachability, not consent)."""
import json

from twilio.request_validator import RequestValidator

from channels.delivery import send_delivery
from channels.models import DeliveryStatus, MessageStatus
from channels.tests.ses_events import ses_event
from compliance.actions import record_consent_change
from compliance.models import Consent, ConsentChange, Suppression


def test_a_send_twilio_refuses_with_21610_records_a_carrier_opt_out(
    make_delivery, contact, twilio_settings, twilio_server
):
    # given Alice opted in to SMS marketing, and Twilio answers 21610
    record_consent_change(contact, "sms", "marketing", "granted", "import")
    twilio_server.fail_next(400, code=21610, message="Attempt to send to unsubscribed recipient")
    delivery = make_delivery("sms", provider="twilio", purpose="marketing")

    # when
    send_delivery(delivery.pk)

    # then the number is suppressed and SMS consent revoked by the carrier, transactional aside
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code) == (DeliveryStatus.FAILED, "21610")
    assert Suppression.objects.get(address="+14155550100").reason == "stop"
    changes = ConsentChange.objects.filter(source="carrier")
    assert sorted(changes.values_list("channel", "purpose", "status")) == [
        ("sms", "informational", "revoked"), ("sms", "marketing", "revoked")]
    assert changes.get(purpose="marketing").evidence == {
        "provider": "twilio", "delivery": delivery.pk, "error_code": "21610",
        "previous_status": "granted", "previous_lawful_basis": ""}
    assert Consent.objects.get(contact=contact, channel="sms", purpose="marketing").status == "revoked"


def test_a_status_callback_with_21610_records_a_carrier_opt_out_once(client, make_delivery, contact, twilio_settings):
    delivery = make_delivery("sms", provider="twilio", status=DeliveryStatus.SENT, provider_message_id="SM9",
                             message_status=MessageStatus.SENT)
    params = {"MessageSid": "SM9", "MessageStatus": "failed", "ErrorCode": "21610",
              "AccountSid": "AC00000000000000000000000000000001", "From": "+15005550006", "To": "+14155550100"}
    url = f"{twilio_settings.OMNI_PUBLIC_URL}/webhooks/twilio/status/"
    signature = RequestValidator(twilio_settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)

    for _ in range(2):
        assert client.post("/webhooks/twilio/status/", data=params,
                           headers={"X-Twilio-Signature": signature}).status_code == 204

    assert sorted(ConsentChange.objects.values_list("source", "channel", "purpose")) == [
        ("carrier", "sms", "informational"), ("carrier", "sms", "marketing")]
    assert ConsentChange.objects.get(purpose="marketing").evidence["delivery"] == delivery.pk


def test_a_hard_bounce_suppresses_the_address_but_changes_no_consent(client, sns_signer, make_delivery, contact):
    make_delivery("email", provider="ses", status=DeliveryStatus.SENT, provider_message_id="ses-msg-1",
                  message_status=MessageStatus.SENT)

    client.post("/webhooks/ses/", data=json.dumps(sns_signer.notification(ses_event("bounce", "ses-msg-1"))),
                content_type="text/plain")

    assert Suppression.objects.get(address="alice@example.com").reason == "hard_bounce"
    assert not ConsentChange.objects.exists()
