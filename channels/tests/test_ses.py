import socket

import pytest

from channels.delivery import render, send_delivery
from channels.models import DeliveryStatus, MessageStatus
from channels.providers.ses import SesProvider
from omni.models import AuditEntry


def test_an_email_sent_through_ses_reaches_the_api_and_is_recorded_as_sent(make_delivery, sesv2_client, moto_server):
    # given
    delivery = make_delivery("email", provider="ses")

    # when
    send_delivery(delivery.pk)

    # then
    sent = moto_server.sent_emails()
    assert len(sent) == 1
    assert sent[0]["source"] == "omni@example.com"
    assert sent[0]["destinations"]["ToAddresses"] == ["alice@example.com"]
    assert sent[0]["subject"] == "Your order shipped"
    assert sent[0]["body"] == "<p>Your order shipped.</p>"  # moto keeps only the HTML part
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.provider_message_id == sent[0]["id"]
    assert delivery.attempts == 1
    assert delivery.sent_at is not None
    assert delivery.message.status == MessageStatus.SENT
    assert AuditEntry.objects.filter(action="delivery.sent", object_id=str(delivery.pk)).count() == 1


def test_marketing_email_carries_omni_tags_its_configuration_set_and_the_headers_it_is_given(
    make_delivery, sesv2_client, moto_server, settings, marketing_consent
):
    # given a delivery carrying headers (the adapter forwards them; which headers marketing email
    # needs is decided before the adapter: channels/tests/test_unsubscribe_headers.py)
    settings.SES_CONFIGURATION_SET_MARKETING = "omni-marketing"
    settings.SES_CONFIGURATION_SET_TRANSACTIONAL = "omni-transactional"
    headers = {"X-Omni-Test": "kept as written"}
    delivery = make_delivery("email", provider="ses", purpose="marketing", content={"plan_step": 0, "headers": headers})

    # when
    render(delivery)
    payload = SesProvider().build_payload(delivery)
    send_delivery(delivery.pk)

    # then
    assert payload["ConfigurationSetName"] == "omni-marketing"
    assert {"Name": "omni_delivery", "Value": str(delivery.pk)} in payload["EmailTags"]
    assert {"Name": "omni_message", "Value": str(delivery.message_id)} in payload["EmailTags"]
    # botocore accepted the shape (Raw, EmailTags) and moto took the message with its headers
    [sent] = moto_server.sent_raw_emails()
    assert sent["X-Omni-Test"] == "kept as written"
    assert sent["Subject"] == "Your order shipped"
    assert sent["To"] == "alice@example.com"
    assert [part.get_content_type() for part in sent.iter_parts()] == ["text/plain", "text/html"]
    assert sent.get_body(("html",)).get_content().strip() == "<p>Your order shipped.</p>"


def test_transactional_email_uses_the_transactional_configuration_set_and_none_when_unset(make_delivery, aws_settings):
    delivery = make_delivery("email", provider="ses")
    render(delivery)

    aws_settings.SES_CONFIGURATION_SET_TRANSACTIONAL = "omni-transactional"
    assert SesProvider().build_payload(delivery)["ConfigurationSetName"] == "omni-transactional"

    aws_settings.SES_CONFIGURATION_SET_TRANSACTIONAL = ""
    assert "ConfigurationSetName" not in SesProvider().build_payload(delivery)


def test_a_rejected_email_fails_permanently_without_retry_and_the_message_fails(make_delivery, aws_settings,
                                                                               moto_server):
    # given no verified sending identity: SES answers MessageRejected
    delivery = make_delivery("email", provider="ses")

    # when
    result = send_delivery(delivery.pk)

    # then nothing is raised for Celery to retry
    assert result is not None
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.error_code == "MessageRejected"
    assert delivery.error_permanent is True
    assert delivery.attempts == 1
    assert delivery.message.status == MessageStatus.FAILED
    assert AuditEntry.objects.filter(action="delivery.failed", object_id=str(delivery.pk)).exists()


def test_an_unreachable_ses_endpoint_is_transient_and_puts_the_delivery_back_in_the_queue(make_delivery, aws_settings):
    # given an endpoint where nothing listens
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    aws_settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{port}"
    delivery = make_delivery("email", provider="ses")

    # when
    send_delivery(delivery.pk)

    # then
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_permanent) == (DeliveryStatus.QUEUED, False)
    assert delivery.next_attempt_at is not None
    assert delivery.attempts == 1
    assert delivery.error_code == "EndpointConnectionError"
    assert AuditEntry.objects.filter(action="delivery.retrying", object_id=str(delivery.pk)).exists()
