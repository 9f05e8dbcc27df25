"""Policy replay over `scale` gate decisions of the last week (compliance/replay.py).

Seeds, by COPY (omni/lib/bulk.py insert_rows), `scale` Decision rows spread evenly over the last
7 days, each the real verdict of gate.decide() on its facts with the rules of the seed (quiet
hours 22:00-07:00 for every channel, a cap of ten an hour that drops) and kept as routing keeps
it (decisions.values): three channels, three purposes, a contact per twenty decisions in one of
four zones, one marketing contact in ten without consent. One row in fifty was written before
the gate kept its inputs, one in thirty-three is an arbitration verdict. Each allowed decision has
its row in the send ledger.

Two proposals are replayed over the week: the quiet hours starting at 19:00, and the cap made
two a day (its window longer than any row kept, so every row's count is read from the ledger,
one query per chunk). The issue's target: `seconds` (the slower of the two) under 60 at 1,000,000
on PostgreSQL.

Figures: `seconds` (n: decisions in the week), `seconds_quiet_hours`, `seconds_cap`,
`decisions_per_s` (of the slower), `queries_per_10000` (of the slower), `seed_seconds`; the notes
carry how many were decided otherwise, not replayable, arbitration and counted from the ledger.
"""
import time as clock
from dataclasses import replace
from datetime import time, timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from . import Figure

CHANNELS = ("sms", "email", "whatsapp")
PURPOSES = ("informational", "marketing", "transactional")
ZONES = ("UTC", "America/New_York", "Europe/Paris", "Asia/Kolkata")
DECISIONS_PER_CONTACT = 20
SEED_BATCH = 50_000
DAYS = 7


def seed(scale: int, now) -> tuple:
    """The rules and `scale` decisions of the week before `now`, with their ledger. Returns the rules."""
    from compliance import decisions, gate
    from compliance.models import CapAction, Decision, FrequencyCap, QuietHours, SendLedger
    from compliance.decisions import ROW_FIELDS
    from compliance.ledger import FIELDS as LEDGER_FIELDS
    from omni.lib.bulk import insert_rows

    quiet = QuietHours.objects.create(name="bench nights", start=time(22), end=time(7))
    cap = FrequencyCap.objects.create(name="bench ten an hour", limit=10, window_seconds=3600,
                                      action=CapAction.DROP)
    rules = gate.current_rules()
    since = now - timedelta(days=DAYS)
    step = timedelta(days=DAYS) / scale
    contacts = max(scale // DECISIONS_PER_CONTACT, 1)
    base_message = 10**9  # message ids of their own, apart from any other benchmark's
    rows, ledger = [], []

    def flush():
        insert_rows(Decision, ROW_FIELDS, rows)
        insert_rows(SendLedger, LEDGER_FIELDS, ledger)
        rows.clear()
        ledger.clear()

    for i in range(scale):
        at = since + step * i + step / 2
        contact_id = 1 + i % contacts
        channel, purpose = CHANNELS[i % 3], PURPOSES[(i // 3) % 3]
        consent = "unknown" if purpose == "marketing" and i % 10 == 5 else (
            "granted" if purpose == "marketing" else "unknown")
        facts = gate.SendFacts(channel=channel, purpose=purpose, address="bench", consent_status=consent,
                               contact_id=contact_id, zones=(ZONES[contact_id % 4],), zone_source="profile",
                               lifecycle_stage="customer", rules=rules)
        message_id = base_message + i
        if i % 33 == 1:
            displaced = replace(facts, arbitration={"rule": 1, "kind": "duplicate_intent",
                                                    "displaced_by": message_id - 1})
            verdict = gate.Verdict(gate.SUPPRESS, "arbitration:duplicate_intent", facts=displaced,
                                   rules=({"rule": "arbitration", "result": "suppress",
                                           "reason": "arbitration:duplicate_intent", "id": 1, "version": 1,
                                           "displaced_by": message_id - 1},))
        else:
            verdict = gate.decide(facts, at)
        values = decisions.values(decisions.Ruling(verdict, message_id, contact_id), at)
        if i % 50 == 0:
            values["inputs"] = {}  # written before the gate kept its inputs
            values["digest"] = Decision.digest_of(values)
        rows.append(tuple(values[name] for name in ROW_FIELDS))
        if verdict.allowed:
            ledger.append((contact_id, channel, purpose, message_id, 0, at))
        if len(rows) == SEED_BATCH:
            flush()
    flush()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE" if connection.in_atomic_block else "VACUUM ANALYZE")
    return quiet, cap, since


def measure(scale: int, log=lambda line: None) -> list[Figure]:
    from compliance import replay

    now = timezone.now().replace(microsecond=0)
    started = clock.perf_counter()
    quiet, cap, since = seed(scale, now)
    seeded = clock.perf_counter() - started
    log(f"policy_replay: seeded {scale} decisions in {seeded:.1f} s")

    quiet.start = time(19)
    cap.limit, cap.window_seconds = 2, 86400
    timings = {}
    for name, proposal in (("quiet_hours", replay.proposal_of(quiet, replay.CHANGE)),
                           ("cap", replay.proposal_of(cap, replay.CHANGE))):
        with CaptureQueriesContext(connection) as captured:
            started = clock.perf_counter()
            result = replay.replay(proposal, since, now + timedelta(seconds=1))
            timings[name] = (clock.perf_counter() - started, len(captured), result)
        log(f"policy_replay: {name} replayed {result['replayed']} in {timings[name][0]:.1f} s, "
            f"{len(captured)} queries; {result['changed']} decided otherwise")
    slower = max(timings, key=lambda name: timings[name][0])
    seconds, queries, result = timings[slower]
    decided = result["total"] + sum(row["count"] for row in result["outside_scope"] + result["arbitration"])

    def notes_of(name):
        _, queries, result = timings[name]
        arbitration = sum(row["count"] for row in result["arbitration"])
        outside = sum(row["count"] for row in result["outside_scope"])
        return (f"vendor {connection.vendor}; replayed {result['replayed']}, decided otherwise {result['changed']}, "
                f"not replayable {result['not_replayable']}, arbitration as it was {arbitration}, outside the rule "
                f"{outside}, counted from the ledger {result['from_ledger']}; {queries} queries")

    return [
        Figure("policy_replay", "seconds", seconds, "s", decided, notes=f"the slower: {slower}; {notes_of(slower)}"),
        Figure("policy_replay", "seconds_quiet_hours", timings["quiet_hours"][0], "s", decided,
               notes=notes_of("quiet_hours")),
        Figure("policy_replay", "seconds_cap", timings["cap"][0], "s", decided, notes=notes_of("cap")),
        Figure("policy_replay", "decisions_per_s", decided / seconds if seconds else 0.0, "decisions/s", decided),
        Figure("policy_replay", "queries_per_10000", 10000 * queries / max(decided, 1), "queries", decided),
        Figure("policy_replay", "seed_seconds", seeded, "s", scale),
    ]


def run(scale: int, *, figures, log) -> list[Figure]:
    return measure(scale, log=log)
