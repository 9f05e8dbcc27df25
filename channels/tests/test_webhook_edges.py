"""Edges of the providers' webhooks and of outbound webhook URLs: what a caller that is not the
provider (or a mistyped URL) must get back as a clear refusal, never as a 500 or a crash."""
import pytest
from django.core.exceptions import ValidationError
from twilio.request_validator import RequestValidator

from channels.models import DeliveryEvent, InboundMessage
from omni.lib.webhooks import call
from omni.models import WebhookCall, WebhookEndpoint, WebhookOutcome

STATUS_PATH = "/webhooks/twilio/status/"
INBOUND_PATH = "/webhooks/twilio/inbound/"


def signed_form(settings, path, params):
    url = f"{settings.OMNI_PUBLIC_URL}{path}"
    return RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)


@pytest.mark.parametrize("path", [STATUS_PATH, INBOUND_PATH])
def test_a_form_with_more_fields_than_django_reads_is_a_bad_request_not_a_500(client, twilio_settings, db, path):
    # given a signed form past DATA_UPLOAD_MAX_NUMBER_FIELDS (1,000), small enough for the body limit
    params = {"MessageSid": "SM1", "MessageStatus": "delivered", "From": "+14155550100",
              **{f"p{index}": "" for index in range(1200)}}

    response = client.post(path, data=params, headers={"X-Twilio-Signature": signed_form(twilio_settings, path, params)})

    assert response.status_code == 400
    assert not DeliveryEvent.objects.exists()
    assert not InboundMessage.objects.exists()


@pytest.mark.parametrize("content_type", [
    "multipart/form-data",
    "multipart/form-data; boundary=",
    # Django reads a form only in UTF-8 (it raises BadRequest for any other charset).
    "application/x-www-form-urlencoded; charset=iso-8859-1",
    "application/x-www-form-urlencoded; charset=rot13",
])
@pytest.mark.parametrize("path", [STATUS_PATH, INBOUND_PATH])
def test_a_form_django_cannot_read_is_a_bad_request_not_a_500(client, twilio_settings, db, path, content_type):
    response = client.generic("POST", path, b"MessageSid=SM1&MessageStatus=delivered", content_type=content_type,
                              headers={"X-Twilio-Signature": "c2lnbmF0dXJl"})

    assert response.status_code == 400
    assert not DeliveryEvent.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["https://example.com:99999/hook", "https://example.com:65536/"])
def test_a_webhook_url_with_a_port_out_of_range_is_refused_when_saved(url):
    with pytest.raises(ValidationError) as refusal:
        WebhookEndpoint(name="Typo", url=url).full_clean()

    assert "url" in refusal.value.message_dict


@pytest.mark.django_db
def test_calling_a_webhook_url_with_a_port_out_of_range_fails_for_good_and_is_logged(settings):
    # given an endpoint saved before URLs were checked for it (the admin accepted it)
    settings.DEBUG = False
    settings.OMNI_WEBHOOKS_ALLOW_PRIVATE = False
    endpoint = WebhookEndpoint.objects.create(name="Typo", url="https://example.com:99999/hook")

    answer = call(endpoint, {}, idempotency_key="visit-1", attempt=1)

    assert (answer.ok, answer.retryable, answer.status) == (False, False, None)
    assert "port" in answer.error
    assert WebhookCall.objects.get().outcome == WebhookOutcome.PERMANENT

