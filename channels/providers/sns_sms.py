"""Amazon SNS for SMS: one Publish per message, straight to a phone number.

SNS reports SMS delivery only to CloudWatch Logs, not to a webhook, so a delivery sent here
stays "sent" unless a fallback timer moves the message on.
"""
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.utils.functional import cached_property

from channels.base import DeliveryError, Provider, SendResult
from compliance.models import SuppressionReason
from omni.choices import Channel, Purpose

from . import aws_client, aws_send_error


class SnsSmsProvider(Provider):
    name = "sns"
    channels = frozenset({Channel.SMS})

    @cached_property
    def client(self):
        return aws_client("sns")

    def build_payload(self, delivery) -> dict:
        if not delivery.text_body:
            raise DeliveryError("SMS has no text", code="empty_body", permanent=True)
        # Promotional messages are cheaper but carriers may drop or delay them; anything the
        # contact is waiting for goes as Transactional.
        sms_type = "Promotional" if delivery.message.purpose == Purpose.MARKETING else "Transactional"
        attributes = {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": sms_type}}
        if settings.SNS_SMS_SENDER_ID:
            attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": settings.SNS_SMS_SENDER_ID}
        if settings.SNS_SMS_ORIGINATION_NUMBER:
            attributes["AWS.MM.SMS.OriginationNumber"] = {
                "DataType": "String", "StringValue": settings.SNS_SMS_ORIGINATION_NUMBER,
            }
        return {"PhoneNumber": delivery.to_address, "Message": delivery.text_body, "MessageAttributes": attributes}

    def post(self, payload: dict) -> dict:
        try:
            return self.client.publish(**payload)
        except (ClientError, BotoCoreError) as exc:
            error = aws_send_error(exc)
            if getattr(error, "code", "") == "InvalidParameter" and "phone" in error.message.lower():
                error.suppression_reason = SuppressionReason.INVALID_ADDRESS
            raise error from exc

    def parse_result(self, response: dict) -> SendResult:
        return SendResult(provider_message_id=response["MessageId"], raw={"MessageId": response["MessageId"]})
