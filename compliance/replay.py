"""Policy replay: the gate's recent decisions decided again with a proposed change to a
quiet-hours rule or a frequency cap, so compliance staff see, before they save it, who would
have been allowed, deferred or dropped. It writes and sends nothing but its ReplayRun's progress
and result.

- The decisions of the last settings.OMNI_REPLAY_DAYS days are read in chunks (keyset on
  decided_at, id), never one query per decision.
- Each gate decision is rebuilt by decisions.facts_of() and decided by the pure gate.decide() at
  its own time twice: under the rules in force now and under the same rules with the change. The
  difference between the two is the change's own (a rule changed last week does not show as this
  change). How many of them the rules now decide otherwise than they were recorded is counted too.
- A decision the change cannot touch (outside the channel and purpose of the rule, as it is and as
  proposed) is counted by a grouped query, not decided.
- Arbitration verdicts (channels took the message out before the gate was asked) are shown as they
  were: counted, never re-decided.
- Rows written before the gate kept its inputs, and rows without a fact the change needs (the
  contact's clock for quiet hours, kept only when some quiet hours applied; the lifecycle stage
  for a cap by stage) are not replayable: counted apart, by why.
- A cap window longer than the ledger a row kept is counted from the send ledger, at the
  decision's time: one query per chunk for the chunk's contacts.
- Each decision replays alone: what a deferral would have done later (the send at the window's
  end, its place in the ledger) is not simulated.
"""
import bisect
from collections import Counter, defaultdict, namedtuple
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import BigIntegerField, Count, Func, Q
from django.utils import timezone

from omni.choices import Purpose
from omni.lib.bulk import filter_in
from omni.lib.collector import collector_paused

from .decisions import facts_of
from .gate import CapRule, QuietRule, Rules, current_rules, decide
from .models import Decision, FrequencyCap, QuietHours, ReplayRun, ReplayStatus, SendLedger

QUIET_HOURS = QuietHours._meta.label_lower
FREQUENCY_CAP = FrequencyCap._meta.label_lower
RULE_FIELDS = {
    QUIET_HOURS: ("name", "channel", "purpose", "country", "region", "start", "end", "applies_to_transactional",
                  "active"),
    FREQUENCY_CAP: ("name", "channel", "purpose", "limit", "window_seconds", "action", "lifecycle_stages",
                    "applies_to_transactional", "active"),
}
ADD, CHANGE, DELETE = "add", "change", "delete"

# Decisions read per query. Each chunk's contacts go into one `contact_id IN (...)` of the ledger
# query, which SQLite takes up to 32,766 parameters.
CHUNK = 5000
# Examples kept for each kind of change (per channel, purpose, outcome before and after).
EXAMPLES = 5
ARBITRATION_PREFIX = "arbitration:"
# Why a decision could not be replayed, in words for the page.
NOT_REPLAYABLE = {
    "no_inputs": "written before the gate kept its inputs",
    "no_clock": "the contact's clock was not kept (no quiet hours applied then)",
    "no_lifecycle_stage": "the contact's lifecycle stage was not kept (no cap applied then)",
}
OUTCOMES = ("allow", "defer", "suppress")


def replays(model) -> bool:
    """Whether a change to rows of `model` is previewed by a replay."""
    return model._meta.label_lower in RULE_FIELDS


@dataclass(frozen=True)
class Proposal:
    """A rule added, changed or deleted: its model's label, its id (None when added), its version
    now, and its fields as they would be saved (JSON: times as HH:MM:SS)."""

    model: str
    action: str
    rule_id: int | None = None
    version: int = 0
    fields: dict = field(default_factory=dict)

    def as_data(self) -> dict:
        return {"model": self.model, "action": self.action, "rule_id": self.rule_id, "version": self.version,
                "fields": self.fields}

    @classmethod
    def from_data(cls, data: dict) -> "Proposal":
        if data.get("model") not in RULE_FIELDS or data.get("action") not in (ADD, CHANGE, DELETE):
            raise ValueError(f"not a replayable proposal: {data.get('model')!r} {data.get('action')!r}")
        return cls(data["model"], data["action"], data.get("rule_id"), data.get("version") or 0,
                   dict(data.get("fields") or {}))

    @property
    def is_quiet_hours(self) -> bool:
        return self.model == QUIET_HOURS


def proposal_of(rule, action: str) -> Proposal:
    """The proposal of saving (ADD, CHANGE) or deleting `rule`, a QuietHours or FrequencyCap
    instance holding the values proposed (a valid form's instance, not saved)."""
    model = rule._meta.label_lower
    fields = {}
    for name in RULE_FIELDS[model]:
        value = getattr(rule, name)
        fields[name] = value.isoformat() if isinstance(value, time) else value
    return Proposal(model, action, None if action == ADD else rule.pk, rule.version or 0, fields)


def _rule_of(proposal: Proposal) -> QuietRule | CapRule | None:
    """The proposed rule as the gate reads it; None when deleted or made inactive."""
    f = proposal.fields
    if proposal.action == DELETE or not f.get("active", True):
        return None
    # A new rule has no id yet: 0 stands for it in the replayed rule results.
    rule_id, version = proposal.rule_id or 0, proposal.version + 1 if proposal.rule_id else 1
    if proposal.is_quiet_hours:
        return QuietRule(rule_id, version, f["channel"], f["purpose"], (f["country"] or "").upper(),
                         (f["region"] or "").upper(), time.fromisoformat(f["start"]), time.fromisoformat(f["end"]),
                         bool(f["applies_to_transactional"]))
    return CapRule(rule_id, version, f["channel"], f["purpose"], int(f["limit"]),
                   timedelta(seconds=int(f["window_seconds"])), f["action"], bool(f["applies_to_transactional"]),
                   frozenset(f.get("lifecycle_stages") or ()))


def proposed_rules(current: Rules, proposal: Proposal) -> tuple[Rules, object, object]:
    """(the rules with the change, the rule as it is in force now or None, as proposed or None)."""
    kind = "quiet_hours" if proposal.is_quiet_hours else "caps"
    rows = list(getattr(current, kind))
    old = next((rule for rule in rows if proposal.rule_id and rule.id == proposal.rule_id), None)
    new = _rule_of(proposal)
    if old is not None:
        rows = [new if rule is old else rule for rule in rows if rule is not old or new is not None]
    elif new is not None:
        rows.append(new)
    return replace(current, **{kind: tuple(rows)}), old, new


def _scope(rules) -> Q:
    """The decisions any of `rules` may apply to (by channel and purpose)."""
    scope = Q(pk__in=[])
    for rule in rules:
        part = Q()
        if rule.channel:
            part &= Q(channel=rule.channel)
        if rule.purpose:
            part &= Q(purpose=rule.purpose)
        if not rule.applies_to_transactional:
            part &= ~Q(purpose=Purpose.TRANSACTIONAL)
        scope |= part
    return scope


@dataclass
class Tally:
    """What a replay found, built up chunk by chunk."""

    before: Counter = field(default_factory=Counter)   # (channel, purpose, outcome) under the rules now
    after: Counter = field(default_factory=Counter)    # the same with the change
    changes: Counter = field(default_factory=Counter)  # (channel, purpose, before, after) where they differ
    examples: dict = field(default_factory=lambda: defaultdict(list))
    not_replayable: Counter = field(default_factory=Counter)
    recorded_differs: int = 0
    from_ledger: int = 0
    replayed: int = 0

    @property
    def done(self) -> int:
        return self.replayed + sum(self.not_replayable.values())

    @property
    def changed(self) -> int:
        return sum(self.changes.values())

    def progress(self) -> dict:
        return {"unchanged": self.replayed - self.changed, "changed": self.changed,
                "not_replayable": sum(self.not_replayable.values())}


def replay(proposal: Proposal, since: datetime, until: datetime, *, rules: Rules | None = None,
           on_progress=lambda total, tally: None) -> dict:
    """Decide again every gate decision of [since, until) under `rules` (the rules in force now)
    and under them with `proposal`; return what changed, as JSON (see ReplayRun.result).
    `on_progress(total, tally)` is called after each chunk."""
    current = rules or current_rules()
    proposed, old, new = proposed_rules(current, proposal)
    touched = [rule for rule in (old, new) if rule is not None]
    window = Decision.objects.filter(decided_at__gte=since, decided_at__lt=until)
    gate_rows = window.exclude(reason__startswith=ARBITRATION_PREFIX)
    in_scope = gate_rows.filter(_scope(touched))
    arbitration = _grouped(window.filter(reason__startswith=ARBITRATION_PREFIX), with_outcome=True)
    outside = _grouped(gate_rows.exclude(_scope(touched)))
    total = in_scope.count()

    needs_clock = proposal.is_quiet_hours
    needs_stage = not needs_clock and any(rule.lifecycle_stages for rule in touched)
    # A row's kept ledger is used when it covers the changed cap's window; else the ledger is
    # read, as far back as the longest cap window of either set of rules.
    cap_window = max((rule.window for rule in touched), default=timedelta(0)) if not needs_clock else None
    ledger_window = max(current.longest_cap_window, proposed.longest_cap_window)

    tally = Tally()
    on_progress(total, tally)
    chunks = _chunks(in_scope)
    while True:
        # A chunk makes tens of thousands of short-lived objects; collecting cycles among them as
        # they came walked the whole heap again and again, a third of the replay's time.
        with collector_paused():
            chunk = next(chunks, None)
            if chunk is None:
                break
            sends = _ledger_sends(chunk, cap_window, ledger_window) if cap_window else {}
            for row in chunk:
                inputs = row.inputs or {}
                if "rules" not in inputs:
                    tally.not_replayable["no_inputs"] += 1
                    continue
                if needs_clock and "zones" not in inputs:
                    tally.not_replayable["no_clock"] += 1
                    continue
                if needs_stage and "lifecycle_stage" not in inputs:
                    tally.not_replayable["no_lifecycle_stage"] += 1
                    continue
                kept = sends.get(row.id)
                facts = facts_of(row, current, sends=kept)
                tally.from_ledger += kept is not None
                before = decide(facts, row.decided_at)
                # A rule that applies to the send neither as it is nor as proposed leaves its verdict alone.
                touches = any(rule.matches(facts) for rule in touched)
                after = decide(facts, row.decided_at, proposed) if touches else before
                _count(tally, row, before, after)
        on_progress(total, tally)
    return _result(proposal, tally, total, arbitration, outside, since, until)


def _count(tally: Tally, row, before, after) -> None:
    tally.replayed += 1
    scope = (row.channel, row.purpose)
    tally.before[(*scope, before.outcome)] += 1
    tally.after[(*scope, after.outcome)] += 1
    if before.outcome != row.outcome:
        tally.recorded_differs += 1
    if before.outcome != after.outcome or before.reason != after.reason:
        key = (*scope, before.outcome, after.outcome)
        tally.changes[key] += 1
        if len(tally.examples[key]) < EXAMPLES:
            tally.examples[key].append({
                "id": str(row.id), "decided_at": row.decided_at.isoformat(), "message_id": row.message_id,
                "before": before.reason, "after": after.reason,
                "until": after.until.isoformat() if after.until else None})


ROW_FIELDS = ("id", "decided_at", "message_id", "contact_id", "channel", "purpose", "outcome", "consent_status",
              "consent_change_id", "suppressions", "inputs")
_Row = namedtuple("_Row", ROW_FIELDS)


def _chunks(queryset):
    """The decisions of `queryset` in (decided_at, id) order, CHUNK at a time, each chunk one
    query starting after the last row of the one before (keyset: no OFFSET, no long cursor)."""
    ordered = queryset.order_by("decided_at", "id")
    if connection.vendor == "postgresql":
        # The time as microseconds, made a datetime here: psycopg's own reading of a timestamp
        # cost a sixth of the replay.
        fields = [name if name != "decided_at" else "decided_us" for name in ROW_FIELDS]
        ordered = ordered.annotate(decided_us=_EpochMicroseconds("decided_at")).values_list(*fields)
        at = fields.index("decided_us")

        def rows_of(page):
            return [_Row(*row[:at], EPOCH + timedelta(microseconds=row[at]), *row[at + 1:]) for row in page]
    else:
        ordered = ordered.values_list(*ROW_FIELDS)

        def rows_of(page):
            return [_Row(*row) for row in page]
    last = None
    while True:
        page = ordered
        if last is not None:
            page = page.filter(Q(decided_at__gt=last.decided_at) | Q(decided_at=last.decided_at, id__gt=last.id),
                               decided_at__gte=last.decided_at)
        rows = rows_of(page[:CHUNK])
        if rows:
            yield rows
        if len(rows) < CHUNK:
            return
        last = rows[-1]


def _kept_window(inputs: dict) -> timedelta | None:
    """How far back the ledger a decision kept surely reaches: the longest window of the caps
    that applied to it (the gate read the longest window of all its caps, at least that)."""
    if "ledger" not in inputs:
        return None
    return max((timedelta(seconds=result.get("window_seconds", 0)) for result in inputs.get("rules", ())
                if result.get("rule") == "frequency_cap"), default=timedelta(0))


def _ledger_sends(chunk, cap_window: timedelta, ledger_window: timedelta) -> dict:
    """{decision id: its contact's sends before it, within ledger_window} for the decisions of
    the chunk whose kept ledger does not cover cap_window, from one query on the send ledger.

    Times are compared as whole microseconds since the epoch: a datetime made for each of the
    thousands of ledger rows a chunk reads cost more than the rest of the replay of it; only the
    sends a decision counts become datetimes."""
    wanted = []
    for row in chunk:
        inputs = row.inputs or {}
        kept = _kept_window(inputs)
        if "rules" in inputs and (kept is None or kept < cap_window) and row.contact_id is not None:
            wanted.append(row)
    if not wanted:
        return {}
    window = ledger_window // MICROSECOND
    by_contact = defaultdict(list)
    for contact_id, at, channel, purpose, message_id in _ledger_rows(
            {row.contact_id for row in wanted}, min(row.decided_at for row in wanted) - ledger_window,
            max(row.decided_at for row in wanted)):
        by_contact[contact_id].append((at, channel, purpose, message_id))
    timelines = {}
    for contact_id, sends in by_contact.items():
        sends.sort(key=lambda send: send[0])
        timelines[contact_id] = ([send[0] for send in sends], sends)
    found = {}
    nothing = ([], [])
    for row in wanted:
        times, sends = timelines.get(row.contact_id, nothing)
        decided_at = _microseconds(row.decided_at)
        first = bisect.bisect_right(times, decided_at - window)
        last = bisect.bisect_left(times, decided_at)
        # The message's own rows never count against it (as the gate reads the ledger).
        found[row.id] = tuple((channel, purpose, EPOCH + timedelta(microseconds=at))
                              for at, channel, purpose, message_id in sends[first:last]
                              if message_id != row.message_id)
    return found


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def _microseconds(moment: datetime) -> int:
    return (moment - EPOCH) // MICROSECOND


def _ledger_rows(contact_ids: set, after: datetime, before: datetime):
    """(contact id, at in microseconds since the epoch, channel, purpose, message id) of the
    contacts' sends in the ledger strictly between `after` and `before`."""
    sends = SendLedger.objects.filter(at__gt=after, at__lt=before).order_by()
    if connection.vendor != "postgresql":
        return [(contact_id, _microseconds(at), channel, purpose, message_id) for contact_id, at, channel, purpose,
                message_id in sends.filter(contact_id__in=contact_ids).values_list(
                    "contact_id", "at", "channel", "purpose", "message_id")]
    return filter_in(sends, "contact_id", contact_ids).annotate(at_us=_EpochMicroseconds("at")).values_list(
        "contact_id", "at_us", "channel", "purpose", "message_id")


class _EpochMicroseconds(Func):
    """A timestamp as whole microseconds since the epoch (PostgreSQL's epoch is an exact numeric)."""

    template = "(extract(epoch FROM %(expressions)s) * 1000000)::int8"
    output_field = BigIntegerField()


def _grouped(queryset, *, with_outcome: bool = False) -> list[dict]:
    names = ["channel", "purpose", *(["outcome"] if with_outcome else [])]
    return [dict(row) for row in queryset.order_by().values(*names).annotate(count=Count("id")).order_by(*names)]


def _result(proposal, tally: Tally, total: int, arbitration, outside, since, until) -> dict:
    scopes = sorted({key[:2] for key in (*tally.before, *tally.after)})
    per_scope = []
    for channel, purpose in scopes:
        before = {outcome: tally.before[(channel, purpose, outcome)] for outcome in OUTCOMES}
        after = {outcome: tally.after[(channel, purpose, outcome)] for outcome in OUTCOMES}
        per_scope.append({"channel": channel, "purpose": purpose, "before": before, "after": after,
                          "difference": {outcome: after[outcome] - before[outcome] for outcome in OUTCOMES}})
    changes = [{"channel": channel, "purpose": purpose, "before": before, "after": after, "count": count,
                "examples": tally.examples[(channel, purpose, before, after)]}
               for (channel, purpose, before, after), count in sorted(tally.changes.items())]
    return {
        "proposal": proposal.as_data(),
        "since": since.isoformat(), "until": until.isoformat(),
        "total": total,
        "replayed": tally.replayed,
        "changed": tally.changed,
        "per_scope": per_scope,
        "changes": changes,
        "not_replayable": dict(tally.not_replayable),
        "recorded_differs": tally.recorded_differs,
        "from_ledger": tally.from_ledger,
        "outside_scope": outside,
        "arbitration": arbitration,
        "progress": tally.progress(),
    }


# --- runs -------------------------------------------------------------------------------------------

def new_run(proposal: Proposal, *, actor, form_data: dict | None = None, now: datetime | None = None) -> ReplayRun:
    """A queued ReplayRun of `proposal` over the last OMNI_REPLAY_DAYS days (compliance.tasks.
    start_replay runs it). `form_data` is what the admin's form posted, kept so its confirm
    button saves exactly what was replayed."""
    until = now or timezone.now()
    return ReplayRun.objects.create(
        proposal={**proposal.as_data(), "form_data": form_data or {}}, created_by=actor, created_at=until,
        since=until - timedelta(days=settings.OMNI_REPLAY_DAYS), until=until)


def run_replay(run_id: int) -> None:
    """Run a queued ReplayRun to its end, its progress written after each chunk. A run already
    claimed (a second delivery of its task) is left alone."""
    if not ReplayRun.objects.filter(pk=run_id, status=ReplayStatus.QUEUED).update(status=ReplayStatus.RUNNING):
        return
    run = ReplayRun.objects.get(pk=run_id)

    def on_progress(total: int, tally: Tally) -> None:
        ReplayRun.objects.filter(pk=run_id).update(total=total, done=tally.done, result={"progress": tally.progress()})

    try:
        result = replay(Proposal.from_data(run.proposal), run.since, run.until, on_progress=on_progress)
    except Exception as exc:
        ReplayRun.objects.filter(pk=run_id).update(status=ReplayStatus.FAILED, error=f"{type(exc).__name__}: {exc}",
                                                   finished_at=timezone.now())
        raise
    ReplayRun.objects.filter(pk=run_id).update(status=ReplayStatus.DONE, result=result, total=result["total"],
                                               done=result["total"], finished_at=timezone.now())
