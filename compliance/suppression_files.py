"""Suppressions in and out as CSV: the list a provider or an older system kept, brought in;
the list Omni keeps, handed out.

Import validates every row before it writes (`read_suppressions`), then writes the valid rows
set-based (`import_suppressions`): a few queries for the whole file, whatever its size, and one
audit entry per row written. Export streams rows with every cell through neutralize_formula.
"""
import csv
import io
from dataclasses import dataclass, field
from datetime import datetime, time

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from contacts.models import Contact
from omni import audit
from omni.choices import Channel, Purpose
from omni.lib.bulk import bulk_insert, bulk_update
from omni.lib.spreadsheet import neutralize_formula, restore_formula_text

from .actions import renews
from .models import Suppression, SuppressionReason, hash_address, suppressed_address

IMPORT_COLUMNS = ["address", "channel", "purpose", "reason", "detail", "expires_at"]
EXPORT_COLUMNS = [*IMPORT_COLUMNS, "address_hash", "contact", "created_by", "created_at"]
# A file exported here imports back: the columns only export writes are read past.
EXPORT_ONLY_COLUMNS = set(EXPORT_COLUMNS) - set(IMPORT_COLUMNS)
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_ROWS = 100_000
# Hashes looked up per query: well under SQLite's limit of bound variables.
LOOKUP_CHUNK = 5000
DETAIL_MAX = 500


@dataclass(frozen=True)
class RowError:
    row: int  # the line in the file: the header is row 1
    column: str
    message: str


@dataclass
class SuppressionRow:
    row: int
    address: str
    channel: str
    purpose: str
    reason: str
    detail: str
    expires_at: datetime | None

    @property
    def scope(self) -> tuple[str, str, str]:
        return hash_address(self.address), self.channel, self.purpose


@dataclass
class ReadFile:
    rows: list[SuppressionRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


@dataclass
class Imported:
    added: int = 0
    renewed: int = 0
    unchanged: int = 0


class FileRefused(Exception):
    """The file as a whole cannot be read (not CSV, too large, no address column)."""


def contact_with_address(address: str) -> Contact | None:
    """The contact (not erased) whose email or phone is `address`, as suppressions store it."""
    return contacts_with_addresses([address]).get(address)


def contacts_with_addresses(addresses) -> dict[str, Contact]:
    """The contact of each address that is a contact's email or phone, in one query per chunk;
    the oldest contact where several share one."""
    addresses = list(set(addresses))
    found: dict[str, Contact] = {}
    for start in range(0, len(addresses), LOOKUP_CHUNK):
        chunk = addresses[start:start + LOOKUP_CHUNK]
        emails = [a for a in chunk if "@" in a]
        phones = [a for a in chunk if "@" not in a]
        for contact in (Contact.objects.filter(Q(email__in=emails) | Q(phone__in=phones), erased_at__isnull=True)
                        .order_by("-pk")):
            for address in (contact.email, contact.phone):
                if address:
                    found[address] = contact
    return found


def _choice(value: str, values: list[str], *, blank_means: str) -> str:
    value = value.strip().lower()
    if value not in ["", *values]:
        raise ValidationError(f"{value!r} is not one of {', '.join(values)} (blank: {blank_means}).")
    return value


def _expiry(value: str) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    try:
        moment = parse_datetime(value)
        if moment is None and (day := parse_date(value)) is not None:
            moment = datetime.combine(day, time.min)
    except ValueError:
        moment = None
    if moment is None:
        raise ValidationError(f"{value!r} is not a date (YYYY-MM-DD) or a date and time (YYYY-MM-DDTHH:MM).")
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def read_suppressions(data: bytes) -> ReadFile:
    """Every row of a suppression CSV, checked: the rows that may be written, and the errors of
    the others (row, column, message). Raises FileRefused for a file that cannot be read."""
    if len(data) > MAX_FILE_BYTES:
        raise FileRefused(f"The file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB; split it.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FileRefused("The file is not UTF-8 text; save it as CSV UTF-8.")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [name.strip().lower() for name in next(reader, [])]
    if "address" not in header:
        raise FileRefused(f"The first row names the columns and must have address; the columns are: "
                          f"{', '.join(IMPORT_COLUMNS)}.")
    result = ReadFile()
    unknown = [name for name in header if name not in IMPORT_COLUMNS and name not in EXPORT_ONLY_COLUMNS]
    for name in unknown:
        result.errors.append(RowError(1, name, f"Unknown column; the columns are: {', '.join(IMPORT_COLUMNS)}."))
    seen: dict[tuple, int] = {}
    for line, cells in enumerate(reader, start=2):
        if line - 1 > MAX_ROWS:
            raise FileRefused(f"The file has more than {MAX_ROWS} rows; split it.")
        if not any(cell.strip() for cell in cells):
            continue
        values = {name: restore_formula_text(cells[index]) if index < len(cells) else ""
                  for index, name in enumerate(header)}
        row = _read_row(line, values, result.errors)
        if row is None:
            continue
        if row.scope in seen:
            result.errors.append(RowError(line, "address", f"Same address, channel and purpose as row {seen[row.scope]}."))
            continue
        seen[row.scope] = line
        result.rows.append(row)
    if unknown:
        result.rows = []  # a misnamed column would import every row without what it meant
    return result


def _read_row(line: int, values: dict, errors: list[RowError]) -> SuppressionRow | None:
    cleaned, row_errors = {}, []
    readers = {
        "channel": lambda v: _choice(v, Channel.values, blank_means="every channel"),
        "purpose": lambda v: _choice(v, Purpose.values, blank_means="every purpose"),
        "reason": lambda v: _choice(v, SuppressionReason.values, blank_means="manual") or SuppressionReason.MANUAL,
        "expires_at": _expiry,
    }
    for name, read in readers.items():
        try:
            cleaned[name] = read(values.get(name, ""))
        except ValidationError as exc:
            row_errors.append(RowError(line, name, " ".join(exc.messages)))
    detail = values.get("detail", "").strip()
    if len(detail) > DETAIL_MAX:
        row_errors.append(RowError(line, "detail", f"At most {DETAIL_MAX} characters."))
    if "channel" in cleaned:
        try:
            cleaned["address"] = suppressed_address(values.get("address", ""), cleaned["channel"])
        except ValidationError as exc:
            row_errors.append(RowError(line, "address", " ".join(exc.messages)))
    if row_errors:
        errors.extend(row_errors)
        return None
    return SuppressionRow(row=line, detail=detail, **cleaned)


@transaction.atomic
def import_suppressions(rows: list[SuppressionRow], *, actor, file_name: str = "") -> Imported:
    """Write checked rows as suppress() would one by one: a new scope is added, one that has
    expired or that the row outlasts is renewed, an active one is left. Each row written is
    audited ("suppression.added" / "suppression.renewed"), the address and detail outside the
    chain; the whole file too ("suppression.imported")."""
    now = timezone.now()
    result = Imported()
    existing = _existing_by_scope([row.scope for row in rows])
    contacts = contacts_with_addresses(row.address for row in rows)
    created_by = actor if getattr(actor, "is_authenticated", False) else None
    added, renewed, entries = [], [], []
    for row in rows:
        current = existing.get(row.scope)
        contact = contacts.get(row.address)
        if current is None:
            added.append(Suppression(address=row.address, address_hash=row.scope[0], channel=row.channel,
                                     purpose=row.purpose, reason=row.reason, detail=row.detail, contact=contact,
                                     created_by=created_by, created_at=now, expires_at=row.expires_at))
        elif renews(current.expires_at, row.expires_at, now):
            if contact is not None:
                current.contact = contact
            entries.append(audit.build(
                "suppression.renewed", contact_id=current.contact_id, obj=current, actor=actor,
                channel=current.channel, reason=row.reason, occurred_at=now,
                data={"purpose": current.purpose, "imported": True,
                      "previous": {"reason": current.reason, "created_at": current.created_at.isoformat(),
                                   "expires_at": current.expires_at.isoformat() if current.expires_at else None}},
                personal={key: value for key, value in {"detail": row.detail, "previous_detail": current.detail}
                          .items() if value} or None))
            current.reason, current.detail, current.expires_at, current.created_at = (
                row.reason, row.detail, row.expires_at, now)
            current.created_by = created_by
            renewed.append(current)
        else:
            result.unchanged += 1
    bulk_insert(added, set_ids=True)
    bulk_update(renewed, ["reason", "detail", "expires_at", "created_at", "contact", "created_by"])
    entries += [audit.build("suppression.added", contact=s.contact, obj=s, actor=actor, channel=s.channel,
                            reason=s.reason, occurred_at=now, data={"purpose": s.purpose, "imported": True},
                            personal={"address": s.address, "detail": s.detail} if s.detail else {"address": s.address})
                for s in added]
    result.added, result.renewed = len(added), len(renewed)
    entries.append(audit.build("suppression.imported", actor=actor, occurred_at=now, data={
        "rows": len(rows), "added": result.added, "renewed": result.renewed, "unchanged": result.unchanged},
        personal={"file_name": file_name} if file_name else None))
    audit.record_many(entries)
    return result


def _existing_by_scope(scopes: list[tuple[str, str, str]]) -> dict[tuple, Suppression]:
    """The suppressions already there for these scopes, locked until the import commits."""
    hashes = sorted({scope[0] for scope in scopes})
    wanted = set(scopes)
    found = {}
    for start in range(0, len(hashes), LOOKUP_CHUNK):
        for suppression in (Suppression.objects.select_for_update()
                            .filter(address_hash__in=hashes[start:start + LOOKUP_CHUNK])):
            scope = (suppression.address_hash, suppression.channel, suppression.purpose)
            if scope in wanted:
                found[scope] = suppression
    return found


def export_rows(queryset):
    """The CSV lines of `queryset`'s suppressions, header first, each cell neutralized, read
    from the database in chunks (flat memory for any size)."""
    out = io.StringIO()
    writer = csv.writer(out)

    def line(cells) -> str:
        out.seek(0)
        out.truncate()
        writer.writerow([neutralize_formula(cell) for cell in cells])
        return out.getvalue()

    yield line(EXPORT_COLUMNS)
    rows = queryset.order_by("pk").values_list("address", "channel", "purpose", "reason", "detail", "expires_at",
                                                "address_hash", "contact__external_id", "created_by__username",
                                                "created_at")
    for row in rows.iterator(chunk_size=2000):
        yield line(row)
