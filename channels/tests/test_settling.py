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
    assert message.current_step == 1
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
