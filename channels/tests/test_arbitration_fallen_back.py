"""Arbitration and a message that moved on to its plan's next channel: what its email told the
contact still counts, on the email's channel, while the message waits for its next one."""
from datetime import timedelta

import pytest

from channels import routing
from channels.arbitration import COLLISION, DUPLICATE_INTENT
from channels.delivery import send_delivery
from channels.models import DeliveryStatus, EventType, MessageSource, MessageStatus
from channels.provider_reports import record_delivery_event
from channels.tests.test_arbitration import HOUR, arbitration_of, new_message, rules, statuses  # noqa: F401
from compliance.models import QuietHours

EMAIL_UNLESS_ENGAGED_THEN_SMS = [{"channel": "email", "fallback_after_seconds": HOUR, "fallback_unless": "engaged"},
                                 {"channel": "sms"}]


@pytest.fixture
def night(marketing_consent, now):
    """Quiet hours for the contact from two hours after `now` to six: the send worker, which
    checks them again at the real time, sends the email now."""
    start = (now + timedelta(hours=2)).replace(second=0, microsecond=0)
    QuietHours.objects.create(name="Nights", start=start.time(), end=(start + timedelta(hours=4)).time())
    contact = marketing_consent
    contact.timezone = "UTC"
    contact.save()
    return contact


@pytest.fixture
def times(now):
    """The alert is emailed now; its timer ends an hour later; the tick runs it in quiet hours,
    two and a half hours later; then the next message comes."""
    return {"emailed": now, "fell_back": now + timedelta(hours=2, minutes=30),
            "later": now + timedelta(hours=2, minutes=45)}


def fell_back_after_the_email(contact, tick, times, *, report=EventType.DELIVERED, intent_key="card:9:declined"):
    """An alert emailed, reported `report`, and handed to SMS by the tick when its timer has
    ended, where quiet hours defer it."""
    alert, _ = routing.create_message(
        contact=contact, source=MessageSource.JOURNEY, purpose="informational", intent_key=intent_key,
        channel_plan=EMAIL_UNLESS_ENGAGED_THEN_SMS,
        content=[{"channel": c, "subject": "Card declined", "text_body": "Card declined"} for c in ("email", "sms")])
    email = send_delivery(routing.dispatch(alert, now=times["emailed"]).pk)
    assert email.status == DeliveryStatus.SENT, email.error_message
    record_delivery_event("sandbox", f"{email.pk}:{report}", email.provider_message_id, report,
                          times["emailed"] + timedelta(minutes=5), delivery_id=email.pk)
    tick(times["fell_back"])
    alert.refresh_from_db()
    assert (alert.plan_step, alert.status, alert.status_reason) == (1, MessageStatus.DEFERRED, "quiet_hours")
    return alert


def test_an_intent_emailed_then_waiting_for_its_sms_is_not_said_again_from_another_source(night, rules, tick, times):
    rules("informational", intent=24 * HOUR)
    # given the alert's email was delivered, unread, and its SMS waits for the quiet hours' end
    alert = fell_back_after_the_email(night, tick, times)

    # when a request sends the same alert
    again = new_message(night, intent_key="card:9:declined")
    routing.dispatch(again, now=times["later"])

    # then the contact was told already, by email: dropped, naming the email
    assert statuses(again) == [(MessageStatus.SUPPRESSED, DUPLICATE_INTENT)]
    winner = arbitration_of(again)
    assert (winner["displaced_by"], winner["winner"]["channel"], winner["winner"]["already_said"]) == (
        alert.pk, "email", True)
    assert winner["winner"]["at"] == times["emailed"].isoformat()
    assert not again.deliveries.exists()


def test_one_per_channel_counts_the_channel_the_intent_was_said_on_not_the_one_it_waits_for(night, rules, tick, times):
    rules("informational", intent=24 * HOUR, one_per_channel=True)
    alert = fell_back_after_the_email(night, tick, times)

    # when a request emails the same alert, and another texts it
    emailed = new_message(night, intent_key="card:9:declined", plan=("email",))
    texted = new_message(night, intent_key="card:9:declined", plan=("sms",))
    routing.dispatch(emailed, now=times["later"])
    routing.dispatch(texted, now=times["later"])

    # then the email is the same alert by email again: dropped; the SMS was not said yet
    assert statuses(emailed, texted) == [(MessageStatus.SUPPRESSED, DUPLICATE_INTENT),
                                         (MessageStatus.DEFERRED, "quiet_hours")]
    assert arbitration_of(emailed)["displaced_by"] == alert.pk
    assert arbitration_of(emailed)["winner"]["channel"] == "email"


def test_an_email_that_bounced_told_the_contact_nothing(night, rules, tick, times):
    rules("informational", intent=24 * HOUR)
    # given the alert's email bounced, and its SMS waits for the quiet hours' end
    fell_back_after_the_email(night, tick, times, report=EventType.BOUNCED)

    again = new_message(night, intent_key="card:9:declined")
    routing.dispatch(again, now=times["later"])

    # then nothing displaced it: only the quiet hours hold it
    assert statuses(again) == [(MessageStatus.DEFERRED, "quiet_hours")]


def test_a_collision_counts_from_the_email_of_a_message_waiting_for_its_sms(night, rules, tick, times):
    rules("marketing", collision=4 * HOUR)
    alert = fell_back_after_the_email(night, tick, times)

    sale = new_message(night, purpose="marketing", intent_key="sale:autumn")
    routing.dispatch(sale, now=times["later"])

    # the sale waits four hours after the email, not after the SMS it has not been sent yet
    assert statuses(sale) == [(MessageStatus.DEFERRED, COLLISION)]
    assert sale.defer_until == times["emailed"] + timedelta(hours=4)
    assert arbitration_of(sale)["displaced_by"] == alert.pk


def test_an_email_whose_send_is_uncertain_may_have_told_the_contact(night, rules, tick, times):
    from channels import state
    from channels.models import Delivery

    rules("informational", intent=24 * HOUR)
    # given the alert's email went to the provider, whose answer was lost (uncertain: it may have
    # gone out), and the tick moved the alert on to SMS, where quiet hours hold it
    alert, _ = routing.create_message(
        contact=night, source=MessageSource.JOURNEY, purpose="informational", intent_key="card:9:declined",
        channel_plan=EMAIL_UNLESS_ENGAGED_THEN_SMS,
        content=[{"channel": c, "subject": "Card declined", "text_body": "Card declined"} for c in ("email", "sms")])
    email = routing.dispatch(alert, now=times["emailed"])
    Delivery.objects.filter(pk=email.pk).update(claimed_at=times["emailed"])
    assert state.move_delivery(email, DeliveryStatus.SENDING) and state.move_delivery(email, DeliveryStatus.UNCERTAIN)
    tick(times["fell_back"])
    alert.refresh_from_db()
    assert (alert.plan_step, alert.status) == (1, MessageStatus.DEFERRED)

    # when a request sends the same alert
    again = new_message(night, intent_key="card:9:declined")
    routing.dispatch(again, now=times["later"])

    # then it is not risked twice: dropped, naming the uncertain email
    assert statuses(again) == [(MessageStatus.SUPPRESSED, DUPLICATE_INTENT)]
    assert (arbitration_of(again)["displaced_by"], arbitration_of(again)["winner"]["channel"]) == (alert.pk, "email")


def test_an_intent_emailed_is_not_said_again_by_a_message_routed_in_the_same_batch_as_the_one_that_emailed_it(
        night, rules, tick, times):
    rules("informational", intent=24 * HOUR)
    # given the alert's email was delivered, unread, and its SMS waits for the quiet hours' end
    alert = fell_back_after_the_email(night, tick, times)
    # and a request sends the same alert, more important, before the quiet hours end
    again = new_message(night, intent_key="card:9:declined", priority=5)
    after_the_night = times["emailed"] + timedelta(hours=6, minutes=5)

    # when both are routed in one batch once the quiet hours are over
    routing.dispatch_many([alert, again], now=after_the_night)

    # then the request is dropped, naming the alert's email, and the alert goes on to its SMS
    assert statuses(again, alert) == [(MessageStatus.SUPPRESSED, DUPLICATE_INTENT),
                                      (MessageStatus.QUEUED, "consent:unknown")]
    winner = arbitration_of(again)
    assert (winner["displaced_by"], winner["winner"]["channel"], winner["winner"]["already_said"]) == (
        alert.pk, "email", True)
    assert not again.deliveries.exists()


@pytest.mark.parametrize("intent_key", ["card:9:declined", ""])
def test_a_message_that_emailed_is_not_held_back_by_its_own_email(night, rules, tick, times, intent_key):
    rules("informational", intent=24 * HOUR, collision=8 * HOUR)
    alert = fell_back_after_the_email(night, tick, times, intent_key=intent_key)

    routing.dispatch_many([alert], now=times["emailed"] + timedelta(hours=6, minutes=5))

    assert statuses(alert) == [(MessageStatus.QUEUED, "consent:unknown")]
