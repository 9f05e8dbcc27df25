"""Arbitration in routing: the same intent never said twice within its window whatever the
source, collisions ordered by purpose then priority, the loser deferred or dropped by its rule,
a queued message never recalled, every verdict a decision naming the rule and who displaced whom."""
import importlib
import threading
import time as clock
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from channels import routing
from channels.arbitration import COLLISION, DUPLICATE_INTENT
from channels.models import (
    ArbitrationAction,
    ArbitrationRule,
    Delivery,
    DeliveryStatus,
    Message,
    MessageSource,
    MessageStatus,
)
from compliance import decisions, gate
from compliance.actions import record_consent_change
from compliance.models import Decision
from contacts.models import Contact
from omni.choices import Exemption
from omni.tests.fakes import run_concurrently

HOUR = 3600


@pytest.fixture
def rules(db):
    """Sets the arbitration rule of a purpose; the others check nothing."""
    ArbitrationRule.objects.all().delete()

    def set_rule(purpose, *, intent=0, collision=0, one_per_channel=False, action=ArbitrationAction.DEFER):
        rule, _ = ArbitrationRule.objects.update_or_create(purpose=purpose, defaults={
            "intent_window_seconds": intent, "collision_window_seconds": collision,
            "one_per_channel": one_per_channel, "action": action})
        return rule

    return set_rule


def new_message(contact, *, source=MessageSource.API, purpose="informational", plan=("sms",), intent_key="",
                priority=0, **fields) -> Message:
    message, _ = routing.create_message(
        contact=contact, source=source, purpose=purpose, channel_plan=[{"channel": c} for c in plan],
        content=[{"channel": c, "text_body": f"About {intent_key or 'something'}"} for c in plan],
        intent_key=intent_key, priority=priority, **fields)
    return message


def statuses(*messages):
    for message in messages:
        message.refresh_from_db()
    return [(m.status, m.status_reason) for m in messages]


def arbitration_of(message) -> dict:
    return Decision.objects.get(message_id=message.pk).inputs["arbitration"]


def test_a_journey_a_campaign_and_an_api_send_colliding_the_decisions_name_who_displaced_whom(
        marketing_consent, rules, now):
    contact = marketing_consent
    marketing = rules("marketing", collision=HOUR)
    # given the tick routes a journey's tip and a campaign's offer for Alice in one batch
    journey = new_message(contact, source=MessageSource.JOURNEY, intent_key="journey:onboarding:tips")
    campaign = new_message(contact, source=MessageSource.CAMPAIGN, purpose="marketing", intent_key="campaign:7")
    routing.dispatch_many([journey, campaign], now=now)

    # when a request sends her a receipt, then an offer of its own
    receipt = new_message(contact, purpose="transactional", intent_key="order:42:receipt")
    assert routing.dispatch(receipt, now=now) is not None
    offer = new_message(contact, purpose="marketing", intent_key="api:offer", priority=5)
    routing.dispatch(offer, now=now)

    # then the journey's tip and the receipt go; each offer waits the hour after what displaced it
    assert statuses(journey, receipt) == [(MessageStatus.QUEUED, "consent:unknown")] * 2
    assert statuses(campaign, offer) == [(MessageStatus.DEFERRED, COLLISION)] * 2
    assert campaign.defer_until == now + timedelta(hours=1)
    assert arbitration_of(campaign)["displaced_by"] == journey.pk
    assert arbitration_of(campaign)["winner"]["source"] == MessageSource.JOURNEY
    # the receipt outranks the journey's tip: it is the one named
    assert arbitration_of(offer)["displaced_by"] == receipt.pk
    assert arbitration_of(offer)["winner"]["source"] == MessageSource.API
    decision = Decision.objects.get(message_id=offer.pk)
    assert (decision.outcome, decision.reason, decision.channel, decision.purpose) == (
        "defer", COLLISION, "sms", "marketing")
    assert decision.inputs["arbitration"]["rule"] == marketing.pk
    assert decision.inputs["rules"] == [{"rule": "arbitration", "result": "defer", "reason": COLLISION,
                                         "id": marketing.pk, "version": 1, "displaced_by": receipt.pk,
                                         "until": decision.defer_until.isoformat()}]
    assert decision.digest == decision.compute_digest()
    assert decisions.facts_of(decision).arbitration == decision.inputs["arbitration"]
    assert f"message {receipt.pk}" in decisions.in_words(decision)
    # and nothing was queued for the offers
    assert not Delivery.objects.filter(message__in=[campaign, offer]).exists()


def test_the_same_intent_from_two_sources_within_its_window_is_sent_once(contact, rules, now):
    rules("informational", intent=24 * HOUR)
    journey = new_message(contact, source=MessageSource.JOURNEY, intent_key="order:42:shipped")
    routing.dispatch_many([journey], now=now)

    api = new_message(contact, source=MessageSource.API, intent_key="order:42:shipped", plan=("email",))
    routing.dispatch(api, now=now)

    assert statuses(journey, api) == [(MessageStatus.QUEUED, "consent:unknown"),
                                      (MessageStatus.SUPPRESSED, DUPLICATE_INTENT)]
    assert arbitration_of(api)["displaced_by"] == journey.pk
    assert arbitration_of(api)["winner"]["already_said"] is True
    assert Decision.objects.get(message_id=api.pk).outcome == "suppress"


def test_the_same_intent_twice_in_one_batch_goes_once_the_higher_priority_first(contact, rules, now):
    rules("informational", intent=24 * HOUR)
    low = new_message(contact, source=MessageSource.CAMPAIGN, intent_key="plan:renewal", priority=1)
    high = new_message(contact, source=MessageSource.JOURNEY, intent_key="plan:renewal", priority=3)
    other = new_message(contact, intent_key="plan:upgrade")

    routing.dispatch_many([low, high, other], now=now)

    assert statuses(low, high, other) == [(MessageStatus.SUPPRESSED, DUPLICATE_INTENT),
                                          (MessageStatus.QUEUED, "consent:unknown"),
                                          (MessageStatus.QUEUED, "consent:unknown")]
    assert arbitration_of(low)["displaced_by"] == high.pk


def test_one_per_channel_lets_an_sms_alert_go_with_the_email_kept_as_the_record(contact, rules, now):
    rules("transactional", intent=HOUR, one_per_channel=True)
    sms = new_message(contact, purpose="transactional", intent_key="card:9:declined")
    email = new_message(contact, purpose="transactional", intent_key="card:9:declined", plan=("email",))
    routing.dispatch_many([sms, email], now=now)

    again = new_message(contact, source=MessageSource.JOURNEY, purpose="transactional", intent_key="card:9:declined")
    routing.dispatch(again, now=now)

    assert [status for status, _ in statuses(sms, email, again)] == [
        MessageStatus.QUEUED, MessageStatus.QUEUED, MessageStatus.SUPPRESSED]
    assert arbitration_of(again)["displaced_by"] == sms.pk
    assert arbitration_of(again)["one_per_channel"] is True


def test_without_one_per_channel_the_email_is_the_same_intent_said_again(contact, rules, now):
    rules("transactional", intent=HOUR)
    sms = new_message(contact, purpose="transactional", intent_key="card:9:declined")
    email = new_message(contact, purpose="transactional", intent_key="card:9:declined", plan=("email",))

    routing.dispatch_many([sms, email], now=now)

    assert [status for status, _ in statuses(sms, email)] == [MessageStatus.QUEUED, MessageStatus.SUPPRESSED]


@pytest.mark.parametrize("said_status", [MessageStatus.SENT, MessageStatus.DELIVERED])
def test_after_the_intent_window_the_same_intent_is_sent_again(contact, rules, now, said_status):
    rules("informational", intent=24 * HOUR)
    earlier = new_message(contact, intent_key="tips:weekly")
    routing.dispatch(earlier, now=now)
    Message.objects.filter(pk=earlier.pk).update(status=said_status, said_at=now - timedelta(hours=25))
    within = new_message(contact, intent_key="tips:weekly")
    Message.objects.filter(pk=within.pk).update(status=said_status, said_at=now - timedelta(hours=23))

    # one said 23 hours ago still counts; one said 25 hours ago alone would not
    first = new_message(contact, intent_key="tips:weekly")
    routing.dispatch(first, now=now)
    Message.objects.filter(pk=within.pk).update(status=MessageStatus.FAILED)
    second = new_message(contact, intent_key="tips:weekly")
    routing.dispatch(second, now=now)

    assert statuses(first, second) == [(MessageStatus.SUPPRESSED, DUPLICATE_INTENT),
                                       (MessageStatus.QUEUED, "consent:unknown")]
    assert arbitration_of(first)["displaced_by"] == within.pk


def test_an_intent_said_a_minute_ago_counts_however_long_ago_its_message_was_made(contact, rules, now):
    rules("informational", intent=24 * HOUR)
    # given a journey's message made two days ago (deferred since, by quiet hours) and queued a minute ago
    journey = new_message(contact, source=MessageSource.JOURNEY, intent_key="order:9:shipped")
    Message.objects.filter(pk=journey.pk).update(created_at=now - timedelta(days=2))
    routing.dispatch(Message.objects.select_related("contact").get(pk=journey.pk), now=now - timedelta(minutes=1))

    # when a request sends the same intent
    api = new_message(contact, source=MessageSource.API, intent_key="order:9:shipped")
    routing.dispatch(api, now=now)

    # then it is the same thing said twice within the day: dropped
    assert statuses(journey, api) == [(MessageStatus.QUEUED, "consent:unknown"),
                                      (MessageStatus.SUPPRESSED, DUPLICATE_INTENT)]
    assert arbitration_of(api)["displaced_by"] == journey.pk
    assert arbitration_of(api)["winner"]["at"] == (now - timedelta(minutes=1)).isoformat()


def test_an_intent_said_before_its_window_does_not_count_however_recently_its_message_was_made(
        contact, rules, now):
    rules("informational", intent=24 * HOUR)
    # made just now, but queued 25 hours before the time the next dispatch runs at
    earlier = new_message(contact, intent_key="tips:weekly")
    routing.dispatch(earlier, now=now - timedelta(hours=25))

    again = new_message(contact, intent_key="tips:weekly")
    routing.dispatch(again, now=now)

    assert statuses(earlier, again) == [(MessageStatus.QUEUED, "consent:unknown")] * 2


def test_a_collision_counts_from_when_the_winner_was_said(marketing_consent, rules, now):
    rules("marketing", collision=HOUR)
    # a reminder made two days ago, queued ten minutes ago
    reminder = new_message(marketing_consent, intent_key="appointment:3")
    Message.objects.filter(pk=reminder.pk).update(created_at=now - timedelta(days=2))
    routing.dispatch(Message.objects.select_related("contact").get(pk=reminder.pk), now=now - timedelta(minutes=10))

    sale = new_message(marketing_consent, purpose="marketing", intent_key="sale:autumn")
    routing.dispatch(sale, now=now)

    # the sale waits for the hour after the reminder was said, not after it was made
    assert statuses(sale) == [(MessageStatus.DEFERRED, COLLISION)]
    assert sale.defer_until == now + timedelta(minutes=50)
    assert arbitration_of(sale)["displaced_by"] == reminder.pk


def test_a_message_moved_to_its_next_channel_is_said_again_there(contact, rules, now):
    rules("transactional", intent=24 * HOUR, one_per_channel=True)
    # an email made and queued two days ago, then handed to SMS a minute ago when it went unread
    alert = new_message(contact, source=MessageSource.JOURNEY, purpose="transactional", intent_key="card:9:declined",
                        plan=("email", "sms"))
    Message.objects.filter(pk=alert.pk).update(created_at=now - timedelta(days=2))
    email = routing.dispatch(Message.objects.select_related("contact").get(pk=alert.pk), now=now - timedelta(days=2))
    routing.fall_back(email, "fallback_timeout", now=now - timedelta(minutes=1))

    sms = new_message(contact, purpose="transactional", intent_key="card:9:declined")
    routing.dispatch(sms, now=now)

    assert statuses(alert, sms) == [(MessageStatus.QUEUED, "consent:unknown"),
                                    (MessageStatus.SUPPRESSED, DUPLICATE_INTENT)]
    assert (alert.plan_step, alert.said_at) == (1, now - timedelta(minutes=1))
    assert arbitration_of(sms)["displaced_by"] == alert.pk


@pytest.mark.parametrize("action, status, defer_until", [
    (ArbitrationAction.DEFER, MessageStatus.DEFERRED, timedelta(hours=2)),
    (ArbitrationAction.DROP, MessageStatus.SUPPRESSED, None),
])
def test_the_rule_defers_the_loser_until_the_window_has_passed_or_drops_it(
        marketing_consent, rules, now, action, status, defer_until):
    rules("marketing", collision=2 * HOUR, action=action)
    reminder = new_message(marketing_consent, purpose="informational", intent_key="appointment:3")
    sale = new_message(marketing_consent, purpose="marketing", intent_key="sale:autumn")

    routing.dispatch_many([sale, reminder], now=now)

    sale.refresh_from_db()
    assert (sale.status, sale.status_reason) == (status, COLLISION)
    assert sale.defer_until == (now + defer_until if defer_until else None)
    decision = Decision.objects.get(message_id=sale.pk)
    assert (decision.outcome, decision.defer_until) == ("defer" if defer_until else "suppress", sale.defer_until)
    assert decision.inputs["arbitration"]["action"] == action


def test_a_deferred_loser_goes_once_its_window_has_passed(marketing_consent, rules, now):
    rules("marketing", collision=HOUR)
    reminder = new_message(marketing_consent, intent_key="appointment:3")
    sale = new_message(marketing_consent, purpose="marketing", intent_key="sale:autumn")
    routing.dispatch_many([sale, reminder], now=now)
    sale.refresh_from_db()

    later = now + timedelta(hours=1, seconds=1)
    routing.dispatch_many([Message.objects.select_related("contact").get(pk=sale.pk)], now=later)

    assert statuses(sale) == [(MessageStatus.QUEUED, "consent:granted")]


def test_a_loser_that_would_wait_past_its_expiry_expires(marketing_consent, rules, now):
    rules("marketing", collision=HOUR)
    reminder = new_message(marketing_consent, intent_key="appointment:3")
    flash = new_message(marketing_consent, purpose="marketing", expires_at=now + timedelta(minutes=30))

    routing.dispatch_many([flash, reminder], now=now)

    assert statuses(flash) == [(MessageStatus.EXPIRED, "expired")]
    assert Decision.objects.get(message_id=flash.pk).inputs["arbitration"]["kind"] == COLLISION


def test_transactional_beats_marketing_whatever_its_priority_and_priority_breaks_ties(
        marketing_consent, rules, now):
    rules("marketing", collision=HOUR)
    rules("transactional", collision=HOUR)
    urgent_sale = new_message(marketing_consent, purpose="marketing", priority=100, intent_key="sale:a")
    password_reset = new_message(marketing_consent, purpose="transactional", intent_key="reset:1")
    routing.dispatch_many([urgent_sale, password_reset], now=now)

    other = Contact.objects.create(external_id="bob", phone="+14155550101")
    for channel in ("sms",):
        record_consent_change(other, channel, "marketing", "granted", "form", announce=False)
    low = new_message(other, purpose="marketing", priority=1, intent_key="sale:b")
    high = new_message(other, purpose="marketing", priority=5, intent_key="sale:c")
    routing.dispatch_many([low, high], now=now)

    assert [s for s, _ in statuses(urgent_sale, password_reset)] == [MessageStatus.DEFERRED, MessageStatus.QUEUED]
    assert arbitration_of(urgent_sale)["displaced_by"] == password_reset.pk
    assert [s for s, _ in statuses(low, high)] == [MessageStatus.DEFERRED, MessageStatus.QUEUED]
    assert arbitration_of(low)["displaced_by"] == high.pk
    assert arbitration_of(low)["winner"]["priority"] == 5


def test_a_queued_message_is_never_recalled(marketing_consent, rules, now):
    rules("marketing", collision=HOUR)
    rules("transactional", collision=HOUR)
    sale = new_message(marketing_consent, purpose="marketing", intent_key="sale:a")
    routing.dispatch(sale, now=now)

    receipt = new_message(marketing_consent, purpose="transactional", intent_key="order:1")
    routing.dispatch(receipt, now=now)

    assert [s for s, _ in statuses(sale, receipt)] == [MessageStatus.QUEUED, MessageStatus.QUEUED]
    assert Delivery.objects.get(message=sale).status == DeliveryStatus.QUEUED
    assert not Decision.objects.filter(reason__startswith="arbitration:").exists()
    # and both, queued, hold back the next sale: the receipt, ranked first, is named
    second_sale = new_message(marketing_consent, purpose="marketing", intent_key="sale:b")
    routing.dispatch(second_sale, now=now)
    assert statuses(second_sale) == [(MessageStatus.DEFERRED, COLLISION)]
    assert arbitration_of(second_sale)["displaced_by"] == receipt.pk


def test_a_queued_message_holds_back_a_new_one_of_its_own_rank(marketing_consent, rules, now):
    rules("marketing", collision=HOUR)
    sale = new_message(marketing_consent, purpose="marketing", intent_key="sale:a")
    routing.dispatch(sale, now=now)

    second_sale = new_message(marketing_consent, purpose="marketing", intent_key="sale:b")
    routing.dispatch(second_sale, now=now)

    assert statuses(sale, second_sale) == [(MessageStatus.QUEUED, "consent:granted"),
                                           (MessageStatus.DEFERRED, COLLISION)]
    assert arbitration_of(second_sale)["displaced_by"] == sale.pk
    assert arbitration_of(second_sale)["winner"]["already_said"] is True


def test_a_queued_message_routed_again_is_not_displaced_and_an_exempt_one_neither(contact, rules, now):
    rules("informational", collision=HOUR, intent=HOUR)
    rules("transactional", collision=HOUR)
    queued = new_message(contact, intent_key="digest")
    routing.dispatch(queued, now=now)
    Delivery.objects.filter(message=queued).update(status=DeliveryStatus.CANCELLED)
    receipt = new_message(contact, purpose="transactional")
    confirmation = new_message(contact, exemption=Exemption.OPT_OUT_CONFIRMATION)

    # a delivery cancelled at send time routes its queued message again, beside a receipt
    routing.dispatch_many([Message.objects.select_related("contact").get(pk=queued.pk), receipt, confirmation],
                          now=now)

    assert [s for s, _ in statuses(queued, receipt, confirmation)] == [MessageStatus.QUEUED] * 3


def test_a_purpose_without_a_rule_or_with_zero_windows_is_never_displaced(contact, rules, now):
    rules("informational")
    first, second = new_message(contact, intent_key="same"), new_message(contact, intent_key="same")
    unruled = new_message(contact, purpose="transactional", intent_key="same")

    routing.dispatch_many([first, second, unruled], now=now)

    assert [s for s, _ in statuses(first, second, unruled)] == [MessageStatus.QUEUED] * 3


def test_the_shipped_rules_drop_a_repeated_intent_and_leave_collisions_to_staff(contact, now):
    # as the data migration leaves them (a test that empties the tables may have run before)
    ArbitrationRule.objects.all().delete()
    importlib.import_module("channels.migrations.0023_arbitration_rule_defaults").add_defaults(django_apps, None)
    shipped = {rule.purpose: rule for rule in ArbitrationRule.objects.all()}
    assert set(shipped) == {"transactional", "informational", "marketing"}
    assert shipped["transactional"].one_per_channel
    assert not any(rule.collision_window_seconds for rule in shipped.values())

    first, second = new_message(contact, intent_key="same"), new_message(contact, intent_key="same")
    routing.dispatch_many([first, second], now=now)

    assert [s for s, _ in statuses(first, second)] == [MessageStatus.QUEUED, MessageStatus.SUPPRESSED]


def test_the_migration_dates_the_messages_said_before_it_by_their_latest_delivery(contact, now):
    fallen_back, queued, pending, failed = (new_message(contact, plan=("email", "sms")) for _ in range(4))
    Message.objects.filter(pk=fallen_back.pk).update(status=MessageStatus.SENT, plan_step=1)
    Message.objects.filter(pk=queued.pk).update(status=MessageStatus.QUEUED, created_at=now - timedelta(days=3))
    Message.objects.filter(pk=failed.pk).update(status=MessageStatus.FAILED)
    for message, channel, days in ((fallen_back, "email", 3), (fallen_back, "sms", 1), (failed, "sms", 2)):
        Delivery.objects.create(message=message, contact=contact, channel=channel, provider="sandbox",
                                to_address=contact.address_for(channel), queued_at=now - timedelta(days=days))

    importlib.import_module("channels.migrations.0026_message_said_at").fill_said_at(django_apps, None)

    said_at = dict(Message.objects.values_list("pk", "said_at"))
    assert [said_at[m.pk] for m in (fallen_back, queued, pending, failed)] == [
        now - timedelta(days=1), now - timedelta(days=3), None, now - timedelta(days=2)]


def batch_queries(count: int, now) -> list[str]:
    """The queries dispatch_many makes for `count` messages to as many contacts, each of whom was
    already sent the same intent (dropped) and each of whom has a second message colliding."""
    contacts = Contact.objects.bulk_create(
        [Contact(external_id=f"batch-{count}-{i}", phone=f"+1415557{count:03d}{i:03d}") for i in range(count)])
    said, _ = routing.create_messages([
        Message(contact=c, source=MessageSource.JOURNEY, purpose="informational", intent_key="weekly",
                channel_plan=[{"channel": "sms"}], content=[{"channel": "sms", "text_body": "Tips"}],
                status=MessageStatus.SENT, said_at=now) for c in contacts])
    messages, _ = routing.create_messages([
        Message(contact=c, source=source, purpose="informational", intent_key=key, priority=priority,
                channel_plan=[{"channel": "sms"}], content=[{"channel": "sms", "text_body": "Tips"}])
        for c in contacts for source, key, priority in ((MessageSource.API, "weekly", 0),
                                                        (MessageSource.CAMPAIGN, "offer", 1),
                                                        (MessageSource.JOURNEY, "hello", 0))])
    messages = list(Message.objects.filter(pk__in=[m.pk for m in messages]).select_related("contact"))
    gate.current_rules()  # the gate's rules cached, as in every batch after the first
    with CaptureQueriesContext(connection) as captured:
        routing.dispatch_many(messages, now=now)
    by_status = {}
    for message in Message.objects.filter(pk__in=[m.pk for m in messages]):
        by_status.setdefault((message.status, message.status_reason), set()).add(message.intent_key)
    assert by_status == {(MessageStatus.SUPPRESSED, DUPLICATE_INTENT): {"weekly"},
                         (MessageStatus.QUEUED, "consent:unknown"): {"offer"},
                         (MessageStatus.DEFERRED, COLLISION): {"hello"}}, by_status
    return [query["sql"] for query in captured]


# The arbitration rules, the messages already said, the lock on the contacts (PostgreSQL), the
# gate's rules version and facts, the three status moves (queued, deferred, suppressed), and on
# PostgreSQL the deliveries inserted (the ledger, decisions and audit entries go by COPY).
ARBITRATED_BATCH_QUERIES = {"sqlite": 7, "postgresql": 9}


def counted(queries: list[str]) -> list[str]:
    # SQLite caps the variables of one statement, so its bulk inserts go in chunks; PostgreSQL
    # writes decisions and audit entries by COPY, which is no query here.
    return [sql for sql in queries if connection.vendor == "postgresql" or not sql.startswith("INSERT")]


def test_arbitration_costs_the_same_queries_for_5_messages_and_200(rules, now):
    rules("informational", intent=24 * HOUR, collision=HOUR)

    few, many = batch_queries(5, now), batch_queries(200, now)

    assert len(counted(few)) == len(counted(many)) == ARBITRATED_BATCH_QUERIES[connection.vendor], counted(many)
    # one read of the rules, one of the messages already said
    assert len([sql for sql in many if 'FROM "channels_arbitrationrule"' in sql]) == 1
    assert len([sql for sql in many if 'FROM "channels_message"' in sql and '"intent_key" IN' in sql]) == 1


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the plan is PostgreSQL's")
def test_the_intent_check_reads_the_message_contact_intent_index(contact, rules, now):
    rules("informational", intent=24 * HOUR)
    # a contact with many messages today, few of them with this intent: the index worth reading
    routing.create_messages([
        Message(contact=contact, source=MessageSource.JOURNEY, purpose="informational", intent_key=f"tip:{i}",
                channel_plan=[{"channel": "sms"}], content=[{"channel": "sms", "text_body": "Tip"}],
                status=MessageStatus.SENT, said_at=now) for i in range(3000)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE channels_message")
    first, second = new_message(contact, intent_key="weekly"), new_message(contact, intent_key="weekly")
    routing.dispatch(first, now=now)

    with CaptureQueriesContext(connection) as captured:
        routing.dispatch(second, now=now)

    [said] = [q["sql"] for q in captured if 'FROM "channels_message"' in q["sql"] and '"intent_key" IN' in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {said}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "message_contact_intent" in plan, plan


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL; set DATABASE_URL")
def test_two_concurrent_dispatches_for_one_contact_cannot_both_pass(transactional_db):
    ArbitrationRule.objects.update_or_create(purpose="informational", defaults={"intent_window_seconds": HOUR})
    contact = Contact.objects.create(external_id="racer", phone="+14155550100")
    messages = iter([new_message(contact, source=MessageSource.JOURNEY, intent_key="order:1:shipped"),
                     new_message(contact, source=MessageSource.API, intent_key="order:1:shipped")])
    lock = threading.Lock()

    def dispatch_and_hold():
        with lock:
            message = next(messages)
        with transaction.atomic():
            routing.dispatch_many([Message.objects.select_related("contact").get(pk=message.pk)])
            # Hold the transaction open: without the contact's lock taken before arbitration
            # reads, the other dispatch reads now, before this one's message is committed.
            clock.sleep(0.5)
        return message.pk

    _, errors = run_concurrently(dispatch_and_hold)

    assert not errors, errors
    assert sorted(Message.objects.values_list("status", "status_reason")) == [
        (MessageStatus.QUEUED, "consent:unknown"), (MessageStatus.SUPPRESSED, DUPLICATE_INTENT)]
    assert Delivery.objects.count() == 1
