"""Uncertain deliveries settle: from the provider when it can be asked, or by an operator."""
import pytest
from django.urls import reverse

from channels.delivery import settle_uncertain_deliveries
from channels.models import DeliveryStatus, MessageStatus
from omni.models import AuditEntry

pytestmark = pytest.mark.django_db


def test_twilio_is_asked_about_an_uncertain_delivery_and_settles_it(make_delivery, twilio_settings, twilio_server):
    # given an SMS Twilio accepted (its SID is known) whose send was never recorded as such
    delivery = make_delivery("sms", provider="twilio", status=DeliveryStatus.UNCERTAIN, provider_message_id="SMabc")
    twilio_server.set_status("SMabc", "delivered")

    # when the beat task asks the providers
    settled = settle_uncertain_deliveries()

    # then Twilio's answer settles it, with an audit entry saying so
    delivery.refresh_from_db()
    assert settled == 1
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.message.status == MessageStatus.DELIVERED
    [request] = [r for r in twilio_server.requests if r.method == "GET"]
    assert request.path.endswith("/Messages/SMabc.json")
    entry = AuditEntry.objects.get(action="delivery.settled")
    assert (entry.reason, entry.data["status"], entry.actor_label) == ("provider_check", "delivered", "provider:twilio")


def test_a_failure_reported_by_twilio_settles_the_delivery_as_failed_and_falls_back(
    make_delivery, marketing_consent, twilio_settings, twilio_server,
):
    delivery = make_delivery("sms", provider="twilio", status=DeliveryStatus.UNCERTAIN, provider_message_id="SMxyz",
                             plan=[{"channel": "sms"}, {"channel": "email"}])
    twilio_server.set_status("SMxyz", "undelivered")

    settle_uncertain_deliveries()

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.UNDELIVERED
    message = delivery.message
    message.refresh_from_db()
    assert message.plan_step == 1
    assert message.deliveries.get(plan_step=1).channel == "email"


def test_an_uncertain_delivery_twilio_does_not_know_stays_uncertain(make_delivery, twilio_settings, twilio_server):
    delivery = make_delivery("sms", provider="twilio", status=DeliveryStatus.UNCERTAIN, provider_message_id="SMnope")

    assert settle_uncertain_deliveries() == 0

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.UNCERTAIN


def test_an_operator_marks_uncertain_deliveries_sent_or_failed_in_the_admin(admin_client, make_delivery,
                                                                             marketing_consent):
    # given two uncertain deliveries and one already delivered
    sent = make_delivery("email", status=DeliveryStatus.UNCERTAIN)
    failed = make_delivery("email", status=DeliveryStatus.UNCERTAIN, plan=[{"channel": "email"}, {"channel": "sms"}])
    delivered = make_delivery("email", status=DeliveryStatus.DELIVERED)
    url = reverse("admin:channels_delivery_changelist")

    # when the operator settles them
    admin_client.post(url, {"action": "mark_sent", "_selected_action": [sent.pk, delivered.pk]})
    admin_client.post(url, {"action": "mark_failed", "_selected_action": [failed.pk]})

    # then each moved through the state machine, audited with the operator's name; the
    # delivered one is left as it was
    for delivery in (sent, failed, delivered):
        delivery.refresh_from_db()
    assert (sent.status, sent.message.status) == (DeliveryStatus.SENT, MessageStatus.SENT)
    assert failed.status == DeliveryStatus.FAILED
    assert failed.message.deliveries.filter(channel="sms").exists()
    assert delivered.status == DeliveryStatus.DELIVERED
    entries = AuditEntry.objects.filter(action="delivery.settled").order_by("pk")
    assert [(e.object_id, e.reason, e.actor_label) for e in entries] == [
        (str(sent.pk), "operator", "admin"), (str(failed.pk), "operator", "admin")]


def _sent_at_twilio(twilio_settings, to, body):
    """A message Twilio accepted, as the worker's request would have made it."""
    from channels.providers.twilio import TwilioProvider

    return TwilioProvider().client.messages.create(to=to, from_=twilio_settings.TWILIO_FROM_NUMBER, body=body).sid


def test_twilio_is_asked_by_number_and_body_about_an_uncertain_delivery_whose_id_was_never_recorded(
    make_delivery, contact, twilio_settings, twilio_server, now,
):
    # given a worker killed mid-send: Twilio accepted the SMS, the delivery knows no SID; another
    # text went to the same number, and a second uncertain delivery never reached Twilio
    sid = _sent_at_twilio(twilio_settings, contact.phone, "Your order shipped.")
    _sent_at_twilio(twilio_settings, contact.phone, "Something else entirely.")
    sent = make_delivery("sms", provider="twilio", status=DeliveryStatus.UNCERTAIN, attempts=1,
                         claimed_at=now, text_body="Your order shipped.")
    never = make_delivery("sms", provider="twilio", status=DeliveryStatus.UNCERTAIN, attempts=1,
                          claimed_at=now, to_address="+14155550199", text_body="Your order shipped.")

    # when the beat task asks the providers
    settled = settle_uncertain_deliveries()

    # then the one Twilio holds is settled as sent, with its SID; the other stays uncertain
    assert settled == 1
    sent.refresh_from_db()
    never.refresh_from_db()
    assert (sent.status, sent.provider_message_id) == (DeliveryStatus.SENT, sid)
    assert sent.message.status == MessageStatus.SENT
    assert (never.status, never.provider_message_id) == (DeliveryStatus.UNCERTAIN, "")
    lookups = [r for r in twilio_server.requests if r.method == "GET" and r.path.endswith("/Messages.json")]
    assert sorted(r.query["To"] for r in lookups) == sorted([contact.phone, "+14155550199"])
    entry = AuditEntry.objects.get(action="delivery.settled")
    assert (entry.object_id, entry.reason, entry.data["status"]) == (str(sent.pk), "provider_check", "sent")


def test_two_messages_at_twilio_that_match_one_delivery_settle_nothing(make_delivery, contact, twilio_settings,
                                                                      twilio_server, now):
    _sent_at_twilio(twilio_settings, contact.phone, "Your order shipped.")
    _sent_at_twilio(twilio_settings, contact.phone, "Your order shipped.")
    delivery = make_delivery("sms", provider="twilio", status=DeliveryStatus.UNCERTAIN, attempts=1, claimed_at=now,
                             text_body="Your order shipped.")

    assert settle_uncertain_deliveries() == 0

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.UNCERTAIN


def test_the_sandbox_settles_an_uncertain_delivery_from_its_outbox(make_delivery, now):
    from channels.models import OutboxMessage

    # given a sandbox send whose worker died after the outbox kept it, and one that died before
    kept = make_delivery("email", status=DeliveryStatus.UNCERTAIN, attempts=1, claimed_at=now)
    lost = make_delivery("email", status=DeliveryStatus.UNCERTAIN, attempts=1, claimed_at=now)
    outbox = OutboxMessage.objects.create(delivery=kept, channel="email", to_address=kept.to_address,
                                          provider_message_id="sandbox-kept", simulated_outcome="delivered")

    settle_uncertain_deliveries()

    kept.refresh_from_db()
    lost.refresh_from_db()
    assert (kept.status, kept.provider_message_id) == (DeliveryStatus.SENT, outbox.provider_message_id)
    assert lost.status == DeliveryStatus.UNCERTAIN


def test_an_uncertain_delivery_nobody_can_settle_is_listed_for_administrators_once_and_never_resent(
    admin_client, make_delivery, settings, now,
):
    from datetime import timedelta

    settings.OMNI_UNRESOLVED_AFTER_SECONDS = 3600
    # given an email through SES (which cannot be asked without its id) uncertain for two hours,
    # and one uncertain for a minute
    old = make_delivery("email", provider="ses", status=DeliveryStatus.UNCERTAIN, attempts=1,
                        claimed_at=now - timedelta(hours=2))
    recent = make_delivery("email", provider="ses", status=DeliveryStatus.UNCERTAIN, attempts=1,
                           claimed_at=now - timedelta(minutes=1))

    # when the settle task runs twice
    settle_uncertain_deliveries()
    settle_uncertain_deliveries()

    # then the old one is listed for administrators, with one audit entry, and is still uncertain
    entries = AuditEntry.objects.filter(action="delivery.unresolved")
    assert [e.object_id for e in entries] == [str(old.pk)]
    old.refresh_from_db()
    recent.refresh_from_db()
    assert (old.status, old.attempts, recent.status) == (DeliveryStatus.UNCERTAIN, 1, DeliveryStatus.UNCERTAIN)
    response = admin_client.get(reverse("admin:channels_delivery_changelist"), {"unresolved": "yes"})
    assert [d.pk for d in response.context["cl"].result_list] == [old.pk]
