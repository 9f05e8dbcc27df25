"""The event stream: what systems and webhooks tell us about contacts, each event stored once.

Storing an event enrolls no one and writes nothing else: the event row is the durable record
of receipt. The orchestration tick (campaigns) claims the events whose processed_at is empty,
writes their "event.received" audit entries and acts on them, so an event is never lost
between receipt and action and the request does the least it can.
"""
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from omni.lib.bulk import RowInsert, insert_unless_taken, row_of
from omni.lib.dates import InvalidDate, clean_datetime
from omni.lib.sql import prepared_cursor

from .actions import ContactErased, ContactNotFound, InvalidField, clean_external_id, get_contact, upsert_contact
from .data_types import WrongType, check_properties
from .models import Contact, ContactEvent

# Matched with fullmatch: "$" would also accept a name ending in a newline.
EVENT_NAME_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,100}")
# Properties are context for journeys and templates (an order id, a cart total), not a document
# store; every enrollment and message built from the event carries them along.
MAX_PROPERTIES_BYTES = 16 * 1024
MAX_IDEMPOTENCY_KEY_LENGTH = 255


class IdempotencyKeyReused(Exception):
    """The idempotency key was already used for a different request; `event` is the stored one."""

    def __init__(self, event: ContactEvent):
        super().__init__(f"This idempotency key was already used for a different event (id {event.pk}).")
        self.event = event


def request_fingerprint(body) -> str:
    """SHA-256 of a request body in canonical JSON (sorted keys, no spaces): a retry of the same
    request has the same fingerprint however its sender orders or spaces the fields."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def ingest_event(*, contact: Contact, name: str, properties: dict | None = None, occurred_at=None,
                 idempotency_key: str, source: str, sent_by: str = "", request_hash: str = "",
                 ) -> tuple[ContactEvent, bool]:
    """Store one event for `contact`, once per (source, idempotency_key); return (event, created).

    A repeat returns the stored event with created=False, also when two copies race; a repeat
    whose request_hash differs from the stored one raises IdempotencyKeyReused.
    `occurred_at` is an aware datetime, an ISO 8601 string with a UTC offset, or None for now.
    InvalidField names a bad name, properties (down to a declared property of another type, e.g.
    properties.amount), occurred_at or idempotency key.
    """
    values = clean_event(name, properties, occurred_at, idempotency_key, source)
    try:
        with transaction.atomic():
            return _store_event(contact, values, sent_by=sent_by, request_hash=request_hash), True
    except IntegrityError:
        # The same event was stored first by an earlier or concurrent delivery.
        return _stored_event(source, values["idempotency_key"], request_hash), False


def store_events(events: list[dict], *, source: str) -> None:
    """Store many events of Omni's own making at once, each once per (source, idempotency_key).

    Each event is a dict of contact_id, name, idempotency_key and optionally properties and
    occurred_at, validated as ingest_event() validates them (InvalidField, and nothing stored);
    one INSERT writes them, and a key already stored is skipped.
    """
    rows = [_own_event(event, source) for event in events]
    if len(rows) == 1:
        insert_unless_taken(rows[0])  # one prepared statement: a webhook's own event
    elif rows:
        ContactEvent.objects.bulk_create(rows, ignore_conflicts=True)


def event_row(event: dict, *, source: str) -> RowInsert:
    """One event as store_events() stores it, as a row for omni.lib.bulk.insert_from_json() (a
    key already stored is skipped)."""
    return row_of(_own_event(event, source), skip_taken=True)


def _own_event(event: dict, source: str) -> ContactEvent:
    # Omni's own events are not held to the declared property types: a marketer's declaration
    # must never make Omni drop an inbound reply.
    return ContactEvent(contact_id=event["contact_id"],
                        **clean_event(event["name"], event.get("properties"), event.get("occurred_at"),
                                      event["idempotency_key"], source, check_types=False))


def receive_event(*, external_id: str, contact_data: dict | None = None, name: str,
                  properties: dict | None = None, occurred_at=None, idempotency_key: str,
                  source: str, actor_label: str, request_hash: str = "") -> tuple[ContactEvent, bool]:
    """Store an event a system sent about the contact with `external_id`; return (event, created).

    With contact_data the contact is first created or updated from it (see upsert_contact);
    without, it must exist (ContactNotFound) and not be erased (ContactErased). A repeat of
    (source, idempotency_key) returns the stored event and changes nothing, not even the contact;
    one with another request_hash raises IdempotencyKeyReused. `actor_label` (the API key) is
    kept on the event as sent_by. One transaction: when the contact data or the event is
    invalid, or a concurrent request stored the same key first, nothing is stored.
    """
    values = clean_event(name, properties, occurred_at, idempotency_key, source)
    external_id = clean_external_id(external_id)

    try:
        with transaction.atomic():
            existing = _find_event(source, values["idempotency_key"])
            if existing is not None:
                return _same_request(existing, request_hash), False
            if contact_data:
                contact, _ = upsert_contact(external_id, contact_data, actor_label=actor_label)
            else:
                contact = get_contact(external_id)
                if contact.erased_at is not None:
                    raise ContactErased(external_id)
            # No savepoint: if another request claimed the key meanwhile, the IntegrityError
            # rolls back this whole transaction, the contact update and its audit entries too.
            return _store_event(contact, values, sent_by=actor_label, request_hash=request_hash), True
    except IntegrityError:
        existing = _find_event(source, values["idempotency_key"])
        if existing is None:
            raise
        return _same_request(existing, request_hash), False


@dataclass
class EventSubmission:
    """One event as a system sent it, not yet validated: receive_events() checks every field."""

    external_id: object
    name: object
    idempotency_key: object
    properties: object = None
    occurred_at: object = None
    contact_data: dict = field(default_factory=dict)
    request_hash: str = ""


@dataclass
class EventOutcome:
    """What became of one submission: stored (created), a repeat of a stored event, or refused.

    `error` is the refusal: InvalidField (naming the field), IdempotencyKeyReused,
    ContactNotFound or ContactErased; `event` is then None.
    """

    event: ContactEvent | None = None
    external_id: str = ""
    created: bool = False
    error: Exception | None = None


@dataclass
class _Accepted:
    index: int
    external_id: str
    values: dict
    request_hash: str


def receive_events(submissions: list[EventSubmission], *, source: str, actor_label: str) -> list[EventOutcome]:
    """Store many events at once, each on its own; return one EventOutcome per submission, in order.

    Each event follows receive_event()'s rules: stored once per (source, idempotency_key), a
    repeat answered with the stored event, one with another request_hash refused
    (IdempotencyKeyReused), its contact required to exist and not be erased, nothing of a
    refused event stored. Events about existing contacts (no contact_data) are stored in one
    statement, whatever their number, and repeats and
    refusals are sorted out with two more queries; events carrying contact data go through
    receive_event() one by one, as their contact must be written first, and so do the later
    events about their contact or with their key.
    """
    outcomes: list[EventOutcome | None] = [None] * len(submissions)
    accepted: list[_Accepted] = []
    # An event after one carrying contact data, about the same contact or with the same key, goes
    # one by one after it, as two requests sent in that order would: its contact then exists,
    # and of the two with one key the first is stored.
    one_by_one_ids, one_by_one_keys = set(), set()
    for index, submission in enumerate(submissions):
        external_id = submission.external_id if isinstance(submission.external_id, str) else None
        key = submission.idempotency_key if isinstance(submission.idempotency_key, str) else None
        if submission.contact_data or external_id in one_by_one_ids or key in one_by_one_keys:
            one_by_one_ids.update({external_id} - {None})
            one_by_one_keys.update({key} - {None})
            continue
        try:
            values = clean_event(submission.name, submission.properties, submission.occurred_at,
                                 submission.idempotency_key, source)
            external_id = clean_external_id(submission.external_id)
        except InvalidField as exc:
            outcomes[index] = EventOutcome(error=exc)
            continue
        accepted.append(_Accepted(index, external_id, values, submission.request_hash))

    # Only the first of several submissions with one key is inserted; the others are then
    # repeats (or reuses) of it, like retries arriving later.
    firsts = {}
    for item in accepted:
        firsts.setdefault(item.values["idempotency_key"], item)
    now = timezone.now()
    stored = _insert_events(list(firsts.values()), source=source, sent_by=actor_label, now=now)
    for key, (event_id, contact_id) in stored.items():
        item = firsts[key]
        event = ContactEvent(pk=event_id, contact_id=contact_id, received_at=now, sent_by=actor_label,
                             request_hash=item.request_hash, **item.values)
        outcomes[item.index] = EventOutcome(event=event, external_id=item.external_id, created=True)
    _explain_not_stored([item for item in accepted if outcomes[item.index] is None], outcomes, source)

    for index, submission in enumerate(submissions):
        if outcomes[index] is None:
            outcomes[index] = _receive_with_contact(submission, source=source, actor_label=actor_label)
    return outcomes


def _insert_events(items: list[_Accepted], *, source: str, sent_by: str, now) -> dict[str, tuple[int, int]]:
    """Insert the events whose contact exists and is not erased and whose key is new, in one
    statement; return {idempotency_key: (event id, contact id)} of those inserted."""
    if not items:
        return {}
    rows = [(item.external_id, item.values["name"], json.dumps(item.values["properties"]),
             item.values["occurred_at"], item.values["idempotency_key"], item.request_hash) for item in items]
    postgres = connection.vendor == "postgresql"
    if postgres and len(rows) > 1:
        # Six arrays for any number of events: one statement text, prepared once per connection
        # (a VALUES row per event would make a new text for every count).
        given = "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::text[])"
        params = [list(column) for column in zip(*rows)]
    else:
        row = "(%s, %s, %s, %s::timestamptz, %s, %s)" if postgres else "(%s, %s, %s, %s, %s, %s)"
        given = "VALUES " + ", ".join([row] * len(rows))
        adapt = (lambda value: value) if postgres else connection.ops.adapt_datetimefield_value
        params = [value for r in rows for value in (*r[:3], adapt(r[3]), *r[4:])]
        now = adapt(now)
    # "WHERE true" lets SQLite tell the ON CONFLICT clause from a join condition.
    with prepared_cursor() as cursor:
        cursor.execute(f"""
            WITH v(external_id, name, properties, occurred_at, key, hash) AS ({given})
            INSERT INTO contacts_contactevent
                   (contact_id, name, properties, occurred_at, received_at, source, sent_by, idempotency_key,
                    request_hash)
            SELECT c.id, v.name, {"v.properties::jsonb" if postgres else "v.properties"}, v.occurred_at, %s, %s, %s,
                   v.key, v.hash
            FROM v JOIN contacts_contact c ON c.external_id = v.external_id AND c.erased_at IS NULL
            WHERE true
            ON CONFLICT (source, idempotency_key) DO NOTHING
            RETURNING id, contact_id, idempotency_key""", [*params, now, source, sent_by])
        return {key: (event_id, contact_id) for event_id, contact_id, key in cursor.fetchall()}


def _explain_not_stored(items: list[_Accepted], outcomes: list, source: str) -> None:
    """Fill the outcomes of accepted events the insert skipped: repeats of a stored event (or
    reuses of its key), else events about a contact that is unknown or erased."""
    if not items:
        return
    existing = _events_by_key(source, {item.values["idempotency_key"] for item in items})
    unexplained = {item.external_id for item in items if item.values["idempotency_key"] not in existing}
    erased = set(
        Contact.objects.filter(external_id__in=unexplained, erased_at__isnull=False).values_list("external_id", flat=True)
    ) if unexplained else set()
    for item in items:
        event = existing.get(item.values["idempotency_key"])
        if event is not None:
            try:
                outcomes[item.index] = EventOutcome(event=_same_request(event, item.request_hash),
                                                    external_id=event.contact_external_id)
            except IdempotencyKeyReused as exc:
                outcomes[item.index] = EventOutcome(error=exc)
        elif item.external_id in erased:
            outcomes[item.index] = EventOutcome(error=ContactErased(item.external_id))
        else:
            outcomes[item.index] = EventOutcome(error=ContactNotFound(item.external_id))


def _events_by_key(source: str, keys: set[str]) -> dict[str, ContactEvent]:
    """The stored events of `source` with these idempotency keys, each with its contact's
    external id as `contact_external_id`."""
    # A raw query: every retried request asks this, and compiling the ORM's join costs more
    # than the lookup itself.
    events = ContactEvent.objects.raw(
        f"""SELECT e.*, c.external_id AS contact_external_id
            FROM contacts_contactevent e JOIN contacts_contact c ON c.id = e.contact_id
            WHERE e.source = %s AND e.idempotency_key IN ({", ".join(["%s"] * len(keys))})""",
        [source, *keys])
    return {event.idempotency_key: event for event in events}


def _receive_with_contact(submission: EventSubmission, *, source: str, actor_label: str) -> EventOutcome:
    try:
        event, created = receive_event(
            external_id=submission.external_id, contact_data=submission.contact_data, name=submission.name,
            properties=submission.properties, occurred_at=submission.occurred_at,
            idempotency_key=submission.idempotency_key, source=source, actor_label=actor_label,
            request_hash=submission.request_hash,
        )
    except (InvalidField, IdempotencyKeyReused, ContactNotFound, ContactErased) as exc:
        return EventOutcome(error=exc)
    return EventOutcome(event=event, external_id=event.contact.external_id, created=created)


def clean_event(name, properties, occurred_at, idempotency_key, source, *, check_types: bool = True) -> dict:
    """The validated fields of an event; InvalidField names the first one at fault, down to a
    declared property of the wrong type (`properties.amount`) unless check_types is False."""
    if not source or len(source) > 100:
        raise ValueError(f"An event source must be 1 to 100 characters, got {source!r}.")
    name = clean_event_name(name)
    properties = clean_properties(properties)
    if check_types:
        try:
            check_properties(name, properties)
        except WrongType as exc:
            raise InvalidField(exc.field, exc.messages[0], code=exc.code) from None
    return {"name": name, "properties": properties,
            "occurred_at": clean_occurred_at(occurred_at), "idempotency_key": clean_idempotency_key(idempotency_key),
            "source": source}


def _store_event(contact: Contact, values: dict, *, sent_by: str, request_hash: str) -> ContactEvent:
    return ContactEvent.objects.create(contact=contact, sent_by=sent_by, request_hash=request_hash, **values)


def _find_event(source: str, idempotency_key: str) -> ContactEvent | None:
    return (
        ContactEvent.objects.select_related("contact")
        .filter(source=source, idempotency_key=idempotency_key)
        .first()
    )


def _stored_event(source: str, idempotency_key: str, request_hash: str) -> ContactEvent:
    existing = _find_event(source, idempotency_key)
    if existing is None:
        raise IntegrityError(f"No event {source}/{idempotency_key} after a unique violation.")
    return _same_request(existing, request_hash)


def _same_request(existing: ContactEvent, request_hash: str) -> ContactEvent:
    # An event stored before hashes were kept cannot be compared: it counts as the same.
    if request_hash and existing.request_hash and request_hash != existing.request_hash:
        raise IdempotencyKeyReused(existing)
    return existing


def clean_event_name(name) -> str:
    if not isinstance(name, str) or not EVENT_NAME_PATTERN.fullmatch(name):
        raise InvalidField(
            "name", "name must be 1 to 100 letters, digits or . _ - : (e.g. order.placed).",
        )
    return name


def clean_properties(properties) -> dict:
    if properties is None:
        return {}
    if not isinstance(properties, dict):
        raise InvalidField("properties", "properties must be a JSON object.")
    if len(json.dumps(properties, separators=(",", ":"))) > MAX_PROPERTIES_BYTES:
        raise InvalidField("properties", f"properties are larger than {MAX_PROPERTIES_BYTES} bytes as JSON.")
    return properties


def clean_occurred_at(occurred_at) -> datetime:
    """When the event happened: now when not given, else a sane aware date (omni.lib.dates)."""
    if occurred_at is None:
        return timezone.now()
    try:
        return clean_datetime(occurred_at, field="occurred_at")
    except InvalidDate as exc:
        raise InvalidField("occurred_at", exc.messages[0]) from None


def clean_idempotency_key(idempotency_key) -> str:
    if not isinstance(idempotency_key, str) or not idempotency_key.strip():
        raise InvalidField(
            "idempotency_key", "The idempotency key (Idempotency-Key header or event_id) must be a non-empty string.",
        )
    if len(idempotency_key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidField(
            "idempotency_key", f"The idempotency key is longer than {MAX_IDEMPOTENCY_KEY_LENGTH} characters.",
        )
    return idempotency_key
