"""Edges of the gate and of what feeds it: a quiet window ending in the hour a DST change repeats,
keywords in a language whose capital letters fold to more than one character, and a replayed
double opt-in grant older than the contact's newer choice."""
from datetime import datetime, time, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo

import pytest

from channels.models import Message
from compliance import gate
from compliance.actions import record_consent_change
from compliance.keywords import read_keyword
from compliance.models import Consent, ConsentStatus
from contacts.models import Contact

UTC = dt_timezone.utc
NEW_YORK = ZoneInfo("America/New_York")


def quiet(start: str, end: str) -> gate.QuietRule:
    return gate.QuietRule(id=1, version=1, channel="", purpose="", country="", region="",
                          start=time.fromisoformat(start), end=time.fromisoformat(end), applies_to_transactional=False)


# --- quiet hours: the hour a DST change repeats -----------------------------------------------

def test_a_quiet_window_ending_in_the_repeated_hour_never_defers_into_the_past():
    # given a window 22:00-01:30 in New York, and the night clocks go back from 02:00 EDT to
    # 01:00 EST (2025-11-02): 01:15 EST is 06:15 UTC, after 01:30 EDT (05:30 UTC)
    rule = quiet("22:00", "01:30")
    facts = gate.SendFacts(channel="sms", purpose="marketing", address="+12125550100",
                           consent_status=ConsentStatus.GRANTED, zones=("America/New_York",), zone_source="profile",
                           rules=gate.Rules(quiet_hours=(rule,)))
    now = datetime(2025, 11, 2, 6, 15, tzinfo=UTC)

    # when
    verdict = gate.decide(facts, now)

    # then the message waits until 01:30 on the clock it is read on, which is still ahead
    assert verdict.outcome == gate.DEFER
    assert verdict.until > now
    assert verdict.until == datetime(2025, 11, 2, 1, 30, fold=1, tzinfo=NEW_YORK).astimezone(UTC)


# --- keywords: case folding that adds a combining mark ----------------------------------------

@pytest.mark.parametrize("body, listed", [("İPTAL", "IPTAL"), ("IPTAL", "İPTAL"), ("iptal", "İPTAL"),
                                          ("İptal", "iptal")])
def test_a_turkish_opt_out_is_read_in_any_case(body, listed):
    # A Turkish keyboard types the capital of i as İ; casefold() makes it i plus a combining dot.
    lists = {"stop": ["STOP", listed], "start": ["START"], "help": ["HELP"]}

    assert read_keyword(body, lists).keyword == "stop"
    assert read_keyword(f"lütfen {body.lower()} bitte", lists).opts_out


def test_a_hindi_word_keeps_its_vowel_signs_so_another_word_is_no_opt_out():
    # बंद ("stop") read without its marks was ब द, and so was the start of बुद्ध ("Buddha").
    lists = {"stop": ["STOP", "बंद"], "start": ["START"], "help": ["HELP"]}

    assert read_keyword("बंद", lists).keyword == "stop"
    assert read_keyword("कृपया बंद करो", lists).opts_out
    assert read_keyword("बुद्ध पूर्णिमा की शुभकामनाएं", lists).keyword == ""


# --- double opt-in: a replayed grant older than the current choice ----------------------------

def test_a_grant_older_than_a_later_opt_out_asks_no_confirmation(db, double_opt_in):
    # given a contact who unsubscribed yesterday
    contact = Contact.objects.create(external_id="ann", email="ann@example.com")
    now = datetime.now(UTC)
    record_consent_change(contact, "email", "marketing", "revoked", "unsubscribe_link",
                          occurred_at=now - timedelta(days=1))

    # when a sign-up from last week arrives late (an API client replaying its queue)
    change = record_consent_change(contact, "email", "marketing", "granted", "api",
                                   occurred_at=now - timedelta(days=7))

    # then it joins the history, the opt-out stands, and no "please confirm" email is sent for a
    # grant that its link could never confirm
    assert change.status == "pending"
    assert Consent.objects.get(contact=contact, channel="email", purpose="marketing").status == "revoked"
    assert not Message.objects.filter(contact=contact, idempotency_key__startswith="double_opt_in:").exists()


def test_a_batch_grant_older_than_a_later_opt_out_asks_no_confirmation(db, double_opt_in):
    from compliance.actions import record_consent_changes_many

    contact = Contact.objects.create(external_id="ann", email="ann@example.com")
    now = datetime.now(UTC)
    record_consent_change(contact, "email", "marketing", "revoked", "unsubscribe_link",
                          occurred_at=now - timedelta(days=1))

    record_consent_changes_many([{"contact_id": contact.pk, "channel": "email", "purpose": "marketing",
                                  "status": "granted", "occurred_at": now - timedelta(days=7)}], source="api")

    assert Consent.objects.get(contact=contact, channel="email", purpose="marketing").status == "revoked"
    assert not Message.objects.filter(contact=contact, idempotency_key__startswith="double_opt_in:").exists()
