"""Checking the audit chain: every sealed entry is where the chain says, with the hash it should have.

Apps above omni that seal their own rows into the chain by digest (compliance's gate
decisions) register a check for them with register_record_check() from their
AppConfig.ready(): omni's base imports no app.
"""
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from .audit import CHAINED_FIELDS, GENESIS_HASH, entry_hash
from .models import AuditEntry

# The sealer runs every few seconds; an entry still unsealed after this means it is not running.
UNSEALED_TOO_LONG = timedelta(minutes=1)
VERIFY_CHUNK = 5000

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

    @property
    def ok(self) -> bool:
        return self.broken is None and not self.stale_unsealed and not self.record_problems


def verify_chain(*, now=None, unsealed_too_long: timedelta = UNSEALED_TOO_LONG) -> ChainReport:
    """Walk the chain from its first entry; stop at the first link that does not hold."""
    now = now or timezone.now()
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    broken = None
    rows = (
        AuditEntry.objects.filter(seq__isnull=False).order_by("seq")
        .values("id", "seq", "prev_hash", "hash", *CHAINED_FIELDS)
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
        checked += 1
        expected_seq += 1
        prev_hash = row["hash"]
    stale = AuditEntry.objects.filter(seq__isnull=True, occurred_at__lt=now - unsealed_too_long)
    oldest = stale.order_by("occurred_at").values_list("occurred_at", flat=True).first()
    record_problems = [problem for check in _record_checks.values() for problem in check(now, unsealed_too_long)]
    return ChainReport(checked=checked, broken=broken, stale_unsealed=stale.count(), oldest_stale_at=oldest,
                       record_problems=tuple(record_problems))
