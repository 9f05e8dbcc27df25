"""Arbitration as a contact meets it, in cases the first tests left out: a rule allowing one
message per channel judges a message by the channel routing will send it on."""
import pytest

from channels import routing
from channels.arbitration import DUPLICATE_INTENT
from channels.models import ArbitrationRule, Message, MessageSource, MessageStatus
from compliance.actions import suppress
from contacts.models import Contact

HOUR = 3600


@pytest.fixture
def one_per_channel(db):
    """Transactional intents said once per channel within the hour; no other rule."""
    ArbitrationRule.objects.all().delete()
    return ArbitrationRule.objects.create(purpose="transactional", intent_window_seconds=HOUR, one_per_channel=True)


def alert(contact, plan, *, source=MessageSource.API) -> Message:
    message, _ = routing.create_message(
        contact=contact, source=source, purpose="transactional", intent_key="card:9:declined",
        channel_plan=[{"channel": c} for c in plan], content=[{"channel": c, "text_body": "Card declined"} for c in plan])
    return message


def test_one_per_channel_judges_a_message_by_the_channel_it_can_reach_the_contact_on(one_per_channel, now):
    # given a contact without a phone, already emailed the alert by a journey
    contact = Contact.objects.create(external_id="no-phone", email="np@example.com")
    emailed = alert(contact, ("email",), source=MessageSource.JOURNEY)
    routing.dispatch(emailed, now=now)

    # when a request sends the same alert by SMS, then email: it can only go by email
    again = alert(contact, ("sms", "email"))
    routing.dispatch(again, now=now)

    # then it is the same alert by email a second time: dropped, naming the email
    again.refresh_from_db()
    assert (again.status, again.status_reason) == (MessageStatus.SUPPRESSED, DUPLICATE_INTENT)
    assert not again.deliveries.exists()


def test_one_per_channel_in_one_batch_judges_each_message_by_the_channel_it_can_reach(one_per_channel, now):
    contact = Contact.objects.create(external_id="no-phone-batch", email="npb@example.com")
    emailed = alert(contact, ("email",), source=MessageSource.JOURNEY)
    again = alert(contact, ("sms", "email"))

    routing.dispatch_many([emailed, again], now=now)

    assert [(m.status, m.status_reason) for m in Message.objects.filter(pk__in=[emailed.pk, again.pk]).order_by("pk")
            ] == [(MessageStatus.QUEUED, "consent:unknown"), (MessageStatus.SUPPRESSED, DUPLICATE_INTENT)]



def test_one_per_channel_judges_a_message_by_the_channel_routing_moves_it_to_past_a_bounced_address(
        one_per_channel, contact, now):
    # given Alice's email hard-bounced, and a journey already texted her the alert
    suppress(contact.email, channel="email", reason="hard_bounce")
    texted = alert(contact, ("sms",), source=MessageSource.JOURNEY)
    routing.dispatch(texted, now=now)

    # when a request sends the same alert by email, then SMS: routing can only text it
    again = alert(contact, ("email", "sms"))
    routing.dispatch(again, now=now)

    # then it would be the same alert by SMS a second time
    again.refresh_from_db()
    assert (again.status, again.status_reason) == (MessageStatus.SUPPRESSED, DUPLICATE_INTENT)
