"""The whole path of a message, through real parts and a real Celery worker.

An event posted to the HTTP API enrolls a contact; the beat tick, run by the worker, sends the
welcome email through SES (a moto server); SES's delivery notification arrives as a signed SNS
webhook; after the wait, the email was not opened, so the tick sends the SMS through Twilio (a
local server in Twilio's REST shape). Every decision is in the audit log.
"""
import json
import time

import pytest

from campaigns.models import Enrollment, EnrollmentState
from campaigns.tasks import tick_task
from channels.models import Delivery, DeliveryStatus
from channels.tasks import send_deliveries_task
from channels.tests.ses_events import ses_event
from omni.models import AuditEntry
from omni.models import ApiKey

from .conftest import build_welcome_journey

pytestmark = pytest.mark.celery_worker


@pytest.fixture
def short_welcome_journey(welcome_templates):
    return build_welcome_journey(*welcome_templates, wait_seconds=1)


def test_an_api_event_becomes_an_ses_email_then_a_twilio_sms(
    celery_worker, finished_tasks, client, short_welcome_journey, sesv2_client, twilio_settings, sns_signer,
    moto_server, twilio_server,
):
    # given an API key allowed to send events and contacts
    _, raw_key = ApiKey.generate("shop", ["events:write", "contacts:write"])
    headers = {"Authorization": f"Bearer {raw_key}", "Idempotency-Key": "signup-grace-1"}
    body = {
        "contact": {
            "external_id": "grace", "email": "grace@example.com", "phone": "+14155550107", "first_name": "Grace",
        },
        "name": "signed_up",
        "properties": {"plan": "trial"},
    }
    consents = {"consents": [{"channel": c, "purpose": "marketing", "status": "granted", "evidence": {"form": "signup"}}
                             for c in ("email", "sms")]}
    assert client.put("/api/v1/contacts/grace", json.dumps(consents), content_type="application/json",
                      headers=headers).status_code == 201

    # when the event is posted (twice: the retry stores nothing new) and the worker ticks
    for _ in range(2):
        response = client.post("/api/v1/events", json.dumps(body), content_type="application/json", headers=headers)
        assert response.status_code in (200, 202)
    tick_task.delay()
    finished_tasks.wait_for(send_deliveries_task, 1)

    # then the email reached SES, with the unsubscribe headers marketing email carries
    [email] = moto_server.sent_raw_emails()
    assert email["Subject"] == "Welcome, Grace!" and email["To"] == "grace@example.com"
    assert email["List-Unsubscribe"].startswith("<https://omni.example.com/u/unsubscribe/")
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    delivery = Delivery.objects.get(channel="email")
    assert delivery.status == DeliveryStatus.SENT and delivery.provider == "ses"

    # when SES reports the delivery through a signed SNS notification
    envelope = sns_signer.notification(ses_event("delivery", delivery.provider_message_id, "grace@example.com"))
    assert client.post("/webhooks/ses/", json.dumps(envelope), content_type="text/plain").status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED

    # and the wait passes without an open, the next tick sends the SMS through Twilio
    time.sleep(1.1)
    tick_task.delay()
    finished_tasks.wait_for(send_deliveries_task, 2)

    [sms] = twilio_server.messages
    assert (sms["To"], sms["Body"]) == ("+14155550107", "Hi Grace, did you see our email? Reply STOP to opt out.")
    enrollment = Enrollment.objects.get()
    assert (enrollment.state, enrollment.end_reason) == (EnrollmentState.EXITED, "exit:done")
    actions = list(AuditEntry.objects.filter(contact_id=enrollment.contact.pk).order_by("id").values_list("action", flat=True))
    for expected in ["contact.created", "consent.changed", "event.received", "journey.enrolled", "gate.allow",
                     "delivery.sent", "delivery.delivered", "journey.exited"]:
        assert expected in actions, (expected, actions)
    assert actions.count("delivery.sent") == 2
