from channels.delivery import render, send_delivery
from channels.models import DeliveryStatus
from channels.providers.sns_sms import SnsSmsProvider
from compliance.models import Suppression, SuppressionReason


def test_an_sms_published_through_sns_reaches_the_api_and_is_recorded_as_sent(make_delivery, aws_settings, moto_server):
    # given
    delivery = make_delivery("sms", provider="sns")

    # when
    send_delivery(delivery.pk)

    # then
    data = moto_server.data()["sns"]["SMS"]
    assert len(data) == 1
    [sms] = data
    assert (sms["phone_number"], sms["message"]) == ("+14155550100", "Your order shipped.")
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.provider_message_id == sms["message_id"]


def test_marketing_sms_is_promotional_and_carries_the_sender_id(make_delivery, aws_settings, marketing_consent):
    aws_settings.SNS_SMS_SENDER_ID = "OMNI"
    aws_settings.SNS_SMS_ORIGINATION_NUMBER = ""
    marketing = make_delivery("sms", provider="sns", purpose="marketing")
    transactional = make_delivery("sms", provider="sns", purpose="transactional")
    render(marketing)
    render(transactional)

    marketing_payload = SnsSmsProvider().build_payload(marketing)
    transactional_payload = SnsSmsProvider().build_payload(transactional)

    attributes = marketing_payload["MessageAttributes"]
    assert attributes["AWS.SNS.SMS.SMSType"]["StringValue"] == "Promotional"
    assert attributes["AWS.SNS.SMS.SenderID"]["StringValue"] == "OMNI"
    assert "AWS.MM.SMS.OriginationNumber" not in attributes
    assert transactional_payload["MessageAttributes"]["AWS.SNS.SMS.SMSType"]["StringValue"] == "Transactional"


def test_a_number_sns_refuses_fails_permanently_and_is_suppressed(make_delivery, aws_settings, moto_server):
    delivery = make_delivery("sms", provider="sns", to_address="0044 not a number")

    send_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.error_code == "InvalidParameter"
    assert delivery.error_permanent is True
    assert Suppression.objects.get(address="0044 not a number").reason == SuppressionReason.INVALID_ADDRESS
    assert moto_server.sent_sms() == []
