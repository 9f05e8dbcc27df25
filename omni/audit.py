"""The audit log's writer and its sealer. Every layer writes through record() or record_many().

Writers never wait on each other: entries are inserted unsealed, inside the caller's
transaction, so they commit (or vanish) with the change they describe. One sealer,
seal_pending(), run by beat and by `manage.py seal_audit`, takes committed unsealed entries in
batches and gives each the next number of a gap-free sequence and a SHA-256 hash over its
content and the previous entry's hash, then writes a checkpoint of the chain's end outside the
database (omni/audit_checkpoints.py). Personal data goes to AuditPersonalData, outside the
chain, under a key of its own; the entry keeps a keyed hash of it. omni/audit_verification.py
checks the chain (`manage.py verify_audit`); the admin's audit log and its export are in
omni/admin.py.
"""
import hashlib
import hmac
import json
import secrets
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone

from django.db import connection, models, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from . import audit_checkpoints
from .lib.bulk import RowInsert, bulk_update, insert_rows, row_of_values
from .models import AuditEntry, AuditPersonalData

# The content a hash covers, in this order. Changing it breaks every existing chain.
CHAINED_FIELDS = ("occurred_at", "actor_id", "actor_label", "action", "contact_id", "object_type", "object_id",
                  "channel", "reason", "data")
# Also hashed, after those, but only when not empty: entries sealed before it existed keep their hashes.
KEYED_FIELD = "personal_hmac"
HASHED_FIELDS = (*CHAINED_FIELDS, KEYED_FIELD)
GENESIS_HASH = "0" * 64
# Entries sealed per transaction: large enough to keep up with a busy tick (hashing is cheap),
# small enough that the sealer's lock is held for well under a second.
SEAL_BATCH = 5000
# Any fixed number: the sealer's PostgreSQL advisory lock, so two sealers never interleave.
SEALER_LOCK_KEY = 0x6F6D6E69
PERSONAL_KEY_BYTES = 32


def _describe(obj) -> tuple[str, str]:
    if obj is None:
        return "", ""
    return obj._meta.label_lower, str(obj.pk)


@dataclass(slots=True)
class PendingEntry:
    """An audit entry not yet written: what build() returns and record_many() writes."""

    occurred_at: datetime
    actor_id: int | None
    actor_label: str
    action: str
    contact_id: int | None
    object_type: str
    object_id: str
    channel: str
    reason: str
    data: dict
    personal_data: dict | None = None
    personal_key: str = ""
    personal_hmac: str = ""


def build(action: str, *, contact=None, contact_id=None, obj=None, object_ref: tuple[str, str] = ("", ""),
          actor=None, actor_label: str = "", channel: str = "", reason: str = "", data: dict | None = None,
          personal: dict | None = None, occurred_at=None) -> PendingEntry:
    """An entry to write with record_many().

    What it is about is `obj`, or, for a row written without a model instance, `object_ref`
    (model label, primary key). `data` is chained and must hold no personal data; `personal`
    (addresses, evidence, provider responses) is kept beside the entry, where erasure can reach it.
    """
    object_type, object_id = _describe(obj) if obj is not None else object_ref
    authenticated = getattr(actor, "is_authenticated", False)
    personal_key = secrets.token_hex(PERSONAL_KEY_BYTES) if personal else ""
    return PendingEntry(
        occurred_at=occurred_at if occurred_at is not None else timezone.now(),
        actor_id=actor.pk if authenticated else None,
        actor_label=actor_label or (actor.get_username() if authenticated else "system"),
        action=action,
        contact_id=contact.pk if contact is not None else contact_id,
        object_type=object_type,
        object_id=object_id,
        channel=channel or "",
        reason=(reason or "")[:100],
        data=data or {},
        personal_data=personal or None,
        personal_key=personal_key,
        personal_hmac=personal_hmac(personal_key, personal) if personal else "",
    )


# The entries record() holds back inside written_together(), or None outside it.
_held: ContextVar[list | None] = ContextVar("audit_entries_held", default=None)


@contextmanager
def written_together():
    """Entries record() is given inside the block are written at its end, in one INSERT, still
    inside the caller's transaction: for a request that records several things about one
    change. Inside it record() returns None. A block inside another joins the outer one; a block
    left by an exception writes nothing (its transaction rolls back)."""
    if _held.get() is not None:
        yield
        return
    held: list[PendingEntry] = []
    token = _held.set(held)
    try:
        yield
    finally:
        _held.reset(token)
    record_many(held, copy=False)


def record(action: str, **kwargs) -> AuditEntry | None:
    """Write one audit entry now (inside the caller's transaction, so it commits with the change);
    inside written_together(), at the block's end."""
    return record_built(build(action, **kwargs))


def record_built(pending: PendingEntry) -> AuditEntry | None:
    """record() for an entry build() made."""
    held = _held.get()
    if held is not None:
        held.append(pending)
        return None
    entry = AuditEntry.objects.create(**{name: getattr(pending, name) for name in HASHED_FIELDS})
    if pending.personal_data:
        AuditPersonalData.objects.create(entry=entry, contact_id=entry.contact_id, data=pending.personal_data,
                                         key=pending.personal_key)
    return entry


def record_many(entries: list[PendingEntry], *, copy: bool = True) -> None:
    """Write many entries at once (hot paths: fan-out, batch ticks), by COPY on PostgreSQL
    (copy=False: a prepared INSERT, for a request's few entries)."""
    plain = [e for e in entries if not e.personal_data]
    personal = [e for e in entries if e.personal_data]
    insert_rows(AuditEntry, CHAINED_FIELDS, [_row(e) for e in plain], copy=copy)
    if personal:
        ids = insert_rows(AuditEntry, HASHED_FIELDS, [(*_row(e), e.personal_hmac) for e in personal], set_ids=True,
                          copy=copy)
        insert_rows(AuditPersonalData, ["entry_id", "contact_id", "data", "key"],
                    [(entry_id, e.contact_id, e.personal_data, e.personal_key) for entry_id, e in zip(ids, personal)],
                    copy=copy)


def row_of(entry: PendingEntry) -> RowInsert:
    """An entry as one row for omni.lib.bulk.insert_from_json(), written with the change it
    describes in one statement. Only for an entry without personal data (which goes to a row of
    its own, keyed by the entry's id)."""
    if entry.personal_data:
        raise ValueError("An audit entry with personal data is written by record() or record_many().")
    return row_of_values(AuditEntry, CHAINED_FIELDS, _row(entry))


def _row(entry: PendingEntry) -> tuple:
    return (entry.occurred_at, entry.actor_id, entry.actor_label, entry.action, entry.contact_id, entry.object_type,
            entry.object_id, entry.channel, entry.reason, entry.data)


def personal_hmac(key: str, data: dict) -> str:
    """HMAC-SHA256 of personal data (as canonical JSON, the form it has after a round trip
    through the database) under the row's own key (hex)."""
    canonical = json.dumps(json.loads(json.dumps(data)), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(bytes.fromhex(key), canonical.encode(), hashlib.sha256).hexdigest()


def erase_personal_data_about(object_type: str, object_ids, *, now=None) -> int:
    """Empty the personal data of the entries about these objects (`object_ids`: their ids as
    text, a list or a one-column queryset), as erase_personal_data() does: for rows tied to no
    contact that are a contact's all the same (a provider's report that matched no delivery)."""
    return AuditPersonalData.objects.filter(
        entry__object_type=object_type, entry__object_id__in=object_ids, erased_at__isnull=True,
    ).update(data={}, key="", erased_at=now or timezone.now())


def erase_personal_data(contact_id: int, *, addresses=(), now=None) -> int:
    """Empty the personal data of a contact's audit entries, with their keys, and of the entries
    tied to no contact that name one of its `addresses` (a suppression or a block made before
    the contact existed), with the other entries tied to no contact about the same object (its
    renewal or lifting). Returns how many rows.

    The chained entries keep their keyed hashes, which nothing can check or reverse without the
    key: the chain stays valid and says nothing about the person."""
    addresses = sorted({form for address in addresses if address for form in (address, address.strip().lower())})
    about = Q(contact_id=contact_id)
    if addresses:
        naming = AuditPersonalData.objects.filter(contact_id__isnull=True, data__address__in=addresses)
        # The other entries about an object one of those is about (a suppression's renewal or
        # lifting, a block's lifting) are about the same person, though they do not repeat the
        # address: a renewal keeps the previous detail, which may name it.
        same_object = naming.exclude(entry__object_type="").filter(
            entry__object_type=OuterRef("entry__object_type"), entry__object_id=OuterRef("entry__object_id"))
        about |= Q(contact_id__isnull=True) & (Q(data__address__in=addresses) | Exists(same_object))
    return AuditPersonalData.objects.filter(about, erased_at__isnull=True).update(
        data={}, key="", erased_at=now or timezone.now())


def for_object(obj) -> models.QuerySet:
    object_type, object_id = _describe(obj)
    return AuditEntry.objects.filter(object_type=object_type, object_id=object_id)


# --- The chain ------------------------------------------------------------------------------

def canonical_content(row: dict) -> bytes:
    """The bytes an entry's hash covers: its chained fields, and its keyed hash of personal data
    if it has one, as canonical JSON."""
    content = dict(row)
    occurred_at = content["occurred_at"]
    content["occurred_at"] = occurred_at.astimezone(dt_timezone.utc).isoformat()
    values = [content[name] for name in CHAINED_FIELDS]
    if content.get(KEYED_FIELD):
        values.append(content[KEYED_FIELD])
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def entry_hash(seq: int, prev_hash: str, row: dict) -> str:
    """The hash of the entry numbered `seq` whose predecessor's hash is `prev_hash`."""
    digest = hashlib.sha256()
    digest.update(f"{seq}:{prev_hash}:".encode())
    digest.update(canonical_content(row))
    return digest.hexdigest()


def seal_pending(*, batch: int = SEAL_BATCH, now=None) -> int:
    """Seal every committed unsealed entry, in batches, then checkpoint the chain's end outside
    the database. Returns how many were sealed; 0 at once if another sealer is at work (it
    seals what this one would have).

    Call it outside a transaction: the checkpoint must name only committed entries.
    """
    total = 0
    while True:
        sealed = _seal_batch(batch, now or timezone.now())
        if sealed is None:
            break
        total += sealed
        if sealed < batch:
            break
    if total or _checkpoint_owed:
        checkpoint_chain_end()
    return total


def _seal_batch(limit: int, now) -> int | None:
    """Seal up to `limit` entries; None if another sealer holds the lock."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Skip rather than wait: the sealer at work seals these entries too, and with a
            # backlog every beat tick would park another worker here. On SQLite the IMMEDIATE
            # transaction serializes sealers.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [SEALER_LOCK_KEY])
                if not cursor.fetchone()[0]:
                    return None
        rows = list(
            AuditEntry.objects.filter(seq__isnull=True).order_by("id").values("id", *HASHED_FIELDS)[:limit]
        )
        if not rows:
            return 0
        last = AuditEntry.objects.filter(seq__isnull=False).order_by("-seq").values_list("seq", "hash").first()
        seq, prev_hash = last or (0, GENESIS_HASH)
        sealed = []
        for row in rows:
            seq += 1
            digest = entry_hash(seq, prev_hash, row)
            sealed.append(AuditEntry(pk=row["id"], seq=seq, prev_hash=prev_hash, hash=digest, sealed_at=now))
            prev_hash = digest
        bulk_update(sealed, ["seq", "prev_hash", "hash", "sealed_at"])
        return len(sealed)


def checkpoint_chain_end() -> audit_checkpoints.Checkpoint | None:
    """Write the chain's last (seq, hash) to the checkpoint store. Returns the checkpoint, if
    the chain has any entry. A failed write raises, and the next sealer run in this process
    writes a checkpoint even if it sealed nothing."""
    global _checkpoint_owed
    last = AuditEntry.objects.filter(seq__isnull=False).order_by("-seq").values_list("seq", "hash").first()
    if last is None:
        return None
    checkpoint = audit_checkpoints.Checkpoint(seq=last[0], hash=last[1], written_at=timezone.now())
    _checkpoint_owed = True
    audit_checkpoints.checkpoint_store().write(checkpoint)
    _checkpoint_owed = False
    return checkpoint


_checkpoint_owed = False
