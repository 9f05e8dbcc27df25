"""What compliance staff export: each message with why it was allowed to go, the audit log, and
one contact's whole trail.

- The message export: one row per message in a filtered range (time, channel, purpose, outcome,
  journey, campaign, contact) with its contact, channel, purpose, template and version, journey
  (version and step) or campaign, the consent change the gate relied on and its lawful basis,
  every rule of every gate decision and its result, and the delivery outcome. CSV is streamed
  from a server-side cursor, related rows looked up once per chunk; XLSX is refused past
  settings.OMNI_EXPORT_XLSX_MAX_ROWS and points at CSV.
- The audit log export (the admin's "Export CSV"): on PostgreSQL the database writes the CSV
  itself (COPY ... TO STDOUT), formula cells neutralized in SQL by the rule of
  omni.lib.spreadsheet; elsewhere the same text is built in Python from a cursor.
- The contact report: one XLSX, a sheet each for messages as sent, decisions, consent changes,
  suppressions and audit entries, read through the timeline's queries.

Every cell goes through omni.lib.spreadsheet.neutralize_formula (or its SQL twin). Every export
is audited with its filters and its row count. A streamed export records "<what>.export_started"
with the filters before its first row (so a download cut short still leaves a trace) and
"<what>.exported" with the filters and the rows written after its last; a file built whole
records "<what>.exported" once.
"""
import csv
import json
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone
from typing import Callable, Iterable, Iterator

from django import forms
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import connection
from django.db.models import Exists, OuterRef, Q, Subquery

from campaigns.models import Campaign, Journey
from channels.models import Delivery, Message, MessageStatus
from compliance.decisions import in_words
from compliance.gate import BUILT_IN_RULES
from compliance.models import ConsentChange, Decision, Suppression, hash_address
from contacts.models import Contact
from omni import audit
from omni.choices import Channel, Purpose
from omni.lib.spreadsheet import neutralize_formula, neutralize_formula_sql, write_xlsx
from omni.models import AuditEntry

from . import timeline

EXPORT_PERMISSION = "omni.export_auditentry"
# Rows fetched per round trip, and per batch of related lookups: memory stays flat, queries per
# export grow with the chunks, not the rows.
CHUNK = 2000
# Bytes gathered before a piece of a stream goes to the client.
STREAM_BUFFER = 64 * 1024
CSV, XLSX = "csv", "xlsx"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def may_export(user) -> bool:
    return user.has_perm(EXPORT_PERMISSION)


def xlsx_max_rows() -> int:
    return settings.OMNI_EXPORT_XLSX_MAX_ROWS


# --- Cell text -----------------------------------------------------------------------------------

def cell_time(value) -> str:
    """A time as every export writes it: UTC, microseconds, "Z" (PostgreSQL's to_char below writes
    the same)."""
    if value is None:
        return ""
    return value.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


SQL_TIME_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


def json_text(value) -> str:
    """JSON as PostgreSQL prints a jsonb value (keys by length, then bytes; ", " and ": "), so a
    cell reads the same whichever path wrote it."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda key: (len(key.encode()), key.encode()))
        return "{" + ", ".join(f"{json.dumps(key, ensure_ascii=False)}: {json_text(value[key])}" for key in keys) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(json_text(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def plain(value):
    """A value as every export writes it: times by cell_time(), JSON by json_text()."""
    if isinstance(value, datetime):
        return cell_time(value)
    if isinstance(value, dict | list):
        return json_text(value)
    return value


def cell(value) -> str:
    """The text of one value in a CSV export, formula-safe."""
    return neutralize_formula(plain(value))


def plain_rows(rows: Iterable) -> Iterator[list]:
    # write_xlsx() neutralizes every cell itself.
    for row in rows:
        yield [plain(value) for value in row]


class _Echo:
    """A file whose write() hands the text back, so csv.writer can stream."""

    def write(self, value):
        return value


def csv_writer():
    # Every field quoted and "\n" between rows: as PostgreSQL's COPY ... (FORMAT csv, FORCE_QUOTE *).
    return csv.writer(_Echo(), quoting=csv.QUOTE_ALL, lineterminator="\n")


def buffered(pieces: Iterable) -> Iterator[bytes]:
    """Pieces of text or bytes gathered into blocks of about STREAM_BUFFER bytes; the first piece
    (the header) goes alone, so the download starts before the first rows are read."""
    pieces = iter(pieces)
    first = next(pieces, None)
    if first is not None:
        yield first.encode() if isinstance(first, str) else first
    block = bytearray()
    for piece in pieces:
        block += piece.encode() if isinstance(piece, str) else piece
        if len(block) >= STREAM_BUFFER:
            yield bytes(block)
            block = bytearray()
    if block:
        yield bytes(block)


# --- The message export ----------------------------------------------------------------------------

MESSAGE_HEADER = [
    "message_id", "created_at", "contact_id", "contact_external_id", "contact_email", "contact_phone",
    "channel", "channels_tried", "purpose", "source", "template", "template_version",
    "journey", "journey_version", "journey_step", "campaign", "campaign_variant",
    "consent_change_id", "consent_status", "consent_lawful_basis", "consent_source", "consent_at",
    "decision_outcome", "decision_reason", "decision_in_words", "rules",
    "message_status", "delivery_status", "provider", "sent_at", "delivered_at", "error_code", "error_message",
]


@dataclass(frozen=True)
class MessageFilters:
    since: datetime | None = None
    until: datetime | None = None
    channel: str = ""
    purpose: str = ""
    outcome: str = ""
    journey: Journey | None = None
    campaign: Campaign | None = None
    contact: Contact | None = None

    def as_data(self) -> dict:
        """The filters as the audit entry keeps them: plain values and ids."""
        return {"since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None,
                "channel": self.channel, "purpose": self.purpose, "outcome": self.outcome,
                "journey": self.journey.pk if self.journey else None,
                "campaign": self.campaign.pk if self.campaign else None,
                "contact": self.contact.pk if self.contact else None}


class MessageExportForm(forms.Form):
    """The filters of a message export, and its format. Every field may stay empty (everything)."""

    since = forms.DateTimeField(required=False, label="Created from",
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    until = forms.DateTimeField(required=False, label="Created before",
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    channel = forms.ChoiceField(required=False, choices=[("", "Any channel"), *Channel.choices])
    purpose = forms.ChoiceField(required=False, choices=[("", "Any purpose"), *Purpose.choices])
    outcome = forms.ChoiceField(required=False, choices=[("", "Any outcome"), *MessageStatus.choices])
    journey = forms.ModelChoiceField(required=False, queryset=Journey.objects.order_by("name"), empty_label="Any journey")
    campaign = forms.ModelChoiceField(required=False, queryset=Campaign.objects.order_by("name"),
                                      empty_label="Any campaign")
    contact = forms.CharField(required=False, max_length=254,
                              help_text="The contact's external id or email address.")
    format = forms.ChoiceField(choices=[(CSV, "CSV (any number of rows, streamed)"), (XLSX, "Excel (XLSX)")],
                               initial=CSV)

    def clean_contact(self):
        term = self.cleaned_data["contact"].strip()
        if not term:
            return None
        found = list(Contact.objects.filter(Q(external_id=term) | Q(email__iexact=term))[:2])
        if not found:
            raise forms.ValidationError("No contact has this external id or email address.")
        if len(found) > 1:
            raise forms.ValidationError("Several contacts have this email address: give the external id.")
        return found[0]

    def clean(self):
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since >= until:
            self.add_error("until", "Must be later than “Created from”.")
        return cleaned

    @property
    def filters(self) -> MessageFilters:
        data = self.cleaned_data
        return MessageFilters(since=data["since"], until=data["until"], channel=data["channel"],
                              purpose=data["purpose"], outcome=data["outcome"], journey=data["journey"],
                              campaign=data["campaign"], contact=data["contact"])


def messages_for(filters: MessageFilters):
    """The messages in range, oldest first."""
    messages = Message.objects.all()
    if filters.since:
        messages = messages.filter(created_at__gte=filters.since)
    if filters.until:
        messages = messages.filter(created_at__lt=filters.until)
    if filters.channel:
        # A message refused on a channel has a decision there but no delivery.
        messages = messages.filter(
            Exists(Delivery.objects.filter(message=OuterRef("pk"), channel=filters.channel))
            | Exists(Decision.objects.filter(message_id=OuterRef("pk"), channel=filters.channel)))
    if filters.purpose:
        messages = messages.filter(purpose=filters.purpose)
    if filters.outcome:
        messages = messages.filter(status=filters.outcome)
    if filters.journey:
        messages = messages.filter(journey_visit__journey=filters.journey)
    if filters.campaign:
        messages = messages.filter(campaign_recipient__campaign=filters.campaign)
    if filters.contact:
        messages = messages.filter(contact=filters.contact)
    return messages.order_by("created_at", "pk")


def message_rows(messages) -> Iterator[list]:
    """One row of MESSAGE_HEADER's values per message: the messages read by a server-side cursor
    in chunks of CHUNK, their decisions, deliveries and consent changes in three queries a chunk."""
    rows = messages.select_related(
        "contact", "template_version__template", "journey_visit__journey", "journey_visit__journey_version",
        "campaign_recipient__campaign", "campaign_recipient__variant")
    chunk = []
    for message in rows.iterator(chunk_size=CHUNK):
        chunk.append(message)
        if len(chunk) == CHUNK:
            yield from _rows_of(chunk)
            chunk = []
    yield from _rows_of(chunk)


def _rows_of(messages: list) -> Iterator[list]:
    if not messages:
        return
    ids = [message.pk for message in messages]
    decisions = {}
    for decision in Decision.objects.filter(message_id__in=ids).order_by("decided_at", "id"):
        decisions.setdefault(decision.message_id, []).append(decision)
    deliveries = {}
    for delivery in Delivery.objects.filter(message_id__in=ids).order_by("plan_step", "queued_at", "pk"):
        deliveries.setdefault(delivery.message_id, []).append(delivery)
    consent_ids = {d.consent_change_id for found in decisions.values() for d in found} - {None}
    consents = ConsentChange.objects.in_bulk(consent_ids) if consent_ids else {}
    for message in messages:
        yield _message_row(message, decisions.get(message.pk, []), deliveries.get(message.pk, []), consents)


def _message_row(message, decisions: list, deliveries: list, consents: dict) -> list:
    contact = message.contact
    version = message.template_version
    visit = related(message, "journey_visit")
    recipient = related(message, "campaign_recipient")
    last = decisions[-1] if decisions else None
    delivery = deliveries[-1] if deliveries else None
    consent = consents.get(last.consent_change_id) if last and last.consent_change_id else None
    tried = []
    for channel in [d.channel for d in decisions] + [d.channel for d in deliveries]:
        if channel not in tried:
            tried.append(channel)
    return [
        message.pk, message.created_at, contact.pk, contact.external_id, contact.email, contact.phone,
        delivery.channel if delivery else (last.channel if last else ""), " ".join(tried),
        message.purpose, timeline.message_source(message),
        version.template.key if version else "", version.number if version else "",
        visit.journey.name if visit else "",
        visit.journey_version.number if visit and visit.journey_version_id else "",
        visit.step_key if visit else "",
        recipient.campaign.name if recipient else "",
        recipient.variant.name if recipient and recipient.variant_id else "",
        consent.pk if consent else (last.consent_change_id if last else ""),
        consent.status if consent else (last.consent_status if last else ""),
        consent.lawful_basis if consent else "",
        consent.source if consent else "",
        consent.occurred_at if consent else "",
        last.outcome if last else "", last.reason if last else "",
        in_words(last) if last and last.outcome != "allow" else "",
        " | ".join(decision_rules(decision) for decision in decisions),
        message.status, delivery.status if delivery else "", delivery.provider if delivery else "",
        delivery.sent_at if delivery else "", delivery.delivered_at if delivery else "",
        delivery.error_code if delivery else "", delivery.error_message if delivery else "",
    ]


def related(message, name: str):
    """A message's reverse one-to-one (its journey visit or campaign recipient), or None."""
    try:
        return getattr(message, name)
    except ObjectDoesNotExist:
        return None


def decision_rules(decision) -> str:
    """One decision and every rule it ran with its result: "email step 0 allow: expiry pass; ...;
    quiet_hours #3 v2 defer (quiet_hours)". The gate keeps each built-in rule's result only when
    it did not pass (every failure is kept), so a built-in rule it kept nothing for passed."""
    kept = (decision.inputs or {}).get("rules", [])
    results = []
    for name in BUILT_IN_RULES:
        results += [_rule_text(rule) for rule in kept if rule.get("rule") == name] or [f"{name} pass"]
    results += [_rule_text(rule) for rule in kept if rule.get("rule") not in BUILT_IN_RULES]
    return f"{decision.channel} step {decision.plan_step} {decision.outcome}: " + "; ".join(results)


def _rule_text(rule: dict) -> str:
    name = str(rule.get("rule", "?"))
    if rule.get("id") is not None:
        name += f" #{rule['id']} v{rule.get('version', '?')}"
    reason = f" ({rule['reason']})" if rule.get("reason") and rule.get("result") != "pass" else ""
    return f"{name} {rule.get('result', '?')}{reason}"


@dataclass
class Download:
    """What a view sends: a stream of bytes, or a file built whole."""

    filename: str
    content_type: str
    stream: Iterator[bytes] | None = None
    file: object = None


class TooManyRowsForXlsx(Exception):
    def __init__(self, rows: int, limit: int):
        super().__init__(f"{rows:,} messages match, more than an Excel export holds ({limit:,}). "
                         f"Choose CSV, which streams any number of rows, or narrow the filters.")
        self.rows, self.limit = rows, limit


def export_messages(filters: MessageFilters, *, format: str, actor, now=None) -> Download:
    """The message export in `format`, audited. Raises TooManyRowsForXlsx for an XLSX past the limit."""
    stamp = f"{(now or datetime.now(dt_timezone.utc)):%Y%m%d-%H%M%S}"
    messages = messages_for(filters)
    data = filters.as_data()
    if format == XLSX:
        limit = xlsx_max_rows()
        # One row past the limit is enough to refuse: no count of a huge range.
        rows = messages[:limit + 1].count()
        if rows > limit:
            raise TooManyRowsForXlsx(messages.count(), limit)
        file = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
        counts = write_xlsx(file, [("Messages", MESSAGE_HEADER, plain_rows(message_rows(messages)))])
        audit.record("messages.exported", actor=actor, reason="xlsx", data={**data, "rows": counts["Messages"]})
        file.seek(0)
        return Download(f"omni-messages-{stamp}.xlsx", XLSX_TYPE, file=file)
    started = audit.record("messages.export_started", actor=actor, reason="csv", data=data)

    def lines():
        writer = csv_writer()
        yield writer.writerow(MESSAGE_HEADER)
        count = 0
        for count, row in enumerate(message_rows(messages), start=1):
            yield writer.writerow([cell(value) for value in row])
        audit.record("messages.exported", actor=actor, reason="csv",
                     data={**data, "rows": count, "started": started.pk})

    return Download(f"omni-messages-{stamp}.csv", "text/csv; charset=utf-8", stream=buffered(lines()))


# --- The audit log export --------------------------------------------------------------------------

AUDIT_COLUMNS = ["id", "seq", "occurred_at", "action", "actor_id", "actor_label", "contact_id", "channel",
                 "object_type", "object_id", "reason", "data", "hash"]
AUDIT_HEADER = [*AUDIT_COLUMNS[:5], "actor", *AUDIT_COLUMNS[6:], "contact_external_id"]
# Whole numbers, times and hex digests: the rule never changes them (a number is never
# neutralized, a time or a digest starts with a digit), so COPY leaves them as they are.
NEVER_FORMULAS = {"id", "seq", "actor_id", "contact_id", "occurred_at", "hash"}


def audit_copy_sql(queryset) -> str:
    """The COPY statement writing the entries of `queryset` as CSV: the entries (and each one's
    contact external id, looked up once) ordered in an inner query, their cells formatted and
    neutralized around it (PostgreSQL keeps the inner order: it sorts nothing again)."""
    external_id = Subquery(Contact.objects.filter(pk=OuterRef("contact_id")).order_by().values("external_id")[:1])
    inner = (queryset.order_by("occurred_at", "id").annotate(contact_external_id=external_id)
             .values_list(*AUDIT_COLUMNS, "contact_external_id"))
    sql, params = inner.query.sql_with_params()
    cells = []
    for name in [*AUDIT_COLUMNS, "contact_external_id"]:
        column = f'e."{name}"'
        if name == "occurred_at":
            cells.append(f"to_char({column} AT TIME ZONE 'UTC', '{SQL_TIME_FORMAT}')")
        elif name in NEVER_FORMULAS:
            cells.append(f"COALESCE({column}::text, '')")
        else:
            cells.append(neutralize_formula_sql(column))
    select = (f"SELECT {', '.join(cells)} FROM ({connection.ops.compose_sql(sql, params)}) AS e "
              f'ORDER BY e."occurred_at", e."id"')
    return f"COPY ({select}) TO STDOUT WITH (FORMAT csv, FORCE_QUOTE *)"


def audit_csv_copy(queryset, done: Callable[[int], None]) -> Iterator[bytes]:
    """The entries as CSV, written by PostgreSQL (COPY ... TO STDOUT) and streamed as it comes;
    `done(rows)` is called after the last row, before the last block is handed on."""
    statement = audit_copy_sql(queryset)
    yield (",".join(f'"{name}"' for name in AUDIT_HEADER) + "\n").encode()
    block = bytearray()
    with connection.cursor() as cursor:
        # The planner's cost for a whole table turns JIT compilation on, which holds the first row
        # back for most of a second and saves nothing on expressions this simple.
        cursor.execute("SET jit = off")
        try:
            with cursor.cursor.copy(statement) as copy:
                for data in copy:
                    block += data
                    if len(block) >= STREAM_BUFFER:
                        yield bytes(block)
                        block = bytearray()
            rows = cursor.cursor.rowcount
        finally:
            cursor.execute("RESET jit")
    done(rows)
    if block:
        yield bytes(block)


def audit_csv_python(queryset, done: Callable[[int], None]) -> Iterator[bytes]:
    """The same CSV as audit_csv_copy(), built in Python from a cursor (SQLite, and the reference
    a test compares PostgreSQL's with)."""
    def lines():
        writer = csv_writer()
        yield writer.writerow(AUDIT_HEADER)
        rows = queryset.order_by("occurred_at", "id").values_list(*AUDIT_COLUMNS)
        contact_at = AUDIT_COLUMNS.index("contact_id")
        chunk, count = [], 0
        for row in rows.iterator(chunk_size=CHUNK):
            chunk.append(row)
            if len(chunk) == CHUNK:
                yield from _audit_chunk(writer, chunk, contact_at)
                count += len(chunk)
                chunk = []
        yield from _audit_chunk(writer, chunk, contact_at)
        done(count + len(chunk))

    return buffered(lines())


def _audit_chunk(writer, rows, contact_at):
    # Entries keep plain contact ids; the external ids are looked up once per chunk.
    external_ids = dict(
        Contact.objects.filter(pk__in={row[contact_at] for row in rows} - {None}).values_list("pk", "external_id"))
    for row in rows:
        yield writer.writerow([cell(value) for value in row] + [cell(external_ids.get(row[contact_at]))])


def export_audit_entries(queryset, *, actor, scope: dict, now=None) -> Download:
    """The entries of `queryset` as a streamed CSV, audited: "audit.export_started" with the scope
    first (the export covers only the entries before it), "audit.exported" with the rows after."""
    started = audit.record("audit.export_started", actor=actor, reason="admin-csv", data=scope)
    queryset = queryset.filter(pk__lt=started.pk)

    def done(rows: int):
        audit.record("audit.exported", actor=actor, reason="admin-csv",
                     data={**scope, "rows": rows, "started": started.pk})

    stream = audit_csv_copy if connection.vendor == "postgresql" else audit_csv_python
    stamp = f"{(now or datetime.now(dt_timezone.utc)):%Y%m%d-%H%M%S}"
    return Download(f"omni-audit-{stamp}.csv", "text/csv; charset=utf-8", stream=stream(queryset, done))


# --- One contact's report --------------------------------------------------------------------------

REPORT_SHEETS = ["Messages as sent", "Decisions", "Consent changes", "Suppressions", "Audit entries"]

SENT_HEADER = ["message_id", "created_at", "purpose", "source", "template", "template_version", "message_status",
               "delivery_id", "channel", "plan_step", "provider", "to_address", "subject", "text_body",
               "delivery_status", "sent_at", "delivered_at", "error_code", "error_message"]
DECISION_HEADER = ["decided_at", "decision_id", "message_id", "channel", "plan_step", "purpose", "outcome", "reason",
                   "in_words", "defer_until", "consent_status", "consent_change_id", "lawful_basis", "rules"]
CONSENT_HEADER = ["occurred_at", "consent_change_id", "channel", "purpose", "status", "source", "lawful_basis",
                  "evidence", "actor"]
SUPPRESSION_HEADER = ["created_at", "suppression_id", "channel", "purpose", "reason", "detail", "address",
                      "expires_at", "created_by"]
AUDIT_REPORT_HEADER = ["occurred_at", "entry_id", "seq", "action", "actor", "channel", "object_type", "object_id",
                       "reason", "data"]


def _oldest_first(kind_name: str, contact: Contact):
    kind = timeline.KINDS_BY_NAME[kind_name]
    return timeline.rows_of(kind_name, contact.pk).order_by(kind.time_field, "pk")


def _sent_rows(contact) -> Iterator[list]:
    messages = _oldest_first("message", contact)
    for chunk in _chunks(messages.iterator(chunk_size=CHUNK)):
        deliveries = {}
        for delivery in Delivery.objects.filter(message__in=chunk).order_by("plan_step", "queued_at", "pk"):
            deliveries.setdefault(delivery.message_id, []).append(delivery)
        for message in chunk:
            version = message.template_version
            head = [message.pk, message.created_at, message.purpose, timeline.message_source(message),
                    version.template.key if version else "", version.number if version else "", message.status]
            for delivery in deliveries.get(message.pk, []) or [None]:
                yield head + ([delivery.pk, delivery.channel, delivery.plan_step, delivery.provider,
                               delivery.to_address, delivery.subject, delivery.text_body, delivery.status,
                               delivery.sent_at, delivery.delivered_at, delivery.error_code, delivery.error_message]
                              if delivery else [""] * 12)


def _decision_rows(contact) -> Iterator[list]:
    for chunk in _chunks(_oldest_first("decision", contact).iterator(chunk_size=CHUNK)):
        consents = ConsentChange.objects.in_bulk({d.consent_change_id for d in chunk} - {None})
        for decision in chunk:
            consent = consents.get(decision.consent_change_id)
            yield [decision.decided_at, decision.pk, decision.message_id, decision.channel, decision.plan_step,
                   decision.purpose, decision.outcome, decision.reason,
                   in_words(decision) if decision.outcome != "allow" else "", decision.defer_until,
                   decision.consent_status, decision.consent_change_id, consent.lawful_basis if consent else "",
                   decision_rules(decision)]


def _consent_rows(contact) -> Iterator[list]:
    for change in _oldest_first("consent", contact).iterator(chunk_size=CHUNK):
        yield [change.occurred_at, change.pk, change.channel, change.purpose, change.status, change.source,
               change.lawful_basis, change.evidence,
               change.actor.get_username() if change.actor_id else change.actor_label]


def _suppression_rows(contact) -> Iterator[list]:
    hashes = {hash_address(address) for address in (contact.email, contact.phone) if address}
    suppressions = (Suppression.objects.filter(Q(contact=contact) | Q(address_hash__in=hashes))
                    .select_related("created_by").order_by("created_at", "pk"))
    for row in suppressions:
        yield [row.created_at, row.pk, row.channel, row.purpose, row.reason, row.detail, row.address, row.expires_at,
               row.created_by.get_username() if row.created_by_id else ""]


def _audit_rows(contact) -> Iterator[list]:
    entries = AuditEntry.objects.filter(contact_id=contact.pk).order_by("occurred_at", "id")
    for entry in entries.iterator(chunk_size=CHUNK):
        yield [entry.occurred_at, entry.pk, entry.seq, entry.action, entry.actor_label, entry.channel,
               entry.object_type, entry.object_id, entry.reason, entry.data]


def _chunks(rows: Iterable) -> Iterator[list]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def contact_report(contact: Contact, *, actor, now=None) -> Download:
    """One XLSX with a sheet each for the contact's messages as sent (one row per delivery),
    decisions with their reason and consent basis, consent changes, suppressions and audit
    entries; audited as "contact.report_exported" with the rows of each sheet."""
    file = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
    counts = write_xlsx(file, [
        (REPORT_SHEETS[0], SENT_HEADER, plain_rows(_sent_rows(contact))),
        (REPORT_SHEETS[1], DECISION_HEADER, plain_rows(_decision_rows(contact))),
        (REPORT_SHEETS[2], CONSENT_HEADER, plain_rows(_consent_rows(contact))),
        (REPORT_SHEETS[3], SUPPRESSION_HEADER, plain_rows(_suppression_rows(contact))),
        (REPORT_SHEETS[4], AUDIT_REPORT_HEADER, plain_rows(_audit_rows(contact))),
    ])
    audit.record("contact.report_exported", contact=contact, obj=contact, actor=actor, reason="xlsx",
                 data={"rows": counts})
    file.seek(0)
    stamp = f"{(now or datetime.now(dt_timezone.utc)):%Y%m%d-%H%M%S}"
    return Download(f"omni-contact-{contact.pk}-{stamp}.xlsx", XLSX_TYPE, file=file)
