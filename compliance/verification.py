"""Checking the audit chain: every sealed entry is where the chain says, with the hash it should have."""
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from omni.audit import CHAINED_FIELDS, GENESIS_HASH, entry_hash
from omni.models import AuditEntry

from .models import Decision

DECISION_TYPE = Decision._meta.label_lower

# The sealer runs every few seconds; an entry still unsealed after this means it is not running.
UNSEALED_TOO_LONG = timedelta(minutes=1)
VERIFY_CHUNK = 5000


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
    # Decisions whose content no longer matches the digest their sealed entry holds, or that vanished.
    altered_decisions: tuple = ()

    @property
    def ok(self) -> bool:
        return self.broken is None and not self.stale_unsealed and not self.altered_decisions


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
    return ChainReport(checked=checked, broken=broken, stale_unsealed=stale.count(), oldest_stale_at=oldest,
                       altered_decisions=tuple(altered_decisions()))


def altered_decisions(limit: int = 20) -> list[str]:
    """Decision rows whose content does not match the digest sealed in the chain (at most `limit`)."""
    found = []
    sealed = (
        AuditEntry.objects.filter(seq__isnull=False, object_type=DECISION_TYPE)
        .order_by("seq").values_list("object_id", "data")
    )
    chunk = []
    for object_id, data in sealed.iterator(chunk_size=VERIFY_CHUNK):
        chunk.append((object_id, (data or {}).get("digest")))
        if len(chunk) == VERIFY_CHUNK:
            found += _check_decisions(chunk)
            chunk = []
    found += _check_decisions(chunk)
    return found[:limit]


def _check_decisions(chunk) -> list[str]:
    rows = {str(row["id"]): row for row in Decision.objects.filter(pk__in=[i for i, _ in chunk])
            .values(*Decision.DIGEST_FIELDS)}
    problems = []
    for object_id, digest in chunk:
        row = rows.get(object_id)
        if row is None:
            problems.append(f"decision {object_id} is missing")
        elif Decision.digest_of(row) != digest:
            problems.append(f"decision {object_id} was altered")
    return problems
