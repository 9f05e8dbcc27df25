import pytest
from twilio.request_validator import RequestValidator

from channels.delivery import retry_schedule, send_delivery
from channels.models import Delivery, DeliveryStatus, InboundMessage, MessageStatus
from channels.tasks import send_delivery_task
from compliance.models import Suppression, SuppressionReason


def test_an_sms_sent_through_twilio_reaches_the_api_with_a_status_callback_naming_the_delivery(
    make_delivery, twilio_settings, twilio_server
):
    # given
    delivery = make_delivery("sms", provider="twilio")

    # when
    send_delivery(delivery.pk)

    # then
    [sent] = twilio_server.messages
    assert sent["To"] == "+14155550100"
    assert sent["From"] == "+15005550006"
    assert sent["Body"] == "Your order shipped."
    assert sent["StatusCallback"] == f"https://omni.example.com/webhooks/twilio/status/?delivery={delivery.pk}"
    assert twilio_server.requests[0].path == "/2010-04-01/Accounts/AC00000000000000000000000000000001/Messages.json"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.provider_message_id.startswith("SM")
    assert delivery.segments == 1
    assert delivery.message.status == MessageStatus.SENT


def test_a_messaging_service_is_preferred_over_a_from_number(make_delivery, twilio_settings, twilio_server):
    twilio_settings.TWILIO_MESSAGING_SERVICE_SID = "MG00000000000000000000000000000001"
    delivery = make_delivery("sms", provider="twilio")

    send_delivery(delivery.pk)

    [sent] = twilio_server.messages
    assert sent["MessagingServiceSid"] == "MG00000000000000000000000000000001"
    assert "From" not in sent


def test_whatsapp_addresses_carry_the_whatsapp_prefix(make_delivery, twilio_settings, twilio_server):
    delivery = make_delivery("whatsapp", provider="twilio")

    send_delivery(delivery.pk)

    [sent] = twilio_server.messages
    assert sent["To"] == "whatsapp:+14155550100"
    assert sent["From"] == "whatsapp:+14155238886"


def test_whatsapp_outside_the_24_hour_session_sends_the_approved_template(
    make_delivery, twilio_settings, twilio_server, contact
):
    # given a template approved on WhatsApp (template_version's variant), and no message from the contact yet
    content = {"content_variables": {"1": "Alice"}}
    outside = make_delivery("whatsapp", provider="twilio", content=content)
    send_delivery(outside.pk)

    # when the contact writes to us, a free-form message may go
    InboundMessage.objects.create(contact=contact, channel="whatsapp", provider="twilio", provider_message_id="SMin1",
                                  from_address=contact.phone)
    inside = make_delivery("whatsapp", provider="twilio", content=content)
    send_delivery(inside.pk)

    # then
    first, second = twilio_server.messages
    assert first["ContentSid"] == "HX0000000000000000000000000000001"
    assert first["ContentVariables"] == '{"1": "Alice"}'
    assert "Body" not in first
    assert second["Body"] == "Your order shipped."
    assert "ContentSid" not in second


def test_an_invalid_number_fails_permanently_at_once_suppresses_it_and_never_retries(
    make_delivery, twilio_settings, twilio_server, eager_celery
):
    # given Twilio answers 400 with code 21211
    twilio_server.fail_next(400, code=21211, message="Invalid 'To' Phone Number")
    delivery = make_delivery("sms", provider="twilio")

    # when
    send_delivery_task.apply((delivery.pk,))

    # then
    assert len(twilio_server.messages) == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.error_code == "21211"
    assert delivery.error_permanent is True
    assert delivery.message.status == MessageStatus.FAILED
    suppression = Suppression.objects.get(address="+14155550100")
    assert (suppression.channel, suppression.reason) == ("sms", SuppressionReason.INVALID_ADDRESS)


@pytest.mark.parametrize("status, code", [(500, 20500), (503, None), (429, 20429)])
def test_server_errors_and_throttling_are_transient_and_requeue_the_delivery(
    make_delivery, twilio_settings, twilio_server, status, code
):
    twilio_server.fail_next(status, code=code, message="try later")
    delivery = make_delivery("sms", provider="twilio")

    send_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.QUEUED
    assert delivery.attempts == 1
    assert delivery.error_code == str(code or status)
    assert (delivery.error_permanent, delivery.published_at) == (False, None)
    assert delivery.next_attempt_at is not None


def test_a_retry_sends_once_the_error_clears(make_delivery, twilio_settings, twilio_server, settings):
    # given two failures, then Twilio accepts
    settings.OMNI_RETRY_FIRST_SECONDS = 0.001
    twilio_server.fail_next(500, code=20500, message="Internal error", times=2)
    delivery = make_delivery("sms", provider="twilio")

    # when each attempt runs once it is due
    for _ in range(3):
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
        send_delivery(delivery.pk)

    # then
    assert len(twilio_server.messages) == 3
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.attempts == 3
    assert delivery.error_code == ""


def test_after_the_last_retry_a_transient_error_fails_the_delivery_but_not_for_good(
    make_delivery, twilio_settings, twilio_server, settings
):
    settings.OMNI_RETRY_OUTAGE_SECONDS = 60
    twilio_server.fail_next(500, code=20500, message="Internal error", times=100)
    delivery = make_delivery("sms", provider="twilio")
    attempts = len(retry_schedule(delivery.pk))

    for _ in range(attempts + 2):
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
        send_delivery(delivery.pk)

    assert len(twilio_server.messages) == attempts
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.error_permanent is False
    assert delivery.attempts == attempts
    assert delivery.message.status == MessageStatus.FAILED


def test_an_unreachable_twilio_is_transient(make_delivery, twilio_settings, twilio_server):
    twilio_settings.TWILIO_API_BASE_URL = "http://127.0.0.1:9"  # discard port: connection refused
    delivery = make_delivery("sms", provider="twilio")

    send_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_permanent) == (DeliveryStatus.QUEUED, False)


def test_no_answer_from_twilio_leaves_the_delivery_uncertain_until_its_callback_settles_it(
    make_delivery, twilio_settings, twilio_server, monkeypatch, client
):
    # given Twilio accepts the message but answers after the client gave up waiting
    monkeypatch.setattr("channels.providers.twilio.REQUEST_TIMEOUT_SECONDS", 0.2)
    twilio_server.delay_next(0.6)
    delivery = make_delivery("sms", provider="twilio")

    # when
    result = send_delivery(delivery.pk)

    # then it is neither failed nor retried (a retry could send it twice)
    assert result is not None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.UNCERTAIN, 1)

    # and Twilio's status callback, which names the delivery, settles it
    params = {"MessageSid": "SMlate", "MessageStatus": "sent", "To": "+14155550100"}
    url = twilio_server.messages[0]["StatusCallback"]
    signature = RequestValidator(twilio_settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)
    client.post(url.removeprefix(twilio_settings.OMNI_PUBLIC_URL), data=params,
                headers={"X-Twilio-Signature": signature})
    delivery.refresh_from_db()
    assert (delivery.status, delivery.provider_message_id) == (DeliveryStatus.SENT, "SMlate")
