"""Late and out-of-order provider reports, through real signed webhooks.

A report about an earlier channel's delivery (a delivery whose plan step is not the message's
current step) is stored and updates that delivery, but never rewrites a message that has moved
on, never stops the current channel's send and never sends it twice. Failures only mark the
fallback due; the tick runs it.
"""
import json
from datetime import timedelta

import pytest

from channels import routing, state
from channels.delivery import reconcile_stuck_deliveries, send_delivery
from channels.models import DeliveryEvent, DeliveryStatus, MessageSource, MessageStatus
from channels.tests.ses_events import ses_event
from omni.models import AuditEntry

pytestmark = pytest.mark.django_db

EMAIL_THEN_SMS = [{"channel": "email", "fallback_after_seconds": 600}, {"channel": "sms"}]
SMS_THEN_EMAIL = [{"channel": "sms"}, {"channel": "email"}]


def new_message(contact, template_version, plan):
    message, _ = routing.create_message(contact=contact, template_version=template_version,
                                        source=MessageSource.API, channel_plan=plan)
    return message


def sent(delivery):
    send_delivery(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT, delivery.error_message
    return delivery


def test_a_late_open_of_the_email_never_stops_the_sms_that_replaced_it(
    providers, contact, template_version, ses_report, tick, now
):
    # given an email that stayed silent, so the timer moved the message to SMS
    message = new_message(contact, template_version, EMAIL_THEN_SMS)
    email = sent(routing.dispatch(message, now=now))
    tick(now + timedelta(seconds=600))
    sms = message.deliveries.get(channel="sms")

    # when the email's open arrives, late, before the SMS worker runs
    ses_report("open", email)

    # then the email is opened, the message stays on SMS, and the SMS still goes out
    email.refresh_from_db()
    assert email.status == DeliveryStatus.OPENED
    message.refresh_from_db()
    assert (message.plan_step, message.status) == (1, MessageStatus.QUEUED)
    sent(sms)
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT


def test_late_out_of_order_email_reports_change_the_email_alone(
    providers, contact, template_version, ses_report, twilio_report, tick, now
):
    # given the message moved on to SMS, which is out
    message = new_message(contact, template_version, EMAIL_THEN_SMS)
    email = sent(routing.dispatch(message, now=now))
    tick(now + timedelta(seconds=600))
    sms = sent(message.deliveries.get(channel="sms"))

    # when the email's delivery report arrives late
    ses_report("delivery", email)

    # then it is the email's news, not the message's: the SMS is not delivered yet
    email.refresh_from_db()
    assert email.status == DeliveryStatus.DELIVERED
    message.refresh_from_db()
    assert (message.plan_step, message.status) == (1, MessageStatus.SENT)

    # when the SMS is delivered, then the email bounces and its "send" report comes last
    twilio_report(sms, "delivered")
    ses_report("bounce", email)
    ses_report("send", email)
    tick()

    # then the email keeps its last news, and the message its SMS: one SMS, delivered
    email.refresh_from_db()
    assert email.status == DeliveryStatus.BOUNCED
    assert email.events.count() == 3
    message.refresh_from_db()
    assert (message.plan_step, message.status) == (1, MessageStatus.DELIVERED)
    assert list(message.deliveries.values_list("channel", flat=True).order_by("pk")) == ["email", "sms"]
    assert not AuditEntry.objects.filter(action__in=["message.fell_back", "message.failed"],
                                         object_id=str(message.pk)).exclude(reason="fallback_timeout").exists()


def test_a_late_delivered_callback_for_an_undelivered_sms_never_rewrites_the_email_step(
    providers, contact, template_version, twilio_report, tick, now
):
    # given the SMS came back undelivered and the tick moved the message on to email
    message = new_message(contact, template_version, SMS_THEN_EMAIL)
    sms = sent(routing.dispatch(message, now=now))
    twilio_report(sms, "undelivered", ErrorCode="30003")
    tick()
    email = message.deliveries.get(channel="email")

    # when Twilio's earlier callbacks arrive after that, out of order
    twilio_report(sms, "delivered")
    twilio_report(sms, "sent")

    # then they are stored, the SMS stays undelivered, and the message stays queued on email
    assert DeliveryEvent.objects.filter(delivery=sms).count() == 3
    sms.refresh_from_db()
    assert sms.status == DeliveryStatus.UNDELIVERED
    message.refresh_from_db()
    assert (message.plan_step, message.status) == (1, MessageStatus.QUEUED)
    # and the email goes out once
    sent(email)
    tick()
    assert message.deliveries.filter(channel="email").count() == 1


def test_a_failure_report_marks_the_fallback_due_and_the_tick_runs_it(
    providers, contact, template_version, twilio_report, tick, now, django_assert_max_num_queries
):
    # given
    message = new_message(contact, template_version, SMS_THEN_EMAIL)
    sms = sent(routing.dispatch(message, now=now))

    # when the SMS comes back undelivered
    with django_assert_max_num_queries(14):
        twilio_report(sms, "undelivered", ErrorCode="30003")

    # then the webhook only recorded it and marked the fallback due
    sms.refresh_from_db()
    assert sms.status == DeliveryStatus.UNDELIVERED
    assert sms.fallback_due_at is not None
    assert list(message.deliveries.values_list("channel", flat=True)) == ["sms"]
    assert not AuditEntry.objects.filter(action="message.fell_back").exists()

    # when the tick runs
    report = tick()

    # then the message is on email, and the SMS's timer is spent
    assert report.fallbacks == 1
    message.refresh_from_db()
    assert (message.plan_step, message.status) == (1, MessageStatus.QUEUED)
    assert message.deliveries.get(channel="email").status == DeliveryStatus.QUEUED
    assert AuditEntry.objects.get(action="message.fell_back").reason == DeliveryStatus.UNDELIVERED
    sms.refresh_from_db()
    assert sms.fallback_due_at is None


def test_a_delivery_report_clears_the_fallback_timer(providers, contact, template_version, ses_report, tick, now):
    # given an email that falls back to SMS if not delivered within 10 minutes
    message = new_message(contact, template_version, EMAIL_THEN_SMS)
    email = sent(routing.dispatch(message, now=now))
    assert email.fallback_due_at == now + timedelta(seconds=600)

    # when SES reports it delivered
    ses_report("delivery", email)

    # then no fallback is pending any more
    email.refresh_from_db()
    assert email.fallback_due_at is None
    tick(now + timedelta(seconds=600))
    assert message.deliveries.count() == 1


def test_a_plan_waiting_for_engagement_keeps_its_timer_until_the_open(
    providers, contact, template_version, ses_report, now
):
    plan = [{"channel": "email", "fallback_after_seconds": 600, "fallback_unless": "engaged"}, {"channel": "sms"}]
    message = new_message(contact, template_version, plan)
    email = sent(routing.dispatch(message, now=now))

    ses_report("delivery", email)
    email.refresh_from_db()
    assert email.fallback_due_at == now + timedelta(seconds=600)

    ses_report("open", email)
    email.refresh_from_db()
    assert email.fallback_due_at is None


def test_an_uncertain_sms_is_found_by_the_delivery_id_in_its_callback_url_and_falls_back_in_the_tick(
    providers, contact, template_version, twilio_report, tick, now
):
    # given the worker died during the Twilio call: no Twilio id was ever recorded
    message = new_message(contact, template_version, SMS_THEN_EMAIL)
    sms = routing.dispatch(message, now=now)
    state.move_delivery(sms.pk, DeliveryStatus.SENDING, claimed_at=now - timedelta(hours=1))
    assert reconcile_stuck_deliveries(now=now) == 1
    sms.refresh_from_db()
    assert (sms.status, sms.provider_message_id) == (DeliveryStatus.UNCERTAIN, "")

    # when Twilio's callbacks arrive at the URL that names the delivery
    twilio_report(sms, "sent", sid="SMfromtwilio")
    twilio_report(sms, "undelivered", sid="SMfromtwilio", ErrorCode="30003")

    # then they settle it, and the tick moves the message on to email
    sms.refresh_from_db()
    assert (sms.status, sms.provider_message_id) == (DeliveryStatus.UNDELIVERED, "SMfromtwilio")
    assert sms.events.count() == 2
    assert not message.deliveries.filter(channel="email").exists()
    tick()
    assert message.deliveries.get(channel="email").status == DeliveryStatus.QUEUED


def test_an_uncertain_email_is_found_by_its_ses_tag(providers, contact, template_version, client, sns_signer, now):
    # given SES accepted an email whose send was never recorded
    message = new_message(contact, template_version, [{"channel": "email"}])
    email = routing.dispatch(message, now=now)
    state.move_delivery(email.pk, DeliveryStatus.SENDING, claimed_at=now - timedelta(hours=1))
    reconcile_stuck_deliveries(now=now)

    # when its delivery report comes, tagged with Omni's delivery id
    envelope = sns_signer.notification(ses_event("delivery", "ses-from-aws", delivery_id=email.pk))
    client.post("/webhooks/ses/", data=json.dumps(envelope), content_type="text/plain")

    # then
    email.refresh_from_db()
    assert (email.status, email.provider_message_id) == (DeliveryStatus.DELIVERED, "ses-from-aws")
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
