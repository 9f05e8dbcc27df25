"""Edges of delivery as a mature sender handles them: reports that arrive out of order or tell
what the contact did, sends whose outcome was settled by someone else, and the fallback
timers that must not outlive what the reports proved."""
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from channels import routing
from channels.delivery import send_delivery
from channels.models import DeliveryStatus, MessageSource, MessageStatus

pytestmark = pytest.mark.django_db

# Email, then SMS unless the email was engaged with within ten minutes.
EMAIL_UNLESS_ENGAGED_THEN_SMS = [{"channel": "email", "fallback_after_seconds": 600, "fallback_unless": "engaged"},
                                 {"channel": "sms"}]
EMAIL_THEN_SMS = [{"channel": "email", "fallback_after_seconds": 600}, {"channel": "sms"}]


def sent_email(contact, template_version, plan, now, purpose="transactional"):
    message, _ = routing.create_message(contact=contact, template_version=template_version, purpose=purpose,
                                        source=MessageSource.API, channel_plan=plan)
    email = routing.dispatch(message, now=now)
    send_delivery(email.pk)
    email.refresh_from_db()
    assert email.status == DeliveryStatus.SENT, email.error_message
    return message, email


def test_a_complaint_about_the_email_never_moves_its_content_to_sms(
    providers, marketing_consent, template_version, ses_report, tick, twilio_server, now
):
    # given an email that falls back to SMS unless engaged with in ten minutes, delivered
    message, email = sent_email(marketing_consent, template_version, EMAIL_UNLESS_ENGAGED_THEN_SMS, now)
    ses_report("delivery", email)

    # when the contact marks it as spam, and the window ends
    ses_report("complaint", email)
    tick(now + timedelta(seconds=600))

    # then the email is the complaint's, and nobody sends the contact the same thing by SMS
    email.refresh_from_db()
    assert email.status == DeliveryStatus.COMPLAINED
    message.refresh_from_db()
    assert (message.plan_step, message.status) == (0, MessageStatus.DELIVERED)
    assert not message.deliveries.filter(channel="sms").exists()
    assert twilio_server.messages == []


def test_a_complaint_that_overtakes_the_delivery_report_stops_the_fallback_too(
    providers, marketing_consent, template_version, ses_report, tick, now
):
    # given an email that falls back to SMS unless delivered in ten minutes
    message, email = sent_email(marketing_consent, template_version, EMAIL_THEN_SMS, now)

    # when the complaint arrives before the delivery report, and the window ends
    ses_report("complaint", email)
    ses_report("delivery", email)
    tick(now + timedelta(seconds=600))

    # then the message stays on email: the complaint proves it reached the contact
    message.refresh_from_db()
    assert message.plan_step == 0
    assert not message.deliveries.filter(channel="sms").exists()


def test_an_sms_whose_send_timed_out_and_twilio_reported_delivered_is_answered_by_the_reply(
    make_delivery, twilio_report, write_in
):
    # given an SMS whose Twilio call timed out (uncertain), then Twilio's "delivered" callback
    # (its "sent" callback lost, or still on its way)
    sms = make_delivery("sms", provider="twilio", status=DeliveryStatus.UNCERTAIN, attempts=1)
    twilio_report(sms, "delivered", "SM0000000000000000000000000000001")
    sms.refresh_from_db()
    assert sms.status == DeliveryStatus.DELIVERED

    # when the contact answers it
    reply = write_in("Yes please")

    # then the reply answers that SMS, which was sent
    assert reply.in_reply_to_id == sms.pk
    sms.refresh_from_db()
    assert sms.sent_at is not None


class _HangUpHandler(BaseHTTPRequestHandler):
    """Reads the whole request, as a provider that accepted it would, then closes the connection
    without an answer (a proxy or load balancer dropping it, the provider restarting)."""

    def do_POST(self):
        self.server.received.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.close_connection = True

    def log_message(self, format, *args):
        pass


@pytest.fixture
def hang_up_server():
    """A local server at .url that takes every request and hangs up without answering; .received."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HangUpHandler)
    server.received = []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_twilio_hanging_up_after_taking_the_request_is_uncertain_and_never_sent_twice(
    make_delivery, twilio_settings, hang_up_server, settings
):
    # given Twilio (behind a proxy that drops the connection) takes the request but never answers
    settings.TWILIO_API_BASE_URL = hang_up_server.url
    settings.OMNI_RETRY_FIRST_SECONDS = 0.001
    sms = make_delivery("sms", provider="twilio")

    # when the worker sends it, and again once any next attempt is due
    send_delivery(sms.pk)
    time.sleep(0.05)
    send_delivery(sms.pk)

    # then Twilio may have queued it: it is uncertain, left for its callback, and asked once
    assert len(hang_up_server.received) == 1
    sms.refresh_from_db()
    assert sms.status == DeliveryStatus.UNCERTAIN


def test_aws_hanging_up_after_taking_the_request_is_uncertain_and_never_sent_twice(
    make_delivery, aws_settings, hang_up_server, settings
):
    # given SES (behind a proxy that drops the connection) takes the request but never answers
    settings.AWS_ENDPOINT_URL = hang_up_server.url
    settings.OMNI_PROVIDERS = {**settings.OMNI_PROVIDERS, "email": "ses"}
    settings.OMNI_RETRY_FIRST_SECONDS = 0.001
    email = make_delivery("email", provider="ses")

    # when the worker sends it, and again once any next attempt is due
    send_delivery(email.pk)
    time.sleep(0.05)
    send_delivery(email.pk)

    # then SES may have accepted it: it is uncertain, left for its event, and asked once
    assert len(hang_up_server.received) == 1
    email.refresh_from_db()
    assert email.status == DeliveryStatus.UNCERTAIN
