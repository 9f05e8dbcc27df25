"""The contact import: a CSV file checked row by row, then written in bulk.

A file is read whole (read_file), every row is checked (check_rows: the same rules as the API's
upsert, contacts.actions.clean_profile_field, with declared attribute types and the consent
columns), and the valid rows are written a chunk at a time (write_rows): new contacts by COPY,
changed ones by one UPDATE per chunk, consents through contacts.hooks.consents_submitted with a
batch (compliance writes them), and one audit entry per contact created or changed, all without
a query per row. ContactImport keeps an upload's state; check_import() and run_import() are what
the admin page and its Celery tasks call.

Rows are numbered as a spreadsheet shows them: the header is row 1, the first contact row 2.

Columns: external_id, email, phone, first_name, last_name, locale, timezone, country, region,
lifecycle_stage, messaging_paused, attributes (a JSON object merged into the stored ones, as the
API does), and for consent `consent_<channel>_<purpose>` (granted or revoked; blank leaves it),
`lawful_basis_<channel>_<purpose>`, `consent_evidence` (what the person agreed to and where: a
grant needs it) and `consent_at` (when they did, ISO 8601 with its offset; blank: now).

A row is matched to a contact by external_id, else (a row without one) by email among contacts
without an external id; a row with neither is refused. A key twice in one file is refused on its
second row, and so is a row for a contact erased on request. A contact erased while its upload is
kept (waiting, being checked or imported) loses its rows from the file, and their numbers are
recorded on the upload (contacts.import_erasure): the check and the import read them per chunk,
the import under the upload's row lock (which erasure takes too), and refuse those rows quoting
nothing, so that a row naming the person by email cannot make them again from a file read before.
"""
import csv
import io
import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from omni import audit
from omni.choices import Channel, ConsentStatus, LawfulBasis, Purpose
from omni.lib.bulk import bulk_update, insert_rows
from omni.lib.dates import EARLIEST
from omni.lib.spreadsheet import cells_by_column
from omni.lib.tasks import task_named
from omni.lib.text import first_unstorable, refuse_non_json_number

from . import hooks
from .actions import InvalidField, apply_changes, clean_external_id, clean_profile_field
from .data_types import definitions, type_problem
from .models import DEFAULT_LIFECYCLE_STAGE, Contact, ContactImport, ImportStatus, lifecycle_stage_keys

# Rows checked and written together: one lookup, one COPY per table, one transaction each.
CHUNK = 5000
# The refusal of a row whose contact was erased on request after the file was uploaded: it quotes
# nothing, the row's values being what erasure took away.
ERASED_ROW_MESSAGE = "The contact of this row was erased on request; the row is not imported."
# Errors shown on the import's page; the CSV download has them all.
ERRORS_SHOWN = 100
MAX_EVIDENCE_LENGTH = 1000
# What a consent cell may say: granting or revoking; a blank cell leaves the consent as it is.
CONSENT_VALUES = {ConsentStatus.GRANTED.value, ConsentStatus.REVOKED.value}
BOOLEAN_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
KEY_COLUMNS = ("external_id", "email")
PROFILE_COLUMNS = ("email", "phone", "first_name", "last_name", "locale", "timezone", "country", "region",
                   "lifecycle_stage")
# A blank cell in these leaves the stored value (a contact always has a locale and a stage).
KEPT_WHEN_BLANK = ("locale", "lifecycle_stage", "messaging_paused", "attributes")
OTHER_COLUMNS = ("external_id", "messaging_paused", "attributes", "consent_evidence", "consent_at")
SCOPES = [(channel, purpose) for channel in Channel.values for purpose in Purpose.values]
CONSENT_COLUMNS = {f"consent_{channel}_{purpose}": (channel, purpose) for channel, purpose in SCOPES}
LAWFUL_BASIS_COLUMNS = {f"lawful_basis_{channel}_{purpose}": (channel, purpose) for channel, purpose in SCOPES}
# (consent column, lawful basis column, channel, purpose) of every scope.
CONSENT_SCOPES = [(f"consent_{channel}_{purpose}", f"lawful_basis_{channel}_{purpose}", channel, purpose)
                  for channel, purpose in SCOPES]
LAWFUL_BASES = frozenset(LawfulBasis.values)
KNOWN_COLUMNS = frozenset((*PROFILE_COLUMNS, *OTHER_COLUMNS, *CONSENT_COLUMNS, *LAWFUL_BASIS_COLUMNS))
# The columns as the import page lists them.
COLUMNS_SHOWN = (*KEY_COLUMNS, *PROFILE_COLUMNS[1:], "messaging_paused", "attributes", "consent_<channel>_<purpose>",
                 "lawful_basis_<channel>_<purpose>", "consent_evidence", "consent_at")
# Contact fields an import may write, in the order they are written.
WRITTEN_FIELDS = (*PROFILE_COLUMNS, "messaging_paused", "attributes")


class FileRefused(ValueError):
    """The file as a whole cannot be imported (not a CSV, an unknown column, too large); nothing is read."""


@dataclass
class Sheet:
    """A file read: its column names and its rows (lists of cells), with the spreadsheet row number
    of the first one."""

    columns: list[str]
    rows: list[list[str]]
    first_row_number: int = 2


@dataclass
class RowError:
    row: int
    column: str
    message: str

    def as_dict(self) -> dict:
        return {"row": self.row, "column": self.column, "message": self.message}


@dataclass
class CheckedRow:
    """One row checked: its contact's new values, the stored contact it updates (or None), its
    consent changes, and its errors (none when it may be written)."""

    number: int
    external_id: str | None = None
    values: dict = field(default_factory=dict)
    attributes: dict | None = None
    consents: list[dict] = field(default_factory=list)
    existing: Contact | None = None
    contact_id: int | None = None  # of the contact written for it, once written
    errors: list[RowError] = field(default_factory=list)

    def refuse(self, column: str, message: str) -> None:
        self.errors.append(RowError(self.number, column, message))

    def error_entries(self) -> list[dict]:
        """The row's errors as ContactImport.errors keeps them, each naming whom the row is about
        (its key, the stored contact it matched) so that erasure finds them whatever they quote."""
        subject = {"external_id": self.external_id} if self.external_id else \
            {"email": self.values["email"]} if self.values.get("email") else {}
        if self.existing is not None:
            subject["contact"] = self.existing.pk
        return [{**error.as_dict(), **subject} for error in self.errors]


@dataclass
class Written:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    consents: int = 0

    @property
    def rows(self) -> int:
        return self.created + self.updated + self.unchanged


# --- Reading -------------------------------------------------------------------------------------

def read_file(text: str) -> Sheet:
    """The file's columns and rows; FileRefused saying what is wrong with the file as a whole."""
    if len(text.encode("utf-8", errors="replace")) > settings.OMNI_IMPORT_MAX_BYTES:
        raise FileRefused(f"The file is larger than {size_words(settings.OMNI_IMPORT_MAX_BYTES)}, the most imported "
                          "at once: split it.")
    if "\x00" in text:
        raise FileRefused("The file is not a CSV text file (it holds NUL bytes); save it as CSV (UTF-8).")
    text = text.removeprefix("\ufeff")
    try:
        lines = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise FileRefused(f"The file is not a readable CSV file: {exc}.") from None
    while lines and not any(cell.strip() for cell in lines[-1]):
        lines.pop()
    if not lines:
        raise FileRefused("The file is empty: the first row must name the columns, e.g. external_id,email.")
    columns = [name.strip().lower() for name in lines[0]]
    unknown = [name for name in columns if name not in KNOWN_COLUMNS]
    if unknown:
        raise FileRefused(f"Unknown column(s): {', '.join(repr(name) for name in unknown[:10])}. Known columns: "
                          f"{', '.join(sorted(name for name in KNOWN_COLUMNS if not name.startswith(('consent_', 'lawful_basis_'))))}, "
                          "consent_<channel>_<purpose>, lawful_basis_<channel>_<purpose>, consent_evidence and "
                          "consent_at.")
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise FileRefused(f"Column(s) named twice: {', '.join(repeated)}.")
    if not any(name in columns for name in KEY_COLUMNS):
        raise FileRefused("The file needs an external_id or an email column to find each contact by.")
    rows = lines[1:]
    if len(rows) > settings.OMNI_IMPORT_MAX_ROWS:
        raise FileRefused(f"The file has {len(rows):,} rows; at most {settings.OMNI_IMPORT_MAX_ROWS:,} are "
                          "imported at once: split it.")
    return Sheet(columns, rows)


def size_words(size: int) -> str:
    """A file size for people: 32 MiB, 200 KiB, 100 bytes."""
    for unit, factor in (("MiB", 1048576), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.3g} {unit}"
    return f"{size} bytes"


# --- Checking ------------------------------------------------------------------------------------

@dataclass
class CheckContext:
    """What every row is checked against, loaded once per file: stage keys, attribute types."""

    stages: frozenset
    attribute_types: dict
    now: datetime

    @classmethod
    def load(cls) -> "CheckContext":
        return cls(frozenset(lifecycle_stage_keys()), dict(definitions().attributes), timezone.now())


def check_rows(sheet: Sheet, start: int, stop: int, context: CheckContext, seen: dict, *,
               lock: bool = False, erased: frozenset = frozenset()) -> list[CheckedRow]:
    """Check rows [start, stop) of the sheet against the stored contacts they update (read in one
    query, locked until the transaction ends with `lock`). `seen` maps each key already met in the
    file (("external_id", value) or ("email", value)) to its row number; it is filled as rows go.
    The rows numbered in `erased` (the upload's erased_rows) are refused unread."""
    columns = sheet.columns
    index = {name: position for position, name in enumerate(columns)}
    rows = []
    for offset, cells in enumerate(sheet.rows[start:stop]):
        number = sheet.first_row_number + start + offset
        if number in erased:
            rows.append(erased_row(sheet, number))
            continue
        rows.append(_check_cells(number, cells_by_column(columns, cells), index, context))
    _attach_stored_contacts(rows, lock=lock)
    for row in rows:
        _check_against_stored(row, seen)
    return rows


def erased_row(sheet: Sheet, number: int) -> CheckedRow:
    """Row `number` refused as erased on request, under its key column (external_id when the
    row kept one, erasure keeping it; else email); no cell of it is read but that one."""
    position = number - sheet.first_row_number
    cells = cells_by_column(sheet.columns, sheet.rows[position]) if 0 <= position < len(sheet.rows) else {}
    column = "external_id" if cells.get("external_id") or "email" not in sheet.columns else "email"
    row = CheckedRow(number)
    row.refuse(column, ERASED_ROW_MESSAGE)
    return row


def _check_cells(number: int, cells: dict, index: dict, context: CheckContext) -> CheckedRow:
    row = CheckedRow(number)
    if cells.pop("__extra__", False):
        row.refuse("", "The row has more cells than the file has columns.")
    row.external_id = cells.get("external_id") or None
    if row.external_id is not None:
        try:
            clean_external_id(row.external_id)
        except InvalidField as exc:
            row.refuse("external_id", exc.messages[0])
    country = cells.get("country", "")
    for name in PROFILE_COLUMNS:
        if name not in cells:
            continue
        value = cells[name]
        if name in KEPT_WHEN_BLANK and value == "":
            continue
        if name == "lifecycle_stage":
            if value not in context.stages:
                row.refuse(name, f"'{value}' is not a lifecycle stage; the stages are: "
                                 f"{', '.join(sorted(context.stages))}.")
            else:
                row.values[name] = value
            continue
        if name == "phone" and value and not value.startswith("+") and not country:
            # Read in the stored contact's country, once it is known (_check_against_stored).
            row.values[name] = value
            continue
        try:
            row.values[name] = clean_profile_field(name, value, country=country.upper())
        except InvalidField as exc:
            row.refuse(name, exc.messages[0])
    if cells.get("messaging_paused"):
        paused = BOOLEAN_WORDS.get(cells["messaging_paused"].lower())
        if paused is None:
            row.refuse("messaging_paused", f"'{cells['messaging_paused']}' is not yes or no (true/false, 1/0).")
        else:
            row.values["messaging_paused"] = paused
    if cells.get("attributes"):
        row.attributes = _checked_attributes(row, cells["attributes"], context)
    if not row.external_id and not row.values.get("email") and not any(e.column == "email" for e in row.errors):
        row.refuse("external_id" if "external_id" in cells else "email",
                   "The row has neither an external_id nor an email to find the contact by.")
    row.consents = _checked_consents(row, cells, context)
    return row


def _checked_attributes(row: CheckedRow, text: str, context: CheckContext) -> dict | None:
    try:
        attributes = json.loads(text, parse_constant=refuse_non_json_number)
    except (ValueError, RecursionError):
        row.refuse("attributes", 'attributes must be a JSON object such as {"plan": "pro"}.')
        return None
    if not isinstance(attributes, dict):
        row.refuse("attributes", 'attributes must be a JSON object such as {"plan": "pro"}.')
        return None
    # What the API refuses in a body (omni.api.read_json_body): no JSON column stores it, and
    # one such row would fail the write of its whole chunk.
    unstorable = first_unstorable(attributes, "attributes")
    if unstorable:
        row.refuse("attributes", f"{unstorable[0]} contains {unstorable[1]}.")
        return None
    for name, data_type in context.attribute_types.items():
        if name in attributes:
            problem = type_problem(f"attributes.{name}", data_type, attributes[name])
            if problem:
                row.refuse("attributes", problem)
                return None
    return attributes


def _checked_consents(row: CheckedRow, cells: dict, context: CheckContext) -> list[dict]:
    evidence = cells.get("consent_evidence", "")
    if len(evidence) > MAX_EVIDENCE_LENGTH:
        row.refuse("consent_evidence", f"consent_evidence is longer than {MAX_EVIDENCE_LENGTH} characters.")
    occurred_at = _consent_time(row, cells.get("consent_at", ""), context.now)
    consents = []
    for column, basis_column, channel, purpose in CONSENT_SCOPES:
        if column not in cells and basis_column not in cells:
            continue
        status = cells.get(column, "").lower()
        basis = cells.get(basis_column, "").lower()
        if not status:
            if basis:
                row.refuse(basis_column, f"A lawful basis needs a consent to apply to: fill {column} "
                                         "(granted or revoked) or leave both blank.")
            continue
        if status not in CONSENT_VALUES:
            row.refuse(column, f"'{cells[column]}' is not granted or revoked (blank leaves the consent as it is).")
            continue
        if basis and basis not in LAWFUL_BASES:
            row.refuse(basis_column, f"'{cells[basis_column]}' is not a lawful basis; use one of "
                                     f"{', '.join(LawfulBasis.values)}.")
            continue
        if status == ConsentStatus.GRANTED and not evidence:
            row.refuse("consent_evidence", f"{column} grants consent: a grant needs evidence (what the person "
                                           "agreed to, where and how) in consent_evidence.")
            continue
        consents.append({"channel": channel, "purpose": purpose, "status": status, "lawful_basis": basis,
                         "evidence": evidence, "occurred_at": occurred_at})
    return consents


def _consent_time(row: CheckedRow, text: str, now: datetime) -> datetime:
    if not text:
        return now
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), time(), tzinfo=dt_timezone.utc)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        row.refuse("consent_at", f"'{text}' is not a date (2026-12-03) or a date and time with its offset "
                                 "(2026-12-03T09:15:00+01:00).")
        return now
    if moment > now:
        row.refuse("consent_at", f"consent_at '{text}' is in the future.")
        return now
    try:
        moment = moment.astimezone(dt_timezone.utc)
    except (OverflowError, ValueError):
        moment = None  # year 1 with a positive offset: before the first instant UTC can hold
    # The rule of every door (omni.lib.dates): nothing Omni hears about happened before EARLIEST.
    if moment is None or moment < EARLIEST:
        row.refuse("consent_at", f"consent_at '{text}' is before {EARLIEST:%Y-%m-%d}.")
        return now
    return moment


def _attach_stored_contacts(rows: list[CheckedRow], *, lock: bool) -> None:
    """Find the stored contact of each row, in one query: by external id, else by email among
    contacts without one."""
    external_ids = [row.external_id for row in rows if row.external_id and not row.errors]
    emails = [row.values["email"] for row in rows if not row.external_id and row.values.get("email")]
    if not external_ids and not emails:
        return
    if connection.vendor == "postgresql":
        # One array each rather than a placeholder per value: thousands of keys cost psycopg
        # more to bind one by one than the query costs the server.
        stored = Contact.objects.extra(
            where=["(external_id = ANY(%s::text[]) OR (email = ANY(%s::text[]) AND external_id IS NULL))"],
            params=[external_ids, emails]).order_by("pk")
    else:
        stored = Contact.objects.filter(
            Q(external_id__in=external_ids) | Q(email__in=emails, external_id__isnull=True)).order_by("pk")
    if lock:
        stored = stored.select_for_update()
    by_external_id, by_email = {}, {}
    for contact in stored:
        if contact.external_id:
            by_external_id[contact.external_id] = contact
        else:
            by_email.setdefault(contact.email, contact)
    for row in rows:
        if row.external_id:
            row.existing = by_external_id.get(row.external_id)
        elif row.values.get("email"):
            row.existing = by_email.get(row.values["email"])


def _check_against_stored(row: CheckedRow, seen: dict) -> None:
    key = ("external_id", row.external_id) if row.external_id else ("email", row.values.get("email"))
    if key[1]:
        first = seen.setdefault(key, row.number)
        if first != row.number:
            row.refuse(key[0], f"{key[0]} '{key[1]}' is also in row {first}: one row per contact.")
    existing = row.existing
    if existing is not None and existing.erased_at is not None:
        row.refuse(key[0], f"The contact with {key[0]} '{key[1]}' was erased and cannot be changed.")
    phone = row.values.get("phone")
    if phone and not phone.startswith("+"):
        try:
            row.values["phone"] = clean_profile_field("phone", phone, country=existing.country if existing else "")
        except InvalidField as exc:
            del row.values["phone"]
            row.refuse("phone", exc.messages[0])
    region = row.values.get("region")
    if region and "country" not in row.values and existing is not None and existing.country \
            and not region.startswith(f"{existing.country}-"):
        row.refuse("region", f"Region '{region}' is not in the contact's country {existing.country}.")


# --- Writing -------------------------------------------------------------------------------------

def write_rows(rows: list[CheckedRow], *, actor, contact_import: ContactImport | None = None) -> Written:
    """Write checked, valid rows (call inside a transaction, after check_rows with lock=True):
    contacts created by COPY and changed in one UPDATE, their consents handed to compliance in one
    batch, one audit entry per contact created or changed."""
    written = Written()
    now = timezone.now()
    new, changed, entries = [], [], []
    for row in rows:
        if row.existing is None:
            new.append(row)
        else:
            fields = _apply(row, now)
            if fields:
                changed.append((row, fields))
            else:
                written.unchanged += 1
    if new:
        values = [_new_contact_values(row) for row in new]
        ids = insert_rows(Contact, ["external_id", *WRITTEN_FIELDS, "created_at", "updated_at"],
                          [(*value, now, now) for value in values], set_ids=True)
        for row, contact_id in zip(new, ids):
            row.contact_id = contact_id
            fields = sorted([name for name, value in row.values.items() if value not in ("", False)]
                            + ["external_id"] * bool(row.external_id) + ["attributes"] * bool(row.attributes))
            entries.append(audit.build("contact.created", contact_id=contact_id,
                                       object_ref=("contacts.contact", str(contact_id)), actor=actor,
                                       reason="import", data={"fields": fields}, occurred_at=now))
        written.created = len(new)
    if changed:
        fields = sorted({name for _, names in changed for name in names} | {"updated_at"})
        bulk_update([row.existing for row, _ in changed], fields)
        for row, names in changed:
            entries.append(audit.build("contact.updated", contact_id=row.existing.pk,
                                       object_ref=("contacts.contact", str(row.existing.pk)), actor=actor,
                                       reason="import", data={"fields": names}, occurred_at=now))
        written.updated = len(changed)
    audit.record_many(entries)
    batch = [{**consent, "contact_id": row.contact_id or row.existing.pk,
              "evidence": _evidence(consent, row, contact_import)}
             for row in rows for consent in row.consents]
    if batch:
        hooks.send(hooks.consents_submitted, batch=batch, source="import", actor=actor, actor_label="")
        written.consents = len(batch)
    return written


def _new_contact_values(row: CheckedRow) -> tuple:
    """The values of a new contact, in the order of ("external_id", *WRITTEN_FIELDS)."""
    values = row.values
    return (
        row.external_id,
        values.get("email", ""), values.get("phone", ""), values.get("first_name", ""), values.get("last_name", ""),
        values.get("locale") or "en", values.get("timezone", ""), values.get("country", ""), values.get("region", ""),
        values.get("lifecycle_stage") or DEFAULT_LIFECYCLE_STAGE, values.get("messaging_paused", False),
        {key: value for key, value in (row.attributes or {}).items() if value is not None},
    )


def _apply(row: CheckedRow, now) -> list[str]:
    """Set the row's values that differ on its stored contact; the names of the fields changed."""
    changed = apply_changes(row.existing, row.values, row.attributes)
    if changed:
        row.existing.updated_at = now
    return changed


def _evidence(consent: dict, row: CheckedRow, contact_import: ContactImport | None) -> dict:
    evidence = {"row": row.number, "text": consent["evidence"]} if consent["evidence"] else {"row": row.number}
    if contact_import is not None:
        evidence.update({"import": contact_import.pk, "file": contact_import.file_name})
    return evidence


# --- An upload, from its page or its task --------------------------------------------------------

def start_import(file_name: str, text: str, *, actor) -> ContactImport:
    """Keep an uploaded file as a ContactImport, its rows counted; FileRefused when the file as a
    whole cannot be imported (nothing is kept then)."""
    sheet = read_file(text)
    return ContactImport.objects.create(file_name=file_name[:255], data=text, total_rows=len(sheet.rows),
                                        created_by=actor if getattr(actor, "is_authenticated", False) else None)


def runs_inline(contact_import: ContactImport) -> bool:
    """Whether the page checks and imports this file itself; larger files go to a Celery task."""
    return contact_import.total_rows <= settings.OMNI_IMPORT_INLINE_ROWS


def check_import(contact_import: ContactImport) -> ContactImport:
    """Check every row of the upload, writing nothing: its errors and counts, status validated."""
    sheet = _read_upload(contact_import)
    context = CheckContext.load()
    seen, errors, valid = {}, [], 0
    for start in range(0, len(sheet.rows), CHUNK):
        # Unlocked: this writes no contact, and _finish_checked settles rows erased meanwhile.
        erased = _erased_rows(contact_import)
        rows = check_rows(sheet, start, start + CHUNK, context, seen, erased=erased)
        valid += sum(1 for row in rows if not row.errors)
        errors += [entry for row in rows for entry in row.error_entries()]
        _set_progress(contact_import, processed_rows=min(start + CHUNK, len(sheet.rows)))
    return _finish_checked(contact_import, sheet, ImportStatus.VALIDATED, errors, checking=True, valid_rows=valid,
                           finished_at=None)


def run_import(contact_import: ContactImport, mode: str) -> ContactImport:
    """Import the upload: every row checked again (the stored contacts may have changed since),
    then the valid rows written, a chunk per transaction; with ALL_OR_NOTHING nothing is written
    when any row is bad (one transaction for the whole file)."""
    if mode not in dict(ContactImport.MODES):
        raise ValueError(f"Unknown import mode {mode!r}.")
    claimed = ContactImport.objects.filter(pk=contact_import.pk, status=ImportStatus.VALIDATED).update(
        status=ImportStatus.IMPORTING, mode=mode, processed_rows=0)
    if not claimed:
        contact_import.refresh_from_db()
        return contact_import
    contact_import.refresh_from_db()
    actor = contact_import.created_by
    sheet = _read_upload(contact_import)
    context = CheckContext.load()
    seen, errors, valid, imported = {}, [], 0, 0
    if mode == ContactImport.ALL_OR_NOTHING:
        try:
            with transaction.atomic():
                for start in range(0, len(sheet.rows), CHUNK):
                    # The first chunk locks the upload until the end: an erasure naming it waits.
                    erased = _erased_rows(contact_import, lock=True)
                    rows = check_rows(sheet, start, start + CHUNK, context, seen, lock=True, erased=erased)
                    errors += [entry for row in rows for entry in row.error_entries()]
                    good = [row for row in rows if not row.errors]
                    valid += len(good)
                    if errors:
                        continue
                    imported += write_rows(good, actor=actor, contact_import=contact_import).rows
                if errors:
                    raise _NothingImported
        except _NothingImported:
            imported = 0
    else:
        for start in range(0, len(sheet.rows), CHUNK):
            with transaction.atomic():
                # The upload's lock first, then its contacts' (as erasure takes them): the rows
                # erased before this point are refused, an erasure after it waits for the write.
                erased = _erased_rows(contact_import, lock=True)
                rows = check_rows(sheet, start, start + CHUNK, context, seen, lock=True, erased=erased)
                good = [row for row in rows if not row.errors]
                imported += write_rows(good, actor=actor, contact_import=contact_import).rows
            valid += len(good)
            errors += [entry for row in rows for entry in row.error_entries()]
            _set_progress(contact_import, processed_rows=min(start + CHUNK, len(sheet.rows)), imported_rows=imported)
    status = ImportStatus.FAILED if mode == ContactImport.ALL_OR_NOTHING and errors else ImportStatus.DONE
    finished = _finish_checked(contact_import, sheet, status, errors, checking=False, valid_rows=valid,
                               imported_rows=imported, finished_at=timezone.now(), data="")
    # An erasure that found this import holding its upload was queued (contacts.erasure_requests):
    # it is tried as soon as the import has let go, not at the next beat. By name: the task's module
    # imports this one.
    transaction.on_commit(lambda: task_named("contacts.tasks.carry_out_erasure_requests_task").delay(), robust=True)
    return finished


class _NothingImported(Exception):
    """Rolls an all-or-nothing import back when a row is bad."""


def cancel_import(contact_import: ContactImport) -> bool:
    """Import nothing of a checked upload; False when it is no longer waiting for a choice."""
    return bool(ContactImport.objects.filter(pk=contact_import.pk, status=ImportStatus.VALIDATED).update(
        status=ImportStatus.CANCELLED, data="", finished_at=timezone.now()))


def discard_unused_uploads(now=None) -> int:
    """Drop the file of every upload nobody imported or cancelled within OMNI_IMPORT_KEEP_HOURS
    (checked and left waiting, or stopped by an error): an upload holds people's personal data,
    which only an import may keep. A checked one is cancelled. Returns how many; audited."""
    now = now or timezone.now()
    stale = ContactImport.objects.filter(created_at__lt=now - timedelta(hours=settings.OMNI_IMPORT_KEEP_HOURS),
                                         status__in=[ImportStatus.VALIDATED, ImportStatus.FAILED]).exclude(data="")
    with transaction.atomic():
        cancelled = stale.filter(status=ImportStatus.VALIDATED).update(status=ImportStatus.CANCELLED, data="",
                                                                       finished_at=now)
        emptied = stale.update(data="")
        if cancelled or emptied:
            audit.record("contact_import.discarded", data={"cancelled": cancelled, "failed_emptied": emptied,
                                                           "keep_hours": settings.OMNI_IMPORT_KEEP_HOURS})
    return cancelled + emptied


def fail_import(contact_import_id: int, message: str) -> None:
    """Mark an upload whose check or import stopped on an unexpected error, saying so on its page."""
    ContactImport.objects.filter(pk=contact_import_id).exclude(status__in=[ImportStatus.DONE]).update(
        status=ImportStatus.FAILED, finished_at=timezone.now(),
        errors=[{"row": 0, "column": "", "message": message}])


def _set_progress(contact_import: ContactImport, **figures) -> None:
    ContactImport.objects.filter(pk=contact_import.pk).update(**figures)


def _read_upload(contact_import: ContactImport) -> Sheet:
    """The upload's file read, as many rows as it had: read_file drops trailing blank rows, and
    erasure blanks the rows it empties (contacts.import_erasure), which must still be refused."""
    sheet = read_file(contact_import.data)
    missing = contact_import.total_rows - len(sheet.rows)
    sheet.rows += [[""] * len(sheet.columns) for _ in range(missing)]
    return sheet


def _erased_rows(contact_import: ContactImport, *, lock: bool = False) -> frozenset:
    """The upload's rows erased so far (their numbers); with `lock`, its row locked until the
    transaction ends, so that no erasure records more meanwhile."""
    uploads = ContactImport.objects.select_for_update() if lock else ContactImport.objects
    return frozenset(uploads.values_list("erased_rows", flat=True).get(pk=contact_import.pk))


def _finish_checked(contact_import: ContactImport, sheet: Sheet, status: str, errors: list, *, checking: bool,
                    valid_rows: int, **figures) -> ContactImport:
    """_finish with the errors found, under the upload's row lock: the errors of a row erased
    after it was checked (which quote the person's values, taken out of the stored errors by
    erasure) become the one refusal quoting nothing. `checking`: a row found valid before its
    erasure is refused too (no longer counted valid); an import keeps a row it wrote before."""
    with transaction.atomic():
        last = sheet.first_row_number + len(sheet.rows) - 1
        erased = {number for number in _erased_rows(contact_import, lock=True) if number <= last}
        if erased:
            refused = {entry["row"] for entry in errors}
            settled = {number for number in erased if number in refused or checking}
            valid_rows -= len(settled - refused)
            errors = sorted([entry for entry in errors if entry["row"] not in settled]
                            + [entry for number in settled for entry in erased_row(sheet, number).error_entries()],
                            key=lambda entry: entry["row"])
        return _finish(contact_import, status, processed_rows=len(sheet.rows), valid_rows=valid_rows,
                       errors=errors, **figures)


def _finish(contact_import: ContactImport, status: str, **figures) -> ContactImport:
    figures["status"] = status
    ContactImport.objects.filter(pk=contact_import.pk).update(**figures)
    for name, value in figures.items():
        setattr(contact_import, name, value)
    return contact_import


def errors_as_rows(contact_import: ContactImport) -> list[list[str]]:
    """The upload's errors as CSV rows (row, column, message), header first."""
    return [["row", "column", "message"],
            *([str(e["row"]), e["column"], e["message"]] for e in contact_import.errors)]
