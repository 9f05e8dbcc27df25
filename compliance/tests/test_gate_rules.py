"""The complete gate, as a pure function: every rule runs, suppress beats defer beats allow,
quiet hours read the contact's clock (midnight, half-hour offsets, DST, several zones), caps
count the ledger in a rolling window."""
from datetime import datetime, time, timedelta, timezone as dt_timezone

import pytest

from compliance import gate
from compliance.models import CapAction, ConsentStatus

UTC = dt_timezone.utc


def quiet(start="21:00", end="08:00", rule_id=1, **fields) -> gate.QuietRule:
    values = dict(id=rule_id, version=1, channel="", purpose="", country="", region="",
                  start=time.fromisoformat(start), end=time.fromisoformat(end), applies_to_transactional=False)
    return gate.QuietRule(**{**values, **fields})


def cap(limit=3, hours=24, action=CapAction.DROP, rule_id=1, **fields) -> gate.CapRule:
    values = dict(id=rule_id, version=1, channel="", purpose="", limit=limit, window=timedelta(hours=hours),
                  action=action, applies_to_transactional=False, lifecycle_stages=frozenset())
    return gate.CapRule(**{**values, **fields})


def facts(quiet_hours=(), caps=(), **overrides) -> gate.SendFacts:
    base = dict(channel="sms", purpose="marketing", address="+14155550101", consent_status=ConsentStatus.GRANTED,
                zones=("UTC",), zone_source="profile", lifecycle_stage="customer",
                rules=gate.Rules(quiet_hours=tuple(quiet_hours), caps=tuple(caps)))
    return gate.SendFacts(**{**base, **overrides})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# --- every rule runs ---------------------------------------------------------------------------

def test_every_rule_runs_and_a_suppression_beats_a_deferral():
    now = at("2026-06-01T23:00:00+00:00")
    verdict = gate.decide(facts([quiet()], consent_status=ConsentStatus.UNKNOWN, channel_paused=True), now)

    assert (verdict.outcome, verdict.reason) == (gate.SUPPRESS, "no_marketing_consent")
    assert [(r["rule"], r["result"]) for r in verdict.rules] == [
        ("marketing", "suppress"), ("channel_pause", "defer"), ("quiet_hours", "defer")]


def test_the_reason_is_the_first_deferring_rule_and_until_the_latest_end():
    now = at("2026-06-01T23:00:00+00:00")
    verdict = gate.decide(facts([quiet()], channel_paused=True), now)

    assert (verdict.outcome, verdict.reason) == (gate.DEFER, "channel_paused")
    assert verdict.until == at("2026-06-02T08:00:00+00:00")


def test_among_suppressions_the_reason_keeps_todays_order():
    verdict = gate.decide(facts(suppression_reasons=("stop",), consent_status=ConsentStatus.REVOKED,
                                expires_at=at("2026-01-01T00:00:00+00:00")), at("2026-06-01T12:00:00+00:00"))

    assert verdict.reason == "expired"
    assert [r["reason"] for r in verdict.rules] == ["expired", "suppressed:stop", "opted_out", "no_marketing_consent"]


# --- quiet hours --------------------------------------------------------------------------------

@pytest.mark.parametrize("now, until", [
    # Asia/Kolkata is UTC+05:30: 21:00 there is 15:30 UTC, 08:00 is 02:30 UTC
    ("2026-06-01T15:29:59+00:00", None),
    ("2026-06-01T15:30:00+00:00", "2026-06-02T02:30:00+00:00"),   # the window opens, across midnight
    ("2026-06-01T18:30:00+00:00", "2026-06-02T02:30:00+00:00"),   # local midnight
    ("2026-06-02T02:29:59+00:00", "2026-06-02T02:30:00+00:00"),   # a second before it ends
    ("2026-06-02T02:30:00+00:00", None),                           # the window's end sends
])
def test_a_quiet_window_in_a_half_hour_zone_defers_to_its_local_end(now, until):
    verdict = gate.decide(facts([quiet()], zones=("Asia/Kolkata",)), at(now))

    if until is None:
        assert verdict.allowed
    else:
        assert (verdict.outcome, verdict.reason, verdict.until) == (gate.DEFER, "quiet_hours", at(until))
        assert verdict.zone == "Asia/Kolkata"


@pytest.mark.parametrize("now, until", [
    # New York springs forward on 2026-03-08 (EST -5 to EDT -4): 08:00 that morning is 12:00 UTC
    ("2026-03-08T06:30:00+00:00", "2026-03-08T12:00:00+00:00"),
    # and falls back on 2026-11-01 (EDT -4 to EST -5): 08:00 that morning is 13:00 UTC
    ("2026-11-01T05:30:00+00:00", "2026-11-01T13:00:00+00:00"),
])
def test_a_window_across_a_dst_change_ends_at_the_local_time_of_that_morning(now, until):
    verdict = gate.decide(facts([quiet()], zones=("America/New_York",)), at(now))

    assert (verdict.outcome, verdict.until) == (gate.DEFER, at(until))


def test_a_day_window_that_does_not_cross_midnight():
    rule = quiet("12:00", "14:00")

    assert gate.decide(facts([rule]), at("2026-06-01T11:59:00+00:00")).allowed
    assert gate.decide(facts([rule]), at("2026-06-01T13:00:00+00:00")).until == at("2026-06-01T14:00:00+00:00")
    assert gate.decide(facts([rule]), at("2026-06-01T14:00:00+00:00")).allowed


def test_a_number_in_several_zones_waits_for_the_window_that_ends_latest():
    # 07:30 in Boise (Mountain) is 06:30 in Los Angeles: both quiet, LA's window ends an hour later
    verdict = gate.decide(facts([quiet()], zones=("America/Boise", "America/Los_Angeles"), zone_source="phone"),
                          at("2026-06-01T13:30:00+00:00"))

    assert verdict.until == at("2026-06-01T15:00:00+00:00")
    assert verdict.zone == "America/Los_Angeles"


def test_quiet_in_one_of_several_zones_is_quiet():
    # 21:30 in Boise, 20:30 in Los Angeles: quiet in Boise, then in LA from 21:00 until 08:00 LA
    verdict = gate.decide(facts([quiet()], zones=("America/Boise", "America/Los_Angeles")),
                          at("2026-06-02T03:30:00+00:00"))

    assert verdict.until == at("2026-06-02T15:00:00+00:00")


def test_transactional_messages_pass_quiet_hours_unless_the_rule_says_otherwise():
    now = at("2026-06-01T23:00:00+00:00")

    assert gate.decide(facts([quiet()], purpose="transactional"), now).allowed
    assert gate.decide(facts([quiet(applies_to_transactional=True)], purpose="transactional"), now).outcome == gate.DEFER


def test_a_message_that_expires_before_the_window_ends_is_suppressed_as_expired():
    now = at("2026-06-01T23:00:00+00:00")

    verdict = gate.decide(facts([quiet()], expires_at=at("2026-06-02T07:00:00+00:00")), now)

    assert (verdict.outcome, verdict.reason) == (gate.SUPPRESS, "expired")
    assert gate.decide(facts([quiet()], expires_at=at("2026-06-02T09:00:00+00:00")), now).outcome == gate.DEFER


def test_country_and_region_rules_each_apply_where_they_match():
    country = quiet("21:00", "08:00", rule_id=1, country="US")
    florida = quiet("20:00", "09:00", rule_id=2, region="US-FL")
    rules = [country, florida]
    now = at("2026-06-02T12:30:00+00:00")  # 08:30 in New York

    in_florida = gate.decide(facts(rules, zones=("America/New_York",), country="US", region="US-FL"), now)
    in_new_york = gate.decide(facts(rules, zones=("America/New_York",), country="US", region="US-NY"), now)
    in_canada = gate.decide(facts(rules, zones=("America/Toronto",), country="CA"), at("2026-06-02T02:00:00+00:00"))

    assert (in_florida.outcome, in_florida.until) == (gate.DEFER, at("2026-06-02T13:00:00+00:00"))
    assert [(r["id"], r["result"]) for r in in_florida.rules] == [(1, "pass"), (2, "defer")]
    assert in_new_york.allowed and [r["id"] for r in in_new_york.rules] == [1]
    assert in_canada.allowed and in_canada.rules == ()


# --- frequency caps -------------------------------------------------------------------------------

NOW = at("2026-06-01T12:00:00+00:00")


def sent(*hours_ago, channel="sms", purpose="marketing"):
    return tuple((channel, purpose, NOW - timedelta(hours=h)) for h in hours_ago)


def test_a_cap_exactly_reached_refuses_the_next_send():
    assert gate.decide(facts(caps=[cap(limit=3)], sends=sent(20, 10)), NOW).allowed

    verdict = gate.decide(facts(caps=[cap(limit=3)], sends=sent(20, 10, 1)), NOW)

    assert (verdict.outcome, verdict.reason) == (gate.SUPPRESS, "frequency_cap")
    assert verdict.rules[0] == {"rule": "frequency_cap", "result": "suppress", "reason": "frequency_cap", "id": 1,
                                 "version": 1, "count": 3, "limit": 3, "window_seconds": 86400}


def test_a_send_a_whole_window_ago_no_longer_counts():
    assert gate.decide(facts(caps=[cap(limit=1)], sends=sent(24)), NOW).allowed
    assert not gate.decide(facts(caps=[cap(limit=1)], sends=sent(23.99)), NOW).allowed


def test_a_deferring_cap_waits_until_enough_counted_sends_leave_the_window():
    verdict = gate.decide(facts(caps=[cap(limit=2, action=CapAction.DEFER)], sends=sent(20, 10, 1)), NOW)

    # three counted, two allowed: the second oldest (10 hours ago) must leave
    assert (verdict.outcome, verdict.reason, verdict.until) == (gate.DEFER, "frequency_cap", NOW + timedelta(hours=14))


def test_a_cap_counts_only_sends_in_its_scope():
    sms_cap = cap(limit=1, channel="sms")

    assert gate.decide(facts(caps=[sms_cap], sends=sent(1, channel="email")), NOW).allowed
    assert not gate.decide(facts(caps=[sms_cap], sends=sent(1)), NOW).allowed
    assert gate.decide(facts(caps=[sms_cap], channel="email", address="a@example.com", sends=sent(1)), NOW).allowed


def test_a_cap_for_some_lifecycle_stages_spares_the_others():
    trials = cap(limit=1, lifecycle_stages=frozenset({"trial"}))

    assert gate.decide(facts(caps=[trials], sends=sent(1), lifecycle_stage="customer"), NOW).allowed
    assert not gate.decide(facts(caps=[trials], sends=sent(1), lifecycle_stage="trial"), NOW).allowed


def test_an_opt_out_confirmation_passes_caps_and_quiet_hours_and_says_so():
    confirming = dict(purpose="transactional", exemption="opt_out_confirmation", consent_status=ConsentStatus.REVOKED)
    rules = dict(quiet_hours=[quiet(applies_to_transactional=True)],
                 caps=[cap(limit=1, applies_to_transactional=True)])

    verdict = gate.decide(facts(**rules, **confirming, sends=sent(1, purpose="transactional")),
                          at("2026-06-01T23:00:00+00:00"))

    assert verdict.allowed
    assert [(r["rule"], r["result"]) for r in verdict.rules] == [
        ("consent", "exempt"), ("quiet_hours", "exempt"), ("frequency_cap", "exempt")]
    # without the exemption the same send waits
    assert not gate.decide(facts(**rules, purpose="transactional", sends=sent(1, purpose="transactional")),
                           at("2026-06-01T23:00:00+00:00")).allowed
