"""Erasure in contact imports: an erased contact's values taken out of the imports that name
them (contacts/erasure.py calls erase_from_imports while the contact's values are still set).

An import's errors (ContactImport.errors) quote the cells of the rows they refuse, and an upload
kept until it is imported keeps its file (ContactImport.data); both may name the person. A check
or an import already running read the file before: the numbers of the rows emptied are recorded
(ContactImport.erased_rows) under the upload's row lock, which each of its chunks takes first, so
that it refuses those rows rather than making the person again from their email.
"""
import csv
import io
import json
import re

from django.db import OperationalError, connection
from django.db.models import Q, TextField
from django.db.models.functions import Cast

from omni.lib.spreadsheet import cells_by_column

from .models import Contact, ContactImport

ERASED = "[erased]"
# A value an error message quotes ('...' as the messages write it, "..." when repr or JSON does),
# not an apostrophe inside a word ("the contact's country").
QUOTED_VALUE = re.compile(r"""(?<!\w)'[^']*'(?!\w)|(?<!\w)"[^"]*"(?!\w)""")
# The values messages from other modules give unquoted: a region and the country it is not in
# (contacts.actions.clean_profile_field), a value of the wrong type (contacts.data_types).
UNQUOTED_VALUES = (re.compile(r"^Region (\S+) is not in"), re.compile(r"country ([A-Z]{2})\.$"),
                   re.compile(r", not (.+)\.$"))


# How long an erasure waits for an import that names the contact: a chunk of a valid-rows import
# holds its upload for a moment, an all-or-nothing import until it ends.
IMPORT_LOCK_WAIT = "5s"
LOCK_NOT_AVAILABLE = "55P03"


class ImportRunning(Exception):
    """An erasure that would wait for an import naming the contact to end (request_erasure, in
    contacts/erasure_requests.py, queues it until the import has finished)."""

    def __init__(self):
        super().__init__("An import that names this contact is running (Contacts › Contact imports); nothing was "
                         "erased.")


def imports_naming(contact: Contact) -> list[ContactImport]:
    """The imports whose errors or kept file may name the contact, locked until the transaction
    ends, in one query. Erasure takes these locks before the contact's (a running import's chunk
    takes its upload's, then its contacts'), and calls this while the contact's values are set."""
    values = [value for value in (contact.email, contact.phone) if value]
    keys = [key for key in (contact.external_id, contact.email) if key]
    naming = Q()
    for value in values:
        for form in {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}:
            naming |= Q(errors_text__icontains=form)
    # Both backends write a JSON object's members as "key": value (SQLite as json.dumps does,
    # PostgreSQL as jsonb does), non-ASCII escaped by the first only.
    naming |= Q(errors_text__contains=f'"contact": {contact.pk},') | \
        Q(errors_text__contains=f'"contact": {contact.pk}}}')
    if contact.external_id:
        for form in {json.dumps(contact.external_id), json.dumps(contact.external_id, ensure_ascii=False)}:
            naming |= Q(errors_text__contains=f'"external_id": {form}')
    in_file = Q()
    for key in keys:
        in_file |= Q(data__icontains=key)
    imports = (ContactImport.objects.annotate(errors_text=Cast("errors", TextField()))
               .filter((~Q(errors=[]) & naming) | (~Q(data="") & in_file)).order_by("pk").select_for_update())
    if connection.vendor != "postgresql":
        return list(imports)
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{IMPORT_LOCK_WAIT}'")
        try:
            locked = list(imports)
        except OperationalError as exc:
            # The transaction is aborted: the caller's erasure rolls back, the setting with it.
            if getattr(exc.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE:
                raise ImportRunning() from exc
            raise
        cursor.execute("SET LOCAL lock_timeout TO DEFAULT")
    return locked


def erase_from_imports(contact: Contact, candidates: list[ContactImport]) -> dict:
    """Take the contact's values out of `candidates` (imports_naming(), called before): the
    errors of the rows about them (found by the row's key or matched contact, and for entries
    written before errors named them, by their email or phone in the text) lose every value they
    quote, and a kept file loses their rows (all but the external id, which erasure keeps, so
    importing it later refuses the row), their numbers added to erased_rows for a check or an
    import that read the file before. Call with the contact's values still set. One UPDATE per
    import that names them."""
    values = [value for value in (contact.email, contact.phone) if value]
    errors_emptied = files_emptied = rows_emptied = 0
    for contact_import in candidates:
        changes = {}
        errors = _errors_without(contact_import.errors, contact, values)
        if errors != contact_import.errors:
            changes["errors"] = errors
            errors_emptied += 1
        if contact_import.data:
            data, numbers = _data_without(contact_import.data, contact)
            if numbers:
                changes["data"] = data
                changes["erased_rows"] = sorted({*contact_import.erased_rows, *numbers})
                files_emptied += 1
                rows_emptied += len(numbers)
        if changes:
            ContactImport.objects.filter(pk=contact_import.pk).update(**changes)
    return {"import_errors": errors_emptied, "import_files": files_emptied, "import_rows": rows_emptied}


def _errors_without(errors: list, contact: Contact, values: list[str]) -> list:
    lowered = [value.lower() for value in values]

    def about(entry: dict) -> bool:
        return (entry.get("contact") == contact.pk
                or bool(contact.external_id) and entry.get("external_id") == contact.external_id
                or bool(contact.email) and entry.get("email") == contact.email
                or any(value in entry.get("message", "").lower() for value in lowered))

    # Every error of a row about the person quotes their cells; row 0 is the import's own failure.
    rows = {entry.get("row") for entry in errors if about(entry)} - {0}
    return [_entry_without(entry, values) if entry.get("row") in rows or about(entry) else entry
            for entry in errors]


def _entry_without(entry: dict, values: list[str]) -> dict:
    message = entry.get("message", "")
    for value in values:
        message = re.sub(re.escape(value), ERASED, message, flags=re.IGNORECASE)
    message = QUOTED_VALUE.sub(ERASED, message)
    for pattern in UNQUOTED_VALUES:
        match = pattern.search(message)
        if match:
            message = message[:match.start(1)] + ERASED + message[match.end(1):]
    entry = {**entry, "message": message}
    entry.pop("email", None)
    return entry


def _data_without(text: str, contact: Contact) -> tuple[str, list[int]]:
    """The upload's CSV with the contact's rows emptied but for their external id (numbering
    kept), and those rows' numbers as the import counts them (the header is row 1)."""
    lines = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline="")))
    if not lines:
        return text, []
    columns = [name.strip().lower() for name in lines[0]]
    email = contact.email.lower()
    numbers = []
    for number, cells in enumerate(lines[1:], start=1):
        values = cells_by_column(columns, cells)
        external_id = values.get("external_id", "")
        if (external_id and external_id == contact.external_id) or \
                (email and values.get("email", "").strip().lower() == email):
            lines[number] = [external_id if name == "external_id" else "" for name in columns]
            numbers.append(number + 1)
    if not numbers:
        return text, []
    out = io.StringIO()
    csv.writer(out).writerows(lines)
    return out.getvalue(), numbers
