"""A signed Twilio STOP, posted twice, through to a real Celery worker: exactly one confirmation
where Omni confirms (the sandbox; a Twilio sender whose own opt-out handling is off), none where
Twilio confirms."""
import pytest
from twilio.request_validator import RequestValidator

from channels.models import Delivery, Message, MessageSource, OutboxMessage
from channels.tasks import send_deliveries_task
from compliance.actions import record_consent_change
from compliance.models import Consent, KeywordList
from contacts.models import Contact
from omni.tests.fakes import purge_queues

pytestmark = pytest.mark.celery_worker

HANDLED_SENDER = "+15005550006"
UNHANDLED_SENDER = "+15005550007"


@pytest.fixture
def text_in(client, twilio_settings):
    def send(body, *, sid, sender, to):
        params = {"MessageSid": sid, "SmsMessageSid": sid, "AccountSid": "AC00000000000000000000000000000001",
                  "From": sender, "To": to, "Body": body, "NumMedia": "0"}
        url = f"{twilio_settings.OMNI_PUBLIC_URL}/webhooks/twilio/inbound/"
        signature = RequestValidator(twilio_settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)
        response = client.post("/webhooks/twilio/inbound/", data=params, headers={"X-Twilio-Signature": signature})
        assert response.status_code == 200, response.content

    return send


def subscribed(external_id, phone):
    contact = Contact.objects.create(external_id=external_id, phone=phone)
    record_consent_change(contact, "sms", "marketing", "granted", "import")
    return contact


@pytest.fixture(autouse=True)
def _no_tasks_left_behind():
    yield
    purge_queues()


def test_a_stop_posted_twice_is_confirmed_once_through_the_sandbox_by_a_real_worker(
    celery_worker, finished_tasks, keyword_lists, twilio_settings, text_in
):
    # given replies go through the sandbox (the embedded default)
    twilio_settings.OMNI_PROVIDERS = {**twilio_settings.OMNI_PROVIDERS, "sms": "sandbox"}
    twilio_settings.OMNI_SANDBOX_EVENT_DELAY = 60
    alice = subscribed("alice", "+14155550100")

    # when the same STOP arrives twice (the retry once the worker has sent the first answer: an
    # in-memory SQLite database refuses a write while the worker's thread holds a table)
    # (and this thread reads nothing until the worker has written: a read here while it writes
    # makes its write fail with "database table is locked")
    text_in("STOP", sid="SMstop1", sender="+14155550100", to=HANDLED_SENDER)
    finished_tasks.wait_for(send_deliveries_task)
    confirmation = Delivery.objects.get(message__source=MessageSource.SYSTEM)
    text_in("STOP", sid="SMstop1", sender="+14155550100", to=HANDLED_SENDER)

    # then the worker sent exactly one confirmation
    assert Delivery.objects.get(message__source=MessageSource.SYSTEM) == confirmation
    sent = OutboxMessage.objects.get()
    assert (sent.delivery_id, sent.to_address) == (confirmation.pk, "+14155550100")
    assert sent.text_body == KeywordList.objects.get(language="en", kind="stop").reply
    assert Consent.objects.get(contact=alice, channel="sms", purpose="marketing").status == "revoked"
    assert Message.objects.count() == 1


def test_a_real_worker_sends_one_confirmation_from_a_twilio_sender_without_opt_out_handling_and_none_where_twilio_confirms(
    celery_worker, finished_tasks, keyword_lists, twilio_settings, twilio_server, text_in
):
    # given Twilio carries SMS; its own opt-out handling is off on one of our two senders only
    twilio_settings.TWILIO_OPT_OUT_HANDLING_OFF_FOR = [UNHANDLED_SENDER]
    alice = subscribed("alice", "+14155550100")
    bob = subscribed("bob", "+14155550102")

    # when Alice texts STOP to the sender Twilio handles, then Bob to the other, each twice (Bob's
    # retry once the worker has sent the answer to the first, as in the test above)
    for _ in range(2):
        text_in("STOP", sid="SMalice", sender="+14155550100", to=HANDLED_SENDER)
    text_in("stop", sid="SMbob", sender="+14155550102", to=UNHANDLED_SENDER)
    finished_tasks.wait_for(send_deliveries_task)
    text_in("stop", sid="SMbob", sender="+14155550102", to=UNHANDLED_SENDER)

    # then both are opted out, and only Bob gets Omni's confirmation, once, through Twilio
    confirmation = Delivery.objects.get(message__source=MessageSource.SYSTEM)
    assert (confirmation.contact, confirmation.provider) == (bob, "twilio")
    assert [(m["To"], m["Body"]) for m in twilio_server.messages] == [
        ("+14155550102", KeywordList.objects.get(language="en", kind="stop").reply)]
    for contact in (alice, bob):
        assert Consent.objects.get(contact=contact, channel="sms", purpose="marketing").status == "revoked"
