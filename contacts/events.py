"""The event stream: what systems and webhooks tell us about contacts, each event stored once.

Storing an event enrolls no one. The orchestration tick (campaigns) claims the events whose
processed_at is empty and acts on them, so an event is never lost between receipt and action.
"""
import hashlib
import json
import re
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from omni import audit
from omni.lib.dates import InvalidDate, clean_datetime

from .actions import ContactErased, InvalidField, clean_external_id, get_contact, upsert_contact
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
    InvalidField names a bad name, properties, occurred_at or idempotency key. Audits
    "event.received" for a new event.
    """
    values = clean_event(name, properties, occurred_at, idempotency_key, source)
    try:
        with transaction.atomic():
            return _store_event(contact, values, sent_by=sent_by, request_hash=request_hash), True
    except IntegrityError:
        # The same event was stored first by an earlier or concurrent delivery.
        return _stored_event(source, values["idempotency_key"], request_hash), False


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


def clean_event(name, properties, occurred_at, idempotency_key, source) -> dict:
    """The validated fields of an event; InvalidField names the first one at fault."""
    if not source or len(source) > 100:
        raise ValueError(f"An event source must be 1 to 100 characters, got {source!r}.")
    return {"name": clean_event_name(name), "properties": clean_properties(properties),
            "occurred_at": clean_occurred_at(occurred_at), "idempotency_key": clean_idempotency_key(idempotency_key),
            "source": source}


def _store_event(contact: Contact, values: dict, *, sent_by: str, request_hash: str) -> ContactEvent:
    event = ContactEvent.objects.create(contact=contact, sent_by=sent_by, request_hash=request_hash, **values)
    audit.record("event.received", contact=contact, obj=event, actor_label=sent_by or values["source"],
                 data={"name": event.name})
    return event


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
