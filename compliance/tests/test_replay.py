"""Policy replay: last week's gate decisions decided again with a proposed change to a quiet-hours
rule or a frequency cap; what changes, counted per channel and purpose, in a few queries per
chunk of decisions. Nothing is written but the run."""
from datetime import time, timedelta

import pytest
from django.utils import timezone

from compliance import actions, decisions, gate, replay
from compliance.tasks import start_replay
from compliance.ledger import Send, record as record_sends
from compliance.models import CapAction, Decision, FrequencyCap, QuietHours, ReplayRun, ReplayStatus, SendLedger
from contacts.models import Contact
from omni.choices import Exemption

pytestmark = pytest.mark.django_db

# Yesterday at 20:00 UTC: inside the replayed week, with room on both sides.
EVENING = (timezone.now() - timedelta(days=1)).replace(hour=20, minute=0, second=0, microsecond=0)


def week():
    until = timezone.now()
    return until - timedelta(days=7), until


def contact(index=0, **fields) -> Contact:
    values = {"external_id": f"r{index}", "email": f"r{index}@example.com", "phone": f"+1415555{index:04d}",
              "timezone": "UTC"}
    return Contact.objects.create(**{**values, **fields})


def decided(who, at, channel="sms", purpose="informational", message_id=None, **fields) -> gate.Verdict:
    """The gate's verdict on one send at `at`, kept as a Decision row as routing keeps it."""
    verdict = gate.check(who, channel, purpose, who.address_for(channel), now=at, message_id=message_id, **fields)
    decisions.record([decisions.Ruling(verdict, message_id, who.pk)], at)
    return verdict


def changed(rule, **fields) -> replay.Proposal:
    for name, value in fields.items():
        setattr(rule, name, value)
    return replay.proposal_of(rule, replay.CHANGE)


def by_scope(result, channel, purpose) -> dict:
    return next(row for row in result["per_scope"] if (row["channel"], row["purpose"]) == (channel, purpose))


def test_a_tightened_quiet_hours_window_turns_allowed_into_deferred():
    # given nights quiet from 22:00, and an SMS at 20:00, one at 23:00 and one at noon
    rule = QuietHours.objects.create(name="Nights", start=time(22), end=time(7))
    who = contact()
    at_eight = decided(who, EVENING, message_id=1)
    decided(who, EVENING + timedelta(hours=3), message_id=2)
    decided(who, EVENING - timedelta(hours=8), message_id=3)
    assert at_eight.outcome == gate.ALLOW

    # when the window is proposed to start at 19:00
    result = replay.replay(changed(rule, start=time(19)), *week())

    # then the 20:00 send would have been deferred, to 07:00 the next morning
    assert (result["replayed"], result["changed"], result["recorded_differs"]) == (3, 1, 0)
    sms = by_scope(result, "sms", "informational")
    assert sms["before"] == {"allow": 2, "defer": 1, "suppress": 0}
    assert sms["after"] == {"allow": 1, "defer": 2, "suppress": 0}
    assert sms["difference"] == {"allow": -1, "defer": 1, "suppress": 0}
    [change] = result["changes"]
    assert (change["before"], change["after"], change["count"]) == ("allow", "defer", 1)
    [example] = change["examples"]
    assert example["message_id"] == 1 and example["after"] == "quiet_hours"
    assert example["until"] == (EVENING + timedelta(hours=11)).isoformat()
    # nothing was written: the rule is as it was, and no decision was added
    rule.refresh_from_db()
    assert (rule.start, rule.version, Decision.objects.count()) == (time(22), 1, 3)


@pytest.mark.parametrize("action, outcome", [(CapAction.DROP, "suppress"), (CapAction.DEFER, "defer")])
def test_a_tightened_cap_is_counted_from_the_send_ledger_at_the_decisions_time(action, outcome):
    # given a cap of ten an hour, and a contact sent three messages five hours or so before an SMS
    cap = FrequencyCap.objects.create(name="Ten an hour", limit=10, window_seconds=3600)
    who = contact()
    record_sends([Send(who.pk, channel, "informational", 100 + index, 0, EVENING - timedelta(hours=hours))
                  for index, (channel, hours) in enumerate([("sms", 6), ("email", 5), ("sms", 4)])])
    # (its own row, and sends after it, never count against it)
    record_sends([Send(who.pk, "sms", "informational", 1, 0, EVENING - timedelta(minutes=30)),
                  Send(who.pk, "sms", "informational", 99, 0, EVENING + timedelta(minutes=30))])
    assert decided(who, EVENING, message_id=1).outcome == gate.ALLOW
    # the hour it kept held none of the earlier three (the gate reads no end: nothing is sent later than now)
    later = (EVENING + timedelta(minutes=30)).isoformat()
    assert Decision.objects.get().inputs["ledger"] == [["sms", "informational", later]]

    # when two a day is proposed
    result = replay.replay(changed(cap, limit=2, window_seconds=86400, action=action), *week())

    # then the day's sends, read from the ledger, drop or defer it
    assert (result["from_ledger"], result["changed"]) == (1, 1)
    [change] = result["changes"]
    assert (change["before"], change["after"]) == ("allow", outcome)
    assert change["examples"][0]["after"] == "frequency_cap"
    if action == CapAction.DEFER:
        # until the second oldest of the three leaves the day's window
        assert change["examples"][0]["until"] == (EVENING - timedelta(hours=5) + timedelta(days=1)).isoformat()


def test_a_replay_with_no_change_shows_no_difference_and_decides_as_recorded():
    # given a week of verdicts of every kind under quiet hours and a cap
    quiet = QuietHours.objects.create(name="Nights", start=time(22), end=time(7))
    cap = FrequencyCap.objects.create(name="One an hour", limit=1, window_seconds=3600, action=CapAction.DEFER)
    people = [contact(index) for index in range(4)]
    actions.record_consent_change(people[1], "sms", "marketing", "revoked", "api")
    actions.record_consent_change(people[2], "sms", "marketing", "granted", "api")
    record_sends([Send(people[0].pk, "sms", "informational", 50, 0, EVENING - timedelta(minutes=20))])
    verdicts = [
        decided(people[0], EVENING, message_id=1),                                  # capped: deferred
        decided(people[3], EVENING, message_id=2),                                  # allowed
        decided(people[3], EVENING + timedelta(hours=3), message_id=3),             # quiet: deferred
        decided(people[1], EVENING, purpose="marketing", message_id=4),             # opted out
        decided(people[2], EVENING, purpose="marketing", message_id=5,              # a conversation holds it
                conversations=((7, None),)),
        decided(people[3], EVENING + timedelta(hours=3), message_id=6,              # an agent's reply: exempt
                exemption=Exemption.CONVERSATIONAL_REPLY),
        decided(people[3], EVENING, channel="email", message_id=7,                  # expired
                expires_at=EVENING - timedelta(minutes=1)),
    ]
    assert [v.reason for v in verdicts] == ["frequency_cap", "consent:unknown", "quiet_hours", "opted_out",
                                            "conversation_open:7", "consent:unknown", "expired"]

    for proposal in (replay.proposal_of(quiet, replay.CHANGE), replay.proposal_of(cap, replay.CHANGE)):
        result = replay.replay(proposal, *week())

        # then every decision is decided as it was recorded, and the change changes nothing
        assert (result["changed"], result["changes"], result["recorded_differs"]) == (0, [], 0)
        assert all(set(row["difference"].values()) == {0} for row in result["per_scope"])
    assert result["replayed"] == 7


def test_rows_without_the_facts_a_change_needs_are_counted_as_not_replayable():
    # given a row from before the gate kept its inputs, and one decided when no quiet hours applied
    who = contact()
    Decision.objects.create(decided_at=EVENING, contact_id=who.pk, channel="sms", purpose="informational",
                            outcome="allow", reason="consent:unknown", consent_status="unknown", inputs={})
    decided(who, EVENING, message_id=2)

    # when a quiet-hours rule is proposed
    proposal = replay.proposal_of(QuietHours(name="Evenings", start=time(19), end=time(7)), replay.ADD)
    result = replay.replay(proposal, *week())

    # then neither is replayed, and the page can say why
    assert result["not_replayable"] == {"no_inputs": 1, "no_clock": 1}
    assert (result["replayed"], result["total"]) == (0, 2)


def test_arbitration_verdicts_are_shown_as_they_were():
    # given quiet hours deferring a send, and a send arbitration displaced at the same hour
    rule = QuietHours.objects.create(name="Nights", start=time(22), end=time(7))
    who = contact()
    late = EVENING + timedelta(hours=3)
    decided(who, late, message_id=1)
    facts = gate.SendFacts(channel="sms", purpose="informational", address=who.phone, contact_id=who.pk,
                           arbitration={"rule": 3, "kind": "duplicate_intent", "displaced_by": 1})
    displaced = gate.Verdict(gate.SUPPRESS, "arbitration:duplicate_intent", facts=facts,
                             rules=({"rule": "arbitration", "result": "suppress",
                                     "reason": "arbitration:duplicate_intent", "id": 3, "version": 1,
                                     "displaced_by": 1},))
    decisions.record([decisions.Ruling(displaced, 2, who.pk)], late)

    # when the quiet hours are proposed deleted
    result = replay.replay(replay.proposal_of(rule, replay.DELETE), *week())

    # then the gate's deferral would have been allowed, the arbitration verdict stands as it was
    assert [(c["before"], c["after"], c["count"]) for c in result["changes"]] == [("defer", "allow", 1)]
    assert result["arbitration"] == [{"channel": "sms", "purpose": "informational", "outcome": "suppress",
                                      "count": 1}]
    assert result["replayed"] == 1


def test_a_change_to_email_rules_leaves_other_channels_undecided_and_counted():
    rule = QuietHours.objects.create(name="Email nights", channel="email", start=time(22), end=time(7))
    who = contact()
    decided(who, EVENING, channel="email", message_id=1)
    decided(who, EVENING, channel="sms", message_id=2)

    result = replay.replay(changed(rule, start=time(19)), *week())

    assert result["replayed"] == 1 and result["changed"] == 1
    assert result["outside_scope"] == [{"channel": "sms", "purpose": "informational", "count": 1}]


def test_a_replay_reads_decisions_and_the_ledger_in_a_few_queries_per_chunk(monkeypatch,
                                                                              django_assert_max_num_queries):
    cap = FrequencyCap.objects.create(name="Ten an hour", limit=10, window_seconds=3600)
    people = [contact(index) for index in range(40)]
    record_sends([Send(who.pk, "sms", "informational", 1000 + who.pk, 0, EVENING - timedelta(hours=3))
                  for who in people])
    for index, who in enumerate(people):
        # four at each instant, as a batch decides them: chunks end inside a second, none is read twice
        decided(who, EVENING + timedelta(seconds=index // 4), message_id=index + 1)
    monkeypatch.setattr(replay, "CHUNK", 15)
    proposal = changed(cap, limit=1, window_seconds=86400)
    gate.current_rules()

    # 3 chunks of decisions, each with one ledger query; a count, two grouped counts, the rules' version
    with django_assert_max_num_queries(11):
        result = replay.replay(proposal, *week())

    assert (result["replayed"], result["from_ledger"], result["changed"]) == (40, 40, 40)


def test_a_run_started_for_a_proposal_is_replayed_by_its_task(eager_celery, django_capture_on_commit_callbacks,
                                                               admin_user):
    rule = QuietHours.objects.create(name="Nights", start=time(22), end=time(7))
    decided(contact(), EVENING, message_id=1)

    with django_capture_on_commit_callbacks(execute=True):
        run = start_replay(changed(rule, start=time(19)), actor=admin_user, form_data={"start": ["19:00"]})

    run.refresh_from_db()
    assert (run.status, run.total, run.done, run.result["changed"]) == (ReplayStatus.DONE, 1, 1, 1)
    assert run.proposal["form_data"] == {"start": ["19:00"]}
    assert run.since == run.until - timedelta(days=7) and run.finished_at
    # the task claims a run once: a second delivery leaves it alone
    replay.run_replay(run.pk)
    assert ReplayRun.objects.get().status == ReplayStatus.DONE
    assert SendLedger.objects.count() == 0
