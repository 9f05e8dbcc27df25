"""Checking the audit chain: every sealed entry is where the chain says, with the hash it should have;
the chain reaches the latest checkpoint kept outside the database and agrees with it there; the
personal data beside each entry matches the keyed hash the entry keeps.

Apps above omni that seal their own rows into the chain by digest (compliance's gate
decisions) register a check for them with register_record_check() from their
AppConfig.ready(): omni's base imports no app.
"""
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from .audit import GENESIS_HASH, HASHED_FIELDS, entry_hash, personal_hmac
from .audit_checkpoints import checkpoint_store
from .models import AuditEntry, AuditPersonalData

# The sealer runs every few seconds; an entry still unsealed after this means it is not running.
UNSEALED_TOO_LONG = timedelta(minutes=1)
VERIFY_CHUNK = 5000
MAX_PROBLEMS = 20

# A check of rows sealed by digest: given the time of the check and how long the sealer may
# lag, it returns its problems, each one line ("decision <id> was altered").
RecordCheck = Callable[[datetime, timedelta], list[str]]
_record_checks: dict[str, RecordCheck] = {}


def register_record_check(name: str, check: RecordCheck) -> None:
    """Have verify_chain() run `check` too (an app's AppConfig.ready() calls this; safe to call twice)."""
    _record_checks[name] = check


@dataclass(frozen=True)
class BrokenLink:
    seq: int
    entry_id: int | None
    problem: str

    def __str__(self):
        where = f"entry {self.entry_id}" if self.entry_id is not None else "no entry"
        return f"seq {self.seq} ({where}): {self.problem}"


@dataclass(frozen=True)
class ChainReport:
    checked: int
    broken: BrokenLink | None
    stale_unsealed: int
    oldest_stale_at: object = None
    # What the registered record checks found: rows sealed by digest that were altered or vanished.
    record_problems: tuple = ()
    # The chain does not reach the latest checkpoint, or differs from it there.
    checkpoint_problem: str | None = None
    # Personal data rows that no longer match the keyed hash their sealed entry keeps.
    personal_problems: tuple = ()

    @property
    def ok(self) -> bool:
        return (self.broken is None and not self.stale_unsealed and not self.record_problems
                and self.checkpoint_problem is None and not self.personal_problems)


def verify_chain(*, now=None, unsealed_too_long: timedelta = UNSEALED_TOO_LONG) -> ChainReport:
    """Walk the chain from its first entry; stop at the first link that does not hold."""
    now = now or timezone.now()
    # Read before the walk: a checkpoint the sealer writes meanwhile may name entries the walk
    # has already passed.
    checkpoint = checkpoint_store().latest()
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    broken = None
    hash_at_checkpoint = None
    keyed, personal_problems = [], []
    rows = (
        AuditEntry.objects.filter(seq__isnull=False).order_by("seq")
        .values("id", "seq", "prev_hash", "hash", *HASHED_FIELDS)
    )
    for row in rows.iterator(chunk_size=VERIFY_CHUNK):
        if row["seq"] != expected_seq:
            broken = BrokenLink(expected_seq, None, f"missing; the chain jumps to seq {row['seq']}")
            break
        if row["prev_hash"] != prev_hash:
            broken = BrokenLink(row["seq"], row["id"], "its previous hash does not match the entry before it")
            break
        if entry_hash(row["seq"], prev_hash, row) != row["hash"]:
            broken = BrokenLink(row["seq"], row["id"], "its content does not match its hash (altered)")
            break
        if checkpoint is not None and row["seq"] == checkpoint.seq:
            hash_at_checkpoint = row["hash"]
        if row["personal_hmac"]:
            keyed.append((row["id"], row["personal_hmac"]))
            if len(keyed) == VERIFY_CHUNK:
                personal_problems += _check_personal_data(keyed)
                keyed = []
        checked += 1
        expected_seq += 1
        prev_hash = row["hash"]
    personal_problems += _check_personal_data(keyed)
    stale = AuditEntry.objects.filter(seq__isnull=True, written_at__lt=now - unsealed_too_long)
    oldest = stale.order_by("written_at").values_list("written_at", flat=True).first()
    record_problems = [problem for check in _record_checks.values() for problem in check(now, unsealed_too_long)]
    return ChainReport(checked=checked, broken=broken, stale_unsealed=stale.count(), oldest_stale_at=oldest,
                       record_problems=tuple(record_problems),
                       checkpoint_problem=None if broken else _checkpoint_problem(checkpoint, checked,
                                                                                  hash_at_checkpoint),
                       personal_problems=tuple(personal_problems[:MAX_PROBLEMS]))


def _checkpoint_problem(checkpoint, last_seq: int, hash_at_checkpoint: str | None) -> str | None:
    """What is wrong with an intact chain ending at `last_seq`, measured against the latest checkpoint."""
    if checkpoint is None:
        return None
    written = f"checkpoint of seq {checkpoint.seq} written {checkpoint.written_at:%Y-%m-%d %H:%M:%S}"
    if last_seq < checkpoint.seq:
        return f"the chain ends at seq {last_seq}, before the {written}: entries were removed from its end"
    if hash_at_checkpoint != checkpoint.hash:
        return f"seq {checkpoint.seq} differs from the {written}: entries were rewritten"
    return None


def _check_personal_data(keyed: list[tuple[int, str]]) -> list[str]:
    """Personal data rows of these (entry id, keyed hash) pairs that do not match. An erased row
    (no key, no data) matches: erasure removes what the hash could be checked with."""
    rows = {entry_id: (key, data) for entry_id, key, data in
            AuditPersonalData.objects.filter(entry_id__in=[entry_id for entry_id, _ in keyed])
            .values_list("entry_id", "key", "data")}
    problems = []
    for entry_id, digest in keyed:
        if entry_id not in rows:
            problems.append(f"entry {entry_id}: its personal data row is missing")
            continue
        key, data = rows[entry_id]
        if not key and not data:
            continue
        if not key or personal_hmac(key, data) != digest:
            problems.append(f"entry {entry_id}: its personal data does not match its keyed hash")
    return problems


def problems_of(report: ChainReport) -> list[str]:
    """What a verification found, in sentences (empty when the chain holds)."""
    problems = []
    if report.broken:
        problems.append(f"Audit chain broken at {report.broken}.")
    if report.record_problems:
        problems.append("Records sealed into the chain do not hold: " + "; ".join(report.record_problems) + ".")
    if report.checkpoint_problem:
        problems.append(f"The chain does not hold against its checkpoint: {report.checkpoint_problem}.")
    if report.personal_problems:
        problems.append("Personal data was changed: " + "; ".join(report.personal_problems) + ".")
    if report.stale_unsealed:
        problems.append(
            f"{report.stale_unsealed} audit entries unsealed for more than {UNSEALED_TOO_LONG} "
            f"(oldest from {report.oldest_stale_at:%Y-%m-%d %H:%M:%S}): is the sealer (beat) running?"
        )
    return problems


def verify_and_record(*, reason: str) -> tuple[ChainReport, list[str]]:
    """Verify the chain and write the result down as an `audit.verified` entry (the compliance
    home shows the last one). `reason` says who ran it: "command" or "beat"."""
    from omni import audit

    report = verify_chain()
    problems = problems_of(report)
    audit.record("audit.verified", reason=reason,
                 data={"checked": report.checked, "intact": not problems, "problems": problems})
    return report, problems
