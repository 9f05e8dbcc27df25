"""What the gate reads from the database for a batch: the contact's zone, the ledger, the rules
(cached, reloaded on change), in a fixed number of queries; what a decision keeps of it, and
replaying a stored decision."""
import hashlib
import json
from datetime import datetime, time, timedelta, timezone as dt_timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from compliance import actions, decisions, gate
from compliance.models import CapAction, Decision, FrequencyCap, QuietHours, SendLedger
from contacts.models import Contact

NOW = datetime(2026, 6, 1, 23, 0, tzinfo=dt_timezone.utc)

pytestmark = pytest.mark.django_db


def contact(index=0, **fields) -> Contact:
    values = {"external_id": f"c{index}", "email": f"c{index}@example.com", "phone": f"+1415555{index:04d}"}
    return Contact.objects.create(**{**values, **fields})


def request(who, channel="sms", purpose="marketing", **fields) -> gate.SendRequest:
    return gate.SendRequest(who, channel, purpose, who.address_for(channel), **fields)


def sent(who, *hours_ago, channel="sms", message_id=1):
    SendLedger.objects.bulk_create([
        SendLedger(contact_id=who.pk, channel=channel, purpose="marketing", message_id=message_id + index,
                   at=NOW - timedelta(hours=hours)) for index, hours in enumerate(hours_ago)])


@pytest.fixture
def every_rule():
    quiet = QuietHours.objects.create(name="Nights", start=time(21), end=time(8))
    capped = FrequencyCap.objects.create(name="Three a day", limit=3, window_seconds=86400)
    return quiet, capped


@pytest.mark.parametrize("fields, zones, source", [
    ({"timezone": "Asia/Kolkata"}, ("Asia/Kolkata",), "profile"),
    ({}, ("America/Los_Angeles",), "phone"),
    ({"phone": ""}, ("Europe/Paris",), "default"),
])
def test_the_contacts_zone_comes_from_the_profile_else_the_phone_else_the_setting(settings, every_rule, fields,
                                                                                   zones, source):
    settings.OMNI_DEFAULT_TIMEZONE = "Europe/Paris"
    who = contact(**fields)

    [facts] = gate.load_facts_many([request(who, channel="email")], NOW)

    assert (facts.zones, facts.zone_source) == (zones, source)


def test_a_batch_with_every_rule_on_costs_the_same_few_queries_whatever_its_size(every_rule,
                                                                                 django_assert_max_num_queries):
    few = [contact(i, timezone="UTC") for i in range(3)]
    many = [contact(i, region="US-CA") for i in range(3, 60)]  # zones from their phones: 16:00 in Los Angeles
    for who in few + many:
        actions.record_consent_change(who, "sms", "marketing", "granted", "form")
        sent(who, 2, 5)
    gate.decide_many([request(few[0])], NOW)  # the rules are loaded once per process

    with CaptureQueriesContext(connection) as small:
        gate.decide_many([request(who) for who in few], NOW)
    with django_assert_max_num_queries(8):
        verdicts = gate.decide_many([request(who) for who in many] * 3, NOW)

    # the version of rules and pauses; consents, suppressions and the ledger in one
    assert len(small) == 2
    assert {(v.outcome, v.reason, v.facts.zone_source) for v in verdicts} == {(gate.ALLOW, "consent:granted", "phone")}
    assert {r["count"] for v in verdicts for r in v.rules if r["rule"] == "frequency_cap"} == {2}


def test_a_changed_rule_is_read_at_the_next_batch(every_rule):
    quiet, capped = every_rule
    who = contact(timezone="UTC")
    assert gate.check(who, "sms", "transactional", who.phone, now=NOW).allowed

    quiet.applies_to_transactional = True
    quiet.save()
    changed = gate.check(who, "sms", "transactional", who.phone, now=NOW)
    rule_id = quiet.pk
    quiet.delete()
    deleted = gate.check(who, "sms", "transactional", who.phone, now=NOW)

    assert changed.reason == "quiet_hours"
    assert [(r["id"], r["version"]) for r in changed.rules] == [(rule_id, 2)]
    assert deleted.allowed


def test_a_message_never_counts_its_own_ledger_row(every_rule):
    _, capped = every_rule
    capped.limit = 1
    capped.save()
    who = contact(timezone="UTC")
    sent(who, 1, message_id=42)
    noon = NOW - timedelta(hours=11)

    assert gate.check(who, "sms", "informational", who.phone, message_id=42, now=noon).allowed
    assert gate.check(who, "sms", "informational", who.phone, message_id=43, now=noon).reason == "frequency_cap"


def test_a_stored_decision_keeps_what_the_gate_read_and_decides_the_same_again(every_rule):
    quiet, capped = every_rule
    capped.action, capped.limit = CapAction.DEFER, 2
    capped.save()
    night = contact(0, timezone="America/New_York")  # 19:00 there: only the cap
    capped_one = contact(1, timezone="Asia/Kolkata")  # 04:30 there: quiet and capped
    free = contact(2, timezone="America/Los_Angeles")
    sent(night, 3, 20)
    sent(capped_one, 1, 2, 3)
    verdicts = gate.decide_many([request(night, "email", "informational"), request(capped_one, "sms", "informational"),
                                 request(free, "sms", "informational", exemption="opt_out_confirmation")], NOW)

    rows = decisions.record([decisions.Ruling(v, message_id=index, contact_id=v.facts.contact_id)
                             for index, v in enumerate(verdicts)], NOW)

    stored = {d.message_id: d for d in Decision.objects.all()}
    assert len(rows) == 3
    inputs = stored[1].inputs
    assert (stored[1].outcome, stored[1].reason) == ("defer", "quiet_hours")
    assert (inputs["zone"], inputs["zone_source"], inputs["local_time"]) == (
        "Asia/Kolkata", "profile", "2026-06-02T04:30:00+05:30")
    assert [(r["rule"], r["id"], r["version"], r["result"]) for r in inputs["rules"]] == [
        ("quiet_hours", quiet.pk, 1, "defer"), ("frequency_cap", capped.pk, 2, "defer")]
    assert inputs["rules"][1]["count"] == 3 and len(inputs["ledger"]) == 3
    assert stored[0].reason == "frequency_cap" and stored[2].inputs["exemption"] == "opt_out_confirmation"
    for decision in stored.values():
        again = gate.decide(decisions.facts_of(decision), decision.decided_at)
        assert (again.outcome, again.reason, again.until) == (decision.outcome, decision.reason, decision.defer_until)


def test_a_decision_digest_is_the_hash_of_its_whole_content_as_canonical_json(every_rule):
    # given decisions whose inputs nest lists, dicts and times (quiet hours, a cap, a ledger)
    who = contact(0, timezone="Asia/Kolkata")
    sent(who, 1, 2, 3)
    verdicts = gate.decide_many([request(who, "sms"), request(who, "email", "informational")], NOW)

    # when they are recorded (their JSON encoded once, for the row and the digest alike)
    rows = decisions.record([decisions.Ruling(v, message_id=7, contact_id=who.pk) for v in verdicts], NOW)

    # then each digest is SHA-256 of every DIGEST_FIELDS value in one canonical JSON list, as
    # sealed decisions have always been hashed, and the stored row still matches it
    assert Decision.DIGEST_FIELDS[-len(Decision.JSON_DIGEST_FIELDS):] == Decision.JSON_DIGEST_FIELDS
    for row in rows:
        content = [str(row["id"]), row["decided_at"].astimezone(dt_timezone.utc).isoformat(),
                   *(row[name] for name in Decision.DIGEST_FIELDS[2:])]
        if row["defer_until"]:
            content[Decision.DIGEST_FIELDS.index("defer_until")] = row["defer_until"].astimezone(dt_timezone.utc).isoformat()
        whole = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
        assert row["digest"] == hashlib.sha256(whole.encode()).hexdigest()
        assert Decision.objects.get(pk=row["id"]).compute_digest() == row["digest"]
    assert {len(row["inputs"]["ledger"]) for row in rows} == {3}


def test_reachability_says_for_every_channel_whether_and_why_not(every_rule):
    who = contact(timezone="UTC")
    actions.record_consent_change(who, "email", "marketing", "granted", "form")

    reach = gate.reachability([who], "marketing", NOW - timedelta(hours=11),
                              channel_facts={(who.pk, "whatsapp"): {"whatsapp_session": False}})[who.pk]

    assert {channel: v.reason for channel, v in reach.items()} == {
        "email": "consent:granted", "sms": "no_marketing_consent", "whatsapp": "no_marketing_consent",
        "rcs": "no_marketing_consent", "push": "no_address"}
    assert reach["whatsapp"].facts.channel_facts == {"whatsapp_session": False}
    at_night = gate.reachability([who], "marketing", NOW)[who.pk]["email"]
    assert (at_night.reason, at_night.until) == ("quiet_hours", NOW.replace(hour=8) + timedelta(days=1))


def test_transactional_sends_count_only_against_caps_that_apply_to_them(every_rule):
    _, capped = every_rule
    who = contact()  # in Los Angeles by the phone: 16:00, outside the quiet hours
    actions.record_consent_change(who, "sms", "marketing", "granted", "form", announce=False)
    sent(who, 2, 5)  # two marketing sends already today
    SendLedger.objects.bulk_create(
        SendLedger(contact_id=who.pk, channel="sms", purpose="transactional", message_id=900 + n, plan_step=0,
                   at=NOW - timedelta(hours=1)) for n in range(5))

    # five receipts do not use up the marketing budget of a cap that leaves transactional alone
    assert gate.check(who, "sms", "marketing", who.phone, now=NOW).allowed

    # and do count once the cap applies to transactional messages too
    capped.applies_to_transactional = True
    capped.save()
    assert gate.check(who, "sms", "marketing", who.phone, now=NOW).reason == "frequency_cap"
