"""Marketing held around a support conversation: the gate defers marketing to a contact with a
conversation not closed, and for OMNI_CONVERSATION_HOLD after one closed; transactional and
informational messages go on. Routing loads the conversations of a batch in one query."""
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.tick import tick
from channels import conversations, routing
from channels.models import Conversation, ConversationStatus, Delivery, MessageSource, MessageStatus
from channels.provider_reports import record_inbound_message
from compliance import decisions, gate
from compliance.actions import record_consent_change
from compliance.models import ConsentStatus, Decision
from contacts.models import Contact

NOW = datetime(2026, 6, 2, 15, 0, tzinfo=dt_timezone.utc)
HOLD = timedelta(hours=48)


def facts(**overrides) -> gate.SendFacts:
    base = dict(channel="sms", purpose="marketing", address="+14155550101", consent_status=ConsentStatus.GRANTED)
    return gate.SendFacts(**{**base, **overrides})


# --- the rule -------------------------------------------------------------------------------------

def test_marketing_waits_while_a_conversation_is_open_and_is_looked_at_again_soon():
    verdict = gate.decide(facts(conversations=((7, None),)), NOW)

    assert (verdict.outcome, verdict.reason, verdict.until) == (
        gate.DEFER, "conversation_open:7", NOW + gate.CONVERSATION_RECHECK)
    assert verdict.rules == ({"rule": "conversation_hold", "result": "defer", "reason": "conversation_open:7",
                              "until": (NOW + gate.CONVERSATION_RECHECK).isoformat(), "conversation": 7},)


def test_marketing_waits_until_the_hold_after_a_closed_conversation_ends():
    ends = NOW + timedelta(hours=5)

    verdict = gate.decide(facts(conversations=((7, ends),)), NOW)

    assert (verdict.outcome, verdict.reason, verdict.until) == (gate.DEFER, "conversation_open:7", ends)
    assert gate.decide(facts(conversations=((7, NOW),)), NOW).allowed


@pytest.mark.parametrize("purpose", ["transactional", "informational"])
def test_transactional_and_informational_messages_go_on_during_a_conversation(purpose):
    assert gate.decide(facts(purpose=purpose, conversations=((7, None),)), NOW).allowed


def test_marketing_that_would_expire_during_the_hold_ends_expired():
    verdict = gate.decide(facts(conversations=((7, NOW + timedelta(hours=5)),), expires_at=NOW + timedelta(hours=1)),
                          NOW)

    assert (verdict.outcome, verdict.reason) == (gate.SUPPRESS, "expired")


def test_a_refusal_outranks_the_hold():
    verdict = gate.decide(facts(consent_status=ConsentStatus.REVOKED, conversations=((7, None),)), NOW)

    assert (verdict.outcome, verdict.reason) == (gate.SUPPRESS, "opted_out")


# --- through routing, on the real dispatch path ---------------------------------------------------

@pytest.fixture
def alice(db):
    contact = Contact.objects.create(external_id="alice", email="alice@example.com", phone="+14155550100",
                                     timezone="UTC")
    record_consent_change(contact, "sms", "marketing", "granted", "form", announce=False)
    return contact


def new_message(contact, purpose="marketing", key=None):
    message, _ = routing.create_message(
        contact=contact, source=MessageSource.API, purpose=purpose, channel_plan=[{"channel": "sms"}],
        content=[{"channel": "sms", "text_body": "Our autumn sale starts today. Reply STOP to opt out."}],
        idempotency_key=key)
    return message


def test_marketing_is_held_while_the_contact_talks_to_support_and_sent_once_the_hold_ends(alice, settings):
    # given Alice wrote in and her conversation is open
    settings.OMNI_CONVERSATION_HOLD = HOLD
    inbound, _ = record_inbound_message("twilio", "SM1", "sms", alice.phone, "+15005550006", "Where is my order?",
                                        received_at=NOW)
    conversation = inbound.conversation
    sale, receipt = new_message(alice), new_message(alice, purpose="transactional")

    # when the sale and a receipt are routed
    routing.dispatch_many([sale, receipt], now=NOW)

    # then the receipt goes, the sale waits and is looked at again soon
    sale.refresh_from_db(), receipt.refresh_from_db()
    assert receipt.status == MessageStatus.QUEUED
    assert (sale.status, sale.status_reason, sale.defer_until) == (
        MessageStatus.DEFERRED, f"conversation_open:{conversation.pk}", NOW + gate.CONVERSATION_RECHECK)
    decision = Decision.objects.get(message_id=sale.pk)
    assert decision.inputs["conversations"] == [[conversation.pk, None]]
    assert decisions.in_words(decision) == (
        f"Marketing waits while the contact's support conversation #{conversation.pk} is open or recently closed. "
        f"It will be tried again at 2026-06-02 15:05 UTC.")

    # when the conversation closes an hour later and the tick looks at the sale again
    closed_at = NOW + timedelta(hours=1)
    conversations.close([conversation], now=closed_at)
    tick(closed_at + timedelta(minutes=1))

    # then it waits for the hold after the closing
    sale.refresh_from_db()
    assert (sale.status, sale.defer_until) == (MessageStatus.DEFERRED, closed_at + HOLD)
    assert not Delivery.objects.filter(message=sale).exists()

    # when the hold has ended
    tick(closed_at + HOLD + timedelta(seconds=1))

    # then it is sent, once
    sale.refresh_from_db()
    assert sale.status == MessageStatus.QUEUED
    assert Delivery.objects.filter(message=sale).count() == 1
    latest = Decision.objects.filter(message_id=sale.pk).order_by("-decided_at").first()
    assert latest.outcome == "allow" and "conversations" not in latest.inputs


def test_a_conversation_closed_longer_ago_than_the_hold_holds_nothing(alice, settings):
    settings.OMNI_CONVERSATION_HOLD = HOLD
    Conversation.objects.create(contact=alice, channel="whatsapp", status=ConversationStatus.CLOSED,
                                closed_at=NOW - HOLD)
    sale = new_message(alice)

    routing.dispatch(sale, now=NOW)

    sale.refresh_from_db()
    assert sale.status == MessageStatus.QUEUED


def test_a_stored_hold_decides_the_same_again(alice, settings):
    settings.OMNI_CONVERSATION_HOLD = HOLD
    closed = Conversation.objects.create(contact=alice, channel="whatsapp", status=ConversationStatus.CLOSED,
                                         closed_at=NOW - timedelta(hours=2))
    Conversation.objects.create(contact=alice, channel="sms")
    sale = new_message(alice)
    routing.dispatch(sale, now=NOW)

    decision = Decision.objects.get(message_id=sale.pk)
    again = gate.decide(decisions.facts_of(decision), decision.decided_at)

    assert decision.inputs["conversations"] == [[closed.pk, (NOW - timedelta(hours=2) + HOLD).isoformat()],
                                                [closed.pk + 1, None]]
    assert (again.outcome, again.reason, again.until) == (decision.outcome, decision.reason, decision.defer_until)
    assert (decision.reason, decision.defer_until) == (f"conversation_open:{closed.pk}", NOW - timedelta(hours=2) + HOLD)


def batch_queries(count: int, purpose: str) -> list[str]:
    """The queries dispatch_many makes for `count` messages, each to a contact in a conversation."""
    messages = []
    for index in range(count):
        contact = Contact.objects.create(external_id=f"{purpose}-{count}-{index}", phone=f"+1415556{count:02d}{index:02d}",
                                         timezone="UTC")
        record_consent_change(contact, "sms", "marketing", "granted", "form", announce=False)
        Conversation.objects.create(contact=contact, channel="sms")
        messages.append(new_message(contact, purpose=purpose))
    gate.current_rules()  # the rules cached, as in every batch after the first
    with CaptureQueriesContext(connection) as captured:
        routing.dispatch_many(messages, now=NOW)
    return [query["sql"] for query in captured]


# A batch of held marketing: the arbitration rules, the conversations, the rules' version,
# consents and suppressions, the messages deferred, their decisions and audit entries. PostgreSQL locks the contacts
# first (SELECT ... FOR UPDATE; a no-op on SQLite) and writes decisions and audit entries by
# COPY, which is no query here.
HELD_BATCH_QUERIES = {"sqlite": 7, "postgresql": 6}


@pytest.mark.django_db
def test_dispatch_many_reads_the_conversations_of_a_whole_batch_in_one_query():
    few, many = batch_queries(2, "marketing"), batch_queries(8, "marketing")
    informational = batch_queries(8, "informational")

    assert len(few) == len(many) == HELD_BATCH_QUERIES[connection.vendor]
    assert len([sql for sql in many if 'FROM "channels_conversation"' in sql]) == 1
    # a batch without marketing does not ask
    assert not [sql for sql in informational if 'FROM "channels_conversation"' in sql]


def test_the_decision_page_names_the_conversations_that_held_it(alice, settings, admin_client):
    settings.OMNI_CONVERSATION_HOLD = HOLD
    conversation = Conversation.objects.create(contact=alice, channel="sms")
    sale = new_message(alice)
    routing.dispatch(sale, now=NOW)
    decision = Decision.objects.get(message_id=sale.pk)

    page = admin_client.get(f"/admin/compliance/decision/{decision.pk}/change/")

    assert page.status_code == 200
    assert f"support conversations holding marketing: #{conversation.pk} (not closed)" in page.content.decode()
    assert "conversation_hold" in page.content.decode()


def test_marketing_queued_before_the_contact_wrote_in_is_held_when_the_worker_would_send_it(alice, settings):
    from channels.delivery import send_delivery

    # given a sale queued for Alice (its delivery waits for a worker), then she writes in
    settings.OMNI_CONVERSATION_HOLD = HOLD
    sale = new_message(alice)
    routing.dispatch_many([sale], now=NOW)
    delivery = Delivery.objects.get(message=sale)
    inbound, _ = record_inbound_message("twilio", "SM9", "sms", alice.phone, "+15005550006", "Where is my order?",
                                        received_at=NOW + timedelta(seconds=5))

    # when the worker comes to the delivery
    send_delivery(delivery.pk)

    # then it is not sent: cancelled for the conversation, and the sale waits for it
    delivery.refresh_from_db(), sale.refresh_from_db()
    assert (delivery.status, delivery.error_message) == ("cancelled", f"conversation_open:{inbound.conversation_id}")
    assert (sale.status, sale.status_reason) == (MessageStatus.DEFERRED, f"conversation_open:{inbound.conversation_id}")
