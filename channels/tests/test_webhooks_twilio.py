from datetime import timedelta

import pytest
from twilio.request_validator import RequestValidator

from channels.models import DeliveryEvent, DeliveryStatus, EventType, InboundMessage, MessageStatus
from omni.models import AuditEntry
from compliance.models import Suppression

STATUS_PATH = "/webhooks/twilio/status/"
INBOUND_PATH = "/webhooks/twilio/inbound/"


@pytest.fixture
def twilio_post(client, twilio_settings):
    """POST form parameters to a Twilio webhook, signed as Twilio signs them (over the public URL)."""

    def post(path, params, *, token=None, query=""):
        full_path = f"{path}?{query}" if query else path
        url = f"{twilio_settings.OMNI_PUBLIC_URL}{full_path}"
        signature = RequestValidator(token or twilio_settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)
        return client.post(full_path, data=params, headers={"X-Twilio-Signature": signature})

    return post


@pytest.fixture
def sms_delivery(make_delivery, twilio_settings, now):
    return make_delivery("sms", provider="twilio", status=DeliveryStatus.SENT, provider_message_id="SM1",
                         message_status=MessageStatus.SENT, sent_at=now)


def status_params(status, sid="SM1", **extra):
    return {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
            "AccountSid": "AC00000000000000000000000000000001", "From": "+15005550006", "To": "+14155550100",
            "ApiVersion": "2010-04-01", **extra}


def test_a_signed_status_callback_marks_the_sms_delivered(twilio_post, sms_delivery):
    response = twilio_post(STATUS_PATH, status_params("delivered"), query=f"delivery={sms_delivery.pk}")

    assert response.status_code == 204
    sms_delivery.refresh_from_db()
    assert sms_delivery.status == DeliveryStatus.DELIVERED
    assert sms_delivery.message.status == MessageStatus.DELIVERED
    event = DeliveryEvent.objects.get()
    assert (event.provider_event_id, event.event_type, event.delivery) == ("SM1:delivered", EventType.DELIVERED,
                                                                         sms_delivery)


def test_a_callback_with_a_wrong_signature_is_refused_and_nothing_stored(twilio_post, sms_delivery):
    response = twilio_post(STATUS_PATH, status_params("delivered"), token="not-our-token")

    assert response.status_code == 403
    assert not DeliveryEvent.objects.exists()


def test_an_unsigned_callback_is_refused(client, twilio_settings, sms_delivery):
    response = client.post(STATUS_PATH, data=status_params("delivered"))

    assert response.status_code == 403
    assert not DeliveryEvent.objects.exists()


def test_without_an_auth_token_every_callback_is_refused(twilio_post, twilio_settings, sms_delivery):
    signed = twilio_settings.TWILIO_AUTH_TOKEN
    twilio_settings.TWILIO_AUTH_TOKEN = ""

    response = twilio_post(STATUS_PATH, status_params("delivered"), token=signed)

    assert response.status_code == 403


def test_a_signature_over_a_changed_parameter_is_refused(client, twilio_settings, sms_delivery):
    url = f"{twilio_settings.OMNI_PUBLIC_URL}{STATUS_PATH}"
    signature = RequestValidator(twilio_settings.TWILIO_AUTH_TOKEN).compute_signature(url, status_params("sent"))

    response = client.post(STATUS_PATH, data=status_params("failed"), headers={"X-Twilio-Signature": signature})

    assert response.status_code == 403


def test_a_repeated_callback_is_counted_once(twilio_post, sms_delivery):
    twilio_post(STATUS_PATH, status_params("delivered"))
    twilio_post(STATUS_PATH, status_params("delivered"))

    assert DeliveryEvent.objects.count() == 1
    assert AuditEntry.objects.filter(action="delivery.delivered").count() == 1


def test_a_sent_callback_after_delivered_leaves_it_delivered(twilio_post, sms_delivery):
    twilio_post(STATUS_PATH, status_params("delivered"))
    twilio_post(STATUS_PATH, status_params("sent"))

    sms_delivery.refresh_from_db()
    assert sms_delivery.status == DeliveryStatus.DELIVERED
    assert DeliveryEvent.objects.count() == 2


def test_an_undelivered_sms_to_an_unknown_handset_suppresses_the_number_and_falls_back(
    twilio_post, make_delivery, twilio_settings, tick
):
    # given SMS first, then email
    delivery = make_delivery("sms", provider="twilio", status=DeliveryStatus.SENT, provider_message_id="SM2",
                             message_status=MessageStatus.SENT, plan=[{"channel": "sms"}, {"channel": "email"}])

    # when
    twilio_post(STATUS_PATH, status_params("undelivered", sid="SM2", ErrorCode="30005"))

    # then
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.UNDELIVERED
    assert delivery.error_permanent is True
    suppression = Suppression.objects.get(address="+14155550100")
    assert (suppression.channel, suppression.reason) == ("sms", "invalid_address")
    tick()
    assert delivery.message.deliveries.filter(channel="email", status=DeliveryStatus.QUEUED).exists()


def test_an_unreachable_handset_fails_the_sms_without_suppressing(twilio_post, sms_delivery):
    twilio_post(STATUS_PATH, status_params("undelivered", ErrorCode="30003"))

    sms_delivery.refresh_from_db()
    assert sms_delivery.status == DeliveryStatus.UNDELIVERED
    assert sms_delivery.error_permanent is False
    assert not Suppression.objects.exists()


def test_a_callback_for_an_unknown_message_is_kept_and_answered(twilio_post, db):
    response = twilio_post(STATUS_PATH, status_params("delivered", sid="SMunknown"))

    assert response.status_code == 204
    assert DeliveryEvent.objects.get().delivery is None


def test_a_whatsapp_read_receipt_is_engagement(twilio_post, make_delivery):
    delivery = make_delivery("whatsapp", provider="twilio", status=DeliveryStatus.DELIVERED, provider_message_id="SM3",
                             message_status=MessageStatus.DELIVERED)

    twilio_post(STATUS_PATH, status_params("read", sid="SM3", To="whatsapp:+14155550100"))

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.READ
    assert delivery.message.status == MessageStatus.ENGAGED


def test_an_oversized_callback_is_refused(twilio_post, twilio_settings, sms_delivery):
    twilio_settings.OMNI_MAX_BODY_BYTES = 256

    response = twilio_post(STATUS_PATH, status_params("delivered", Body="x" * 512))

    assert response.status_code == 413
    assert not DeliveryEvent.objects.exists()


def inbound_params(body="Yes please", sid="SMin1", sender="+14155550100", **extra):
    return {"MessageSid": sid, "SmsMessageSid": sid, "AccountSid": "AC00000000000000000000000000000001",
            "From": sender, "To": "+15005550006", "Body": body, "NumMedia": "0", **extra}


def test_an_inbound_sms_is_stored_linked_to_its_contact_and_the_message_it_answers(twilio_post, sms_delivery,
                                                                                    contact, tick):
    # when
    response = twilio_post(INBOUND_PATH, inbound_params())

    # then
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert response.content.decode().endswith("<Response/>")
    inbound = InboundMessage.objects.get()
    assert (inbound.channel, inbound.from_address, inbound.body) == ("sms", "+14155550100", "Yes please")
    assert inbound.contact == contact
    assert inbound.in_reply_to == sms_delivery
    assert AuditEntry.objects.filter(action="inbound.received", contact_id=contact.pk).exists()
    tick()  # marks the delivery replied, out of the webhook
    sms_delivery.refresh_from_db()
    assert sms_delivery.status == DeliveryStatus.REPLIED
    assert sms_delivery.message.status == MessageStatus.ENGAGED


def test_a_repeated_inbound_message_is_stored_once(twilio_post, contact):
    twilio_post(INBOUND_PATH, inbound_params())
    twilio_post(INBOUND_PATH, inbound_params())

    assert InboundMessage.objects.count() == 1
    assert AuditEntry.objects.filter(action="inbound.received").count() == 1


def test_an_inbound_whatsapp_message_with_media_keeps_channel_and_media(twilio_post, contact):
    twilio_post(INBOUND_PATH, inbound_params(sender="whatsapp:+14155550100", NumMedia="1",
                                             MediaUrl0="https://api.twilio.com/media/ME1",
                                             MediaContentType0="image/jpeg"))

    inbound = InboundMessage.objects.get()
    assert (inbound.channel, inbound.from_address, inbound.contact) == ("whatsapp", "+14155550100", contact)
    assert inbound.media == [{"url": "https://api.twilio.com/media/ME1", "content_type": "image/jpeg"}]


def test_an_inbound_message_from_a_stranger_gets_a_contact_marked_unknown_sender(twilio_post, db):
    twilio_post(INBOUND_PATH, inbound_params(sender="+14155550199"))

    inbound = InboundMessage.objects.select_related("contact").get()
    assert (inbound.contact.phone, inbound.contact.unknown_sender, inbound.in_reply_to) == ("+14155550199", True, None)


def test_an_unsigned_inbound_message_is_refused(client, twilio_settings, db):
    response = client.post(INBOUND_PATH, data=inbound_params())

    assert response.status_code == 403
    assert not InboundMessage.objects.exists()


def test_a_reply_is_never_linked_to_a_delivery_that_failed(twilio_post, make_delivery, contact, now, tick):
    # given an SMS that went out and arrived, then a later one that went out and failed
    delivered = make_delivery("sms", provider="twilio", status=DeliveryStatus.DELIVERED, provider_message_id="SM5",
                              message_status=MessageStatus.DELIVERED, sent_at=now - timedelta(hours=1))
    failed = make_delivery("sms", provider="twilio", status=DeliveryStatus.UNDELIVERED, provider_message_id="SM6",
                           message_status=MessageStatus.FAILED, sent_at=now)

    # when the contact writes in
    twilio_post(INBOUND_PATH, inbound_params())

    # then the reply answers the SMS that arrived, and the failed one stays failed
    assert InboundMessage.objects.get().in_reply_to == delivered
    tick()
    failed.refresh_from_db()
    delivered.refresh_from_db()
    assert (failed.status, delivered.status) == (DeliveryStatus.UNDELIVERED, DeliveryStatus.REPLIED)


@pytest.mark.parametrize("status", [DeliveryStatus.FAILED, DeliveryStatus.BOUNCED, DeliveryStatus.UNDELIVERED])
def test_a_reply_after_only_failed_deliveries_answers_none(twilio_post, make_delivery, contact, now, status,
                                                          tick):
    failed = make_delivery("sms", provider="twilio", status=status, provider_message_id="SM6",
                           message_status=MessageStatus.FAILED, sent_at=now)

    twilio_post(INBOUND_PATH, inbound_params())
    tick()

    assert InboundMessage.objects.get().in_reply_to is None
    failed.refresh_from_db()
    assert failed.status == status
    assert not DeliveryEvent.objects.filter(event_type=EventType.REPLIED).exists()


def post_signed(client, settings, path, params, *, secret, algorithm, settings_header=True):
    url = f"{settings.OMNI_PUBLIC_URL}{path}"
    signature = RequestValidator(secret).compute_signature(url, params, algorithm)
    headers = {"X-Twilio-Signature": signature}
    if settings_header:
        headers["X-Twilio-Webhooks-Signature-Settings"] = f"key=webhooks_sharedkey_1,algorithm={algorithm}"
    return client.post(path, data=params, headers=headers)


@pytest.mark.parametrize("algorithm", ["HMAC_SHA1", "HMAC_SHA256"])
def test_a_callback_signed_with_the_webhook_shared_key_is_accepted(client, twilio_settings, sms_delivery, algorithm):
    # given a webhook signing key (SharedKey) set up at Twilio and in Omni
    twilio_settings.TWILIO_WEBHOOK_SIGNING_SECRET = "shared-key-secret"

    response = post_signed(client, twilio_settings, STATUS_PATH, status_params("delivered"),
                           secret="shared-key-secret", algorithm=algorithm)

    assert response.status_code == 204
    sms_delivery.refresh_from_db()
    assert sms_delivery.status == DeliveryStatus.DELIVERED


def test_an_hmac_sha256_signature_with_the_auth_token_is_accepted(client, twilio_settings, sms_delivery):
    response = post_signed(client, twilio_settings, INBOUND_PATH, inbound_params(),
                           secret=twilio_settings.TWILIO_AUTH_TOKEN, algorithm="HMAC_SHA256")

    assert response.status_code == 200
    assert InboundMessage.objects.count() == 1


@pytest.mark.parametrize("forgery", [
    {"secret": "not-our-secret", "algorithm": "HMAC_SHA256"},
    # an HMAC-SHA256 signature presented as the legacy SHA1 one
    {"secret": "shared-key-secret", "algorithm": "HMAC_SHA256", "settings_header": False},
])
def test_a_forged_hmac_sha256_signature_is_refused(client, twilio_settings, sms_delivery, forgery):
    twilio_settings.TWILIO_WEBHOOK_SIGNING_SECRET = "shared-key-secret"

    response = post_signed(client, twilio_settings, STATUS_PATH, status_params("delivered"), **forgery)

    assert response.status_code == 403
    assert not DeliveryEvent.objects.exists()


def test_a_signature_over_the_url_with_its_default_port_is_accepted(client, twilio_settings, sms_delivery):
    # Twilio has signed some requests over the URL with its port written out (https://host:443/...)
    scheme, host = twilio_settings.OMNI_PUBLIC_URL.split("://")
    port = 443 if scheme == "https" else 80
    url = f"{scheme}://{host}:{port}{STATUS_PATH}"
    signature = RequestValidator(twilio_settings.TWILIO_AUTH_TOKEN).compute_signature(url, status_params("delivered"))

    response = client.post(STATUS_PATH, data=status_params("delivered"), headers={"X-Twilio-Signature": signature})

    assert response.status_code == 204
    sms_delivery.refresh_from_db()
    assert sms_delivery.status == DeliveryStatus.DELIVERED


def test_an_unsupported_signature_algorithm_is_refused(client, twilio_settings, sms_delivery):
    url = f"{twilio_settings.OMNI_PUBLIC_URL}{STATUS_PATH}"
    signature = RequestValidator(twilio_settings.TWILIO_AUTH_TOKEN).compute_signature(url, status_params("sent"))

    response = client.post(STATUS_PATH, data=status_params("sent"), headers={
        "X-Twilio-Signature": signature, "X-Twilio-Webhooks-Signature-Settings": "key=k,algorithm=HMAC_MD5"})

    assert response.status_code == 403


@pytest.mark.parametrize("params", [
    inbound_params(body="Stop\x00please"),
    # (a lone surrogate cannot arrive form-encoded: Django decodes bad UTF-8 as U+FFFD)
    inbound_params(sid="SM\x00in"),
    inbound_params(sender="+1415555\x000100"),
    inbound_params(NumMedia="2", MediaUrl0="https://api.twilio.com/\x00", MediaContentType0="image/\x00"),
    inbound_params(**{"Extra\x00Param": "x\x00"}),
])
def test_an_inbound_message_with_unstorable_characters_is_kept_not_a_500(twilio_post, contact, params):
    response = twilio_post(INBOUND_PATH, params)

    assert response.status_code == 200
    assert "\x00" not in InboundMessage.objects.get().body


@pytest.mark.parametrize("params", [
    status_params("delivered\x00"),
    status_params("delivered", sid="SM\x001"),
    status_params("delivered", To="+1415\x00", ErrorCode="\x00"),
])
def test_a_status_callback_with_unstorable_characters_never_answers_500(twilio_post, sms_delivery, params):
    response = twilio_post(STATUS_PATH, params)

    assert response.status_code in (204, 400)


@pytest.mark.parametrize("params, field", [
    (inbound_params(sid="SM" + "1" * 300), "MessageSid"),
    (inbound_params(sender="+1" * 300), "From"),
])
def test_an_inbound_message_with_an_overlong_id_or_address_is_refused_naming_it(twilio_post, db, params, field):
    response = twilio_post(INBOUND_PATH, params)

    assert response.status_code == 400
    assert field in response.content.decode()
    assert not InboundMessage.objects.exists()


def test_an_inbound_message_claiming_more_media_than_twilio_sends_keeps_twilios_ten(twilio_post, contact):
    # Twilio sends at most 10 media items a message; NumMedia is whatever the signed request says.
    media = {f"MediaUrl{i}": f"https://api.twilio.com/media/ME{i}" for i in range(12)}

    response = twilio_post(INBOUND_PATH, inbound_params(NumMedia="100000", **media))

    assert response.status_code == 200
    inbound = InboundMessage.objects.get()
    assert [item["url"] for item in inbound.media] == [f"https://api.twilio.com/media/ME{i}" for i in range(10)]
