"""The event stream: what systems and webhooks tell us about contacts, each event stored once.

Storing an event enrolls no one. The orchestration tick (campaigns) claims the events whose
processed_at is empty and acts on them, so an event is never lost between receipt and action.
"""
import json
import re
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from compliance import audit
from omni.lib.dates import InvalidDate, clean_datetime

from .actions import ContactErased, InvalidField, clean_external_id, get_contact, upsert_contact
from .models import Contact, ContactEvent

# Matched with fullmatch: "$" would also accept a name ending in a newline.
EVENT_NAME_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,100}")
# Properties are context for journeys and templates (an order id, a cart total), not a document
# store; every enrollment and message built from the event carries them along.
MAX_PROPERTIES_BYTES = 16 * 1024
MAX_IDEMPOTENCY_KEY_LENGTH = 255


def ingest_event(*, contact: Contact, name: str, properties: dict | None = None, occurred_at=None,
                 idempotency_key: str, source: str) -> tuple[ContactEvent, bool]:
    """Store one event for `contact`, once per (source, idempotency_key); return (event, created).

    A repeat returns the stored event with created=False, also when two copies race.
    `occurred_at` is an aware datetime, an ISO 8601 string with a UTC offset, or None for now.
    InvalidField names a bad name, properties, occurred_at or idempotency key. Audits
    "event.received" for a new event.
    """
    name = clean_event_name(name)
    properties = clean_properties(properties)
    occurred_at = clean_occurred_at(occurred_at)
    idempotency_key = clean_idempotency_key(idempotency_key)
    if not source or len(source) > 100:
        raise ValueError(f"An event source must be 1 to 100 characters, got {source!r}.")

    with transaction.atomic(savepoint=False):
        try:
            with transaction.atomic():
                event = ContactEvent.objects.create(
                    contact=contact, name=name, properties=properties, occurred_at=occurred_at,
                    source=source, idempotency_key=idempotency_key,
                )
        except IntegrityError:
            # The same event was stored first by an earlier or concurrent delivery.
            existing = ContactEvent.objects.filter(source=source, idempotency_key=idempotency_key).first()
            if existing is None:
                raise
            return existing, False
        audit.record("event.received", contact=contact, obj=event, actor_label=source, data={"name": name})
    return event, True


def receive_event(*, external_id: str, contact_data: dict | None = None, name: str,
                  properties: dict | None = None, occurred_at=None, idempotency_key: str,
                  source: str, actor_label: str) -> tuple[ContactEvent, bool]:
    """Store an event a system sent about the contact with `external_id`; return (event, created).

    With contact_data the contact is first created or updated from it (see upsert_contact);
    without, it must exist (ContactNotFound) and not be erased (ContactErased). A repeat of
    (source, idempotency_key) returns the stored event and changes nothing, not even the contact.
    One transaction: when the contact data or the event is invalid, nothing is stored.
    """
    name = clean_event_name(name)
    properties = clean_properties(properties)
    occurred_at = clean_occurred_at(occurred_at)
    idempotency_key = clean_idempotency_key(idempotency_key)
    external_id = clean_external_id(external_id)

    with transaction.atomic():
        existing = (
            ContactEvent.objects.select_related("contact")
            .filter(source=source, idempotency_key=idempotency_key)
            .first()
        )
        if existing is not None:
            return existing, False
        if contact_data:
            contact, _ = upsert_contact(external_id, contact_data, actor_label=actor_label)
        else:
            contact = get_contact(external_id)
            if contact.erased_at is not None:
                raise ContactErased(external_id)
        return ingest_event(
            contact=contact, name=name, properties=properties, occurred_at=occurred_at,
            idempotency_key=idempotency_key, source=source,
        )


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
