from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.utils import timezone

from compliance import actions, gate
from omni.models import AuditEntry
from compliance.models import ConsentStatus, SendingPause, SuppressionReason
from contacts.models import Contact

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=dt_timezone.utc)


def facts(**overrides):
    base = dict(channel="sms", purpose="marketing", address="+14155550101", consent_status=ConsentStatus.GRANTED)
    return gate.SendFacts(**{**base, **overrides})


def test_marketing_with_granted_consent_is_allowed():
    verdict = gate.decide(facts(consent_change_id=7), NOW)
    assert verdict.allowed and verdict.reason == "consent:granted" and verdict.consent_change_id == 7


def test_marketing_without_an_opt_in_is_suppressed():
    assert gate.decide(facts(consent_status=ConsentStatus.UNKNOWN), NOW).reason == "no_marketing_consent"


@pytest.mark.parametrize("purpose", ["transactional", "informational"])
def test_non_marketing_needs_no_opt_in_but_respects_an_opt_out(purpose):
    assert gate.decide(facts(purpose=purpose, consent_status=ConsentStatus.UNKNOWN), NOW).allowed
    assert gate.decide(facts(purpose=purpose, consent_status=ConsentStatus.REVOKED), NOW).reason == "opted_out"


def test_suppression_beats_consent():
    verdict = gate.decide(facts(suppression_reasons=("stop",)), NOW)
    assert verdict.outcome == gate.SUPPRESS and verdict.reason == "suppressed:stop"


def test_expired_message_is_not_sent_at_the_exact_expiry():
    assert gate.decide(facts(expires_at=NOW), NOW).reason == "expired"
    assert gate.decide(facts(expires_at=NOW + timedelta(seconds=1)), NOW).allowed


def test_paused_channel_defers_rather_than_drops():
    verdict = gate.decide(facts(channel_paused=True), NOW)
    assert verdict.outcome == gate.DEFER and verdict.until == NOW + gate.PAUSE_RECHECK


def test_paused_contact_still_gets_transactional_messages():
    assert gate.decide(facts(contact_paused=True), NOW).reason == "contact_paused"
    assert gate.decide(facts(contact_paused=True, purpose="transactional"), NOW).allowed


def test_no_address_is_suppressed():
    assert gate.decide(facts(address=""), NOW).reason == "no_address"


@pytest.fixture
def contact(db):
    return Contact.objects.create(external_id="c1", email="ann@example.com", phone="+14155550101")


def test_check_reads_the_current_consent_and_names_the_change_it_relied_on(contact):
    change = actions.record_consent_change(contact, "sms", "marketing", "granted", "form", evidence={"ip": "192.0.2.1"})

    verdict = gate.check(contact, "sms", "marketing", contact.phone, now=NOW)

    assert verdict.allowed and verdict.consent_change_id == change.pk


def test_a_later_opt_out_wins_and_an_older_replayed_opt_in_does_not_overwrite_it(contact):
    actions.record_consent_change(contact, "sms", "marketing", "granted", "form", occurred_at=NOW - timedelta(days=2))
    actions.record_consent_change(contact, "sms", "marketing", "revoked", "keyword", occurred_at=NOW - timedelta(days=1))
    actions.record_consent_change(contact, "sms", "marketing", "granted", "import", occurred_at=NOW - timedelta(days=3))

    assert gate.check(contact, "sms", "marketing", contact.phone, now=NOW).reason == "opted_out"
    assert contact.consent_changes.count() == 3
    assert AuditEntry.objects.filter(action="consent.changed", contact_id=contact.pk).count() == 3


def test_channel_wide_suppression_blocks_every_purpose_and_is_matched_case_insensitively(contact):
    actions.suppress("ANN@example.com ", channel="email", reason=SuppressionReason.HARD_BOUNCE, contact=contact)

    verdict = gate.check(contact, "email", "transactional", "ann@example.com", now=NOW)

    assert verdict.reason == "suppressed:hard_bounce"
    assert gate.check(contact, "sms", "transactional", contact.phone, now=NOW).allowed


def test_suppressing_twice_keeps_one_row_and_one_audit_entry(contact):
    _, first = actions.suppress("ann@example.com", channel="email", reason="complaint", contact=contact)
    _, second = actions.suppress("ann@example.com", channel="email", reason="complaint", contact=contact)

    assert (first, second) == (True, False)
    assert AuditEntry.objects.filter(action="suppression.added").count() == 1


def test_expired_suppression_no_longer_applies(contact):
    actions.suppress("ann@example.com", channel="email", reason="manual", expires_at=NOW - timedelta(hours=1))

    assert gate.check(contact, "email", "transactional", "ann@example.com", now=NOW).allowed


def test_an_operator_pause_on_a_provider_defers_only_that_provider(contact):
    SendingPause.objects.create(channel="sms", provider="twilio", reason="carrier incident")

    assert gate.check(contact, "sms", "transactional", contact.phone, provider="twilio", now=NOW).outcome == gate.DEFER
    assert gate.check(contact, "sms", "transactional", contact.phone, provider="sns", now=NOW).allowed


def test_unknown_values_are_refused_with_a_clear_error(contact):
    with pytest.raises(ValueError, match="Unknown channel"):
        actions.record_consent_change(contact, "fax", "marketing", "granted", "form")
    with pytest.raises(ValueError, match="Unknown suppression reason"):
        actions.suppress("ann@example.com", reason="because")


def test_a_hard_bounce_after_an_expired_suppression_suppresses_again(contact):
    # given a manual suppression that expired an hour ago
    old, _ = actions.suppress("ann@example.com", channel="email", reason="manual",
                              expires_at=timezone.now() - timedelta(hours=1))

    # when the address hard-bounces
    suppression, created = actions.suppress("ann@example.com", channel="email", reason="hard_bounce",
                                            contact=contact, actor_label="provider:ses", detail="hard: General")

    # then the suppression is renewed, for good, and audited
    assert created is True
    assert suppression.pk == old.pk
    suppression.refresh_from_db()
    assert (suppression.reason, suppression.expires_at, suppression.contact) == ("hard_bounce", None, contact)
    entry = AuditEntry.objects.get(action="suppression.renewed")
    assert entry.data["previous"]["reason"] == "manual"
    assert gate.check(contact, "email", "transactional", "ann@example.com").reason == "suppressed:hard_bounce"


def test_a_permanent_suppression_outlasts_an_active_temporary_one(contact):
    actions.suppress("ann@example.com", channel="email", reason="manual", expires_at=timezone.now() + timedelta(days=1))

    _, created = actions.suppress("ann@example.com", channel="email", reason="hard_bounce", contact=contact)

    assert created is True
    assert gate.check(contact, "email", "transactional", "ann@example.com",
                      now=timezone.now() + timedelta(days=2)).reason == "suppressed:hard_bounce"


def test_an_active_suppression_is_not_shortened(contact):
    actions.suppress("ann@example.com", channel="email", reason="complaint", contact=contact)

    _, created = actions.suppress("ann@example.com", channel="email", reason="manual",
                                  expires_at=timezone.now() + timedelta(days=1))

    assert created is False
    assert not AuditEntry.objects.filter(action="suppression.renewed").exists()


def test_an_opt_out_confirmation_passes_the_opt_out_and_the_stop_suppression_only():
    confirming = dict(purpose="transactional", exemption="opt_out_confirmation")

    assert gate.decide(facts(consent_status=ConsentStatus.REVOKED, suppression_reasons=("stop",), **confirming),
                       NOW).allowed
    # never an address that bounced or complained, nor a paused contact or an expired message
    assert gate.decide(facts(suppression_reasons=("stop", "hard_bounce"), **confirming), NOW).reason == \
        "suppressed:hard_bounce"
    assert gate.decide(facts(expires_at=NOW, **confirming), NOW).reason == "expired"
    # and without the exemption the same send is refused
    assert gate.decide(facts(consent_status=ConsentStatus.REVOKED, purpose="transactional"), NOW).reason == "opted_out"
