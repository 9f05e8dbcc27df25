"""An approved WhatsApp content template sent outside the contact's 24-hour session goes to
Twilio with its numbered variables ({{1}}, {{2}}...), rendered for the contact from the
variant's provider variables, one line each; a line that cannot be rendered sends nothing."""
import json

import pytest

from channels.delivery import send_delivery
from channels.models import Delivery, DeliveryStatus, Message, MessageSource, MessageStatus
from templates.actions import publish_template
from templates.models import Template, TemplateVariant

CONTENT_SID = "HX0000000000000000000000000000042"


@pytest.fixture
def order_shipped(db):
    """A published transactional template whose WhatsApp variant is approved as CONTENT_SID,
    "Hi {{1}}, your order {{2}} shipped", {{1}} the first name and {{2}} the order id."""
    template = Template.objects.create(key="order-shipped-wa", name="Order shipped", purpose="transactional")
    TemplateVariant.objects.create(template=template, channel="whatsapp", locale="en",
                                   text_body="Hi {{ first_name }}, your order shipped.",
                                   provider_template_id=CONTENT_SID,
                                   provider_variables="{{ first_name }}\n{{ order_id }}\n")
    return publish_template(template)


@pytest.fixture
def whatsapp_delivery(contact, order_shipped):
    """A queued WhatsApp delivery of order_shipped to Alice, who never wrote to us (no session)."""

    def make(variables):
        message = Message.objects.create(contact=contact, purpose="transactional", template_version=order_shipped,
                                         source=MessageSource.API, channel_plan=[{"channel": "whatsapp"}],
                                         status=MessageStatus.QUEUED, variables=variables)
        return Delivery.objects.create(message=message, contact=contact, channel="whatsapp", provider="twilio",
                                       to_address=contact.phone)

    return make


def test_outside_the_session_the_approved_template_goes_with_its_variables_filled_for_the_contact(
    whatsapp_delivery, twilio_settings, twilio_server
):
    # given
    delivery = whatsapp_delivery({"order_id": "4411"})

    # when
    send_delivery(delivery.pk)

    # then
    [sent] = twilio_server.messages
    assert sent["ContentSid"] == CONTENT_SID
    assert json.loads(sent["ContentVariables"]) == {"1": "Alice", "2": "4411"}
    assert "Body" not in sent
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.content["content_variables"] == {"1": "Alice", "2": "4411"}


def test_a_variable_missing_from_a_line_fails_the_delivery_naming_it_and_sends_nothing(
    whatsapp_delivery, twilio_settings, twilio_server
):
    # given a message without the order id {{2}} is filled with
    delivery = whatsapp_delivery({})

    # when
    send_delivery(delivery.pk)

    # then
    assert twilio_server.messages == []
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code, delivery.error_permanent) == (
        DeliveryStatus.FAILED, "render_error", True)
    assert "order_id" in delivery.error_message and "{{2}}" in delivery.error_message
    message = Message.objects.get(pk=delivery.message_id)
    assert (message.status, message.status_reason) == (MessageStatus.FAILED, "render_error:provider_variables")


def test_a_line_that_renders_empty_fails_the_delivery_naming_its_number(
    whatsapp_delivery, twilio_settings, twilio_server
):
    # given an order id that is there but empty: Twilio refuses an empty variable
    delivery = whatsapp_delivery({"order_id": " "})

    # when
    send_delivery(delivery.pk)

    # then
    assert twilio_server.messages == []
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code) == (DeliveryStatus.FAILED, "render_error")
    assert "{{2}}" in delivery.error_message and "empty" in delivery.error_message
