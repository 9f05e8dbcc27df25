"""Changing contacts: every create and update from systems goes through upsert_contact()."""
import functools
import json
import re
import zoneinfo

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.utils.timezone import now

from omni import audit
from omni.choices import Channel, ConsentStatus, LawfulBasis, Purpose
from omni.lib.sql import lock_until_commit

from . import hooks
from .data_types import WrongType, check_attributes, is_lifecycle_stage
from .models import Contact, lifecycle_stage_keys
from .phones import normalize_phone, validate_region

PROFILE_FIELDS = frozenset(
    {"email", "phone", "first_name", "last_name", "locale", "timezone", "country", "region", "lifecycle_stage"}
)
CONTACT_FIELDS = PROFILE_FIELDS | {"attributes", "consents"}
CONSENT_FIELDS = frozenset({"channel", "purpose", "status", "lawful_basis", "evidence"})
# A consent is given, withdrawn or unknown; "pending" (double opt-in) is Omni's to set.
SUBMITTED_CONSENT_STATUSES = [ConsentStatus.GRANTED, ConsentStatus.REVOKED, ConsentStatus.UNKNOWN]
LOCALE_PATTERN = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
COUNTRY_PATTERN = re.compile(r"[A-Za-z]{2}")
# Control characters (NUL, newline...) and lone surrogates: never part of an id, and NUL and
# surrogates cannot even be stored.
ID_FORBIDDEN = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


class InvalidField(ValidationError):
    """Input that cannot be stored; `field` names the part at fault (e.g. "phone", "consents[0].channel")."""

    def __init__(self, field: str, message: str, code: str = "invalid_field"):
        super().__init__(message, code=code)
        self.field = field


class ContactNotFound(Contact.DoesNotExist):
    """No contact has this external id."""

    def __init__(self, external_id: str):
        super().__init__(f"No contact has external_id '{external_id}'.")
        self.external_id = external_id


class ContactErased(Exception):
    """The contact's personal data was erased on request; it may not be filled in again."""

    def __init__(self, external_id: str):
        super().__init__(f"The contact with external_id '{external_id}' was erased and cannot be changed.")
        self.external_id = external_id


def upsert_contact(external_id: str, data: dict, *, actor_label: str) -> tuple[Contact, bool]:
    """Create or update the contact with this external id from `data`; return (contact, created).

    `data` may hold email, phone, first_name, last_name, locale, timezone, country, region
    (ISO 3166-2, within `country` when both are given), lifecycle_stage, attributes (merged
    into the stored ones; a null value removes a key; a declared one must hold its type, see
    contacts.data_types) and
    consents ([{"channel", "purpose", "status", "lawful_basis", "evidence"}], recorded through
    compliance.actions.record_consent_change). Everything is validated before anything is
    written, and everything is written in one transaction: InvalidField names the first field
    at fault and nothing is stored. Raises ContactErased for a contact erased on request.
    Audits "contact.created" or "contact.updated" with the names of the changed fields.
    """
    external_id = clean_external_id(external_id)
    if not isinstance(data, dict):
        raise InvalidField("contact", "Contact data must be a JSON object.")
    unknown = sorted(set(data) - CONTACT_FIELDS)
    if unknown:
        raise InvalidField(unknown[0], f"Unknown contact field(s): {', '.join(unknown)}.", code="unknown_field")
    attribute_changes = clean_attributes(data["attributes"]) if "attributes" in data else {}
    # A national phone number is read in the payload's country, else the one stored; a region
    # must lie in that country too (as the import and the contact form have it).
    country = clean_profile_field("country", data["country"]) if data.get("country") else ""
    national_phone = isinstance(data.get("phone"), str) and not data["phone"].strip().startswith("+")
    if not country and (national_phone or (data.get("region") and "country" not in data)):
        stored = Contact.objects.filter(external_id=external_id).values_list("country", flat=True).first()
        country = (stored or "").upper()
    values = {
        field: clean_profile_field(field, value, country=country)
        for field, value in data.items() if field in PROFILE_FIELDS
    }
    consents = clean_consents(data["consents"]) if "consents" in data else []

    with transaction.atomic():
        contact, created = lock_or_create_contact(external_id, values, attribute_changes)
        if created:
            changed = [field for field, value in values.items() if value != ""]
            if contact.attributes:
                changed.append("attributes")
            audit.record("contact.created", contact=contact, obj=contact, actor_label=actor_label,
                         data={"fields": sorted(changed)})
        else:
            if contact.erased_at is not None:
                raise ContactErased(external_id)
            changed = apply_changes(contact, values, attribute_changes)
            if changed:
                contact.save(update_fields=[*changed, "updated_at"])
                audit.record("contact.updated", contact=contact, obj=contact, actor_label=actor_label,
                             data={"fields": changed})
        if consents:
            record_consents(contact, consents, actor_label=actor_label)
    return contact, created


def contact_for_unknown_sender(field: str, address: str, *, actor_label: str) -> tuple[Contact | None, bool]:
    """The contact whose `field` ("phone" or "email") is `address`, made for it if there is none;
    returns (contact, created), or (None, False) when the address is not a valid phone number or
    email address. Call inside a transaction.

    A contact made here is marked unknown_sender, holds only the address and is audited; no
    consent is assumed for it. Two messages at once from one new address make one contact: on
    PostgreSQL the address is locked (an advisory lock held until commit) before it is looked up
    again; SQLite's IMMEDIATE transactions already run one writer at a time.
    """
    try:
        address = clean_profile_field(field, address)
    except InvalidField:
        return None, False
    if not address:
        return None, False
    lock_until_commit(f"contact:{field}:{address}")
    contact = Contact.objects.reachable().filter(**{field: address}).order_by("pk").first()
    if contact is not None:
        return contact, False
    contact = Contact.objects.create(**{field: address}, unknown_sender=True)
    audit.record("contact.created", contact=contact, obj=contact, actor_label=actor_label, reason="unknown_sender",
                 data={"fields": [field], "unknown_sender": True})
    return contact, True


def set_preferred_channel(contact: Contact, channel: str, *, actor_label: str) -> bool:
    """Set the channel the contact prefers ("" for none), audited. False when it was already set."""
    if channel and channel not in Channel.values:
        raise ValueError(f"Unknown channel {channel!r}.")
    with transaction.atomic():
        if not Contact.objects.filter(pk=contact.pk).exclude(preferred_channel=channel).update(
                preferred_channel=channel, updated_at=now()):
            return False
        contact.preferred_channel = channel
        audit.record("contact.updated", contact=contact, obj=contact, actor_label=actor_label,
                     data={"fields": ["preferred_channel"]})
    return True


def get_contact(external_id: str) -> Contact:
    """The contact with this external id; ContactNotFound otherwise."""
    external_id = clean_external_id(external_id)
    contact = Contact.objects.filter(external_id=external_id).first()
    if contact is None:
        raise ContactNotFound(external_id)
    return contact


def lock_or_create_contact(external_id: str, values: dict, attribute_changes: dict) -> tuple[Contact, bool]:
    contact = Contact.objects.select_for_update().filter(external_id=external_id).first()
    if contact is not None:
        return contact, False
    attributes = {key: value for key, value in attribute_changes.items() if value is not None}
    try:
        with transaction.atomic():
            return Contact.objects.create(external_id=external_id, attributes=attributes, **values), True
    except IntegrityError:
        # Another request created this external id between our read and our insert.
        return Contact.objects.select_for_update().get(external_id=external_id), False


def apply_changes(contact: Contact, values: dict, attribute_changes: dict) -> list[str]:
    """Set the values that differ on `contact`; return the names of the fields changed."""
    changed = []
    for field, value in values.items():
        if getattr(contact, field) != value:
            setattr(contact, field, value)
            changed.append(field)
    if attribute_changes:
        merged = dict(contact.attributes or {})
        for key, value in attribute_changes.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        if merged != contact.attributes:
            contact.attributes = merged
            changed.append("attributes")
    return sorted(changed)


def clean_external_id(external_id) -> str:
    if not isinstance(external_id, str) or not external_id.strip():
        raise InvalidField("external_id", "external_id must be a non-empty string.")
    if len(external_id) > 255:
        raise InvalidField("external_id", "external_id is longer than 255 characters.")
    if ID_FORBIDDEN.search(external_id):
        raise InvalidField("external_id", "external_id must not contain control characters or lone surrogates.")
    return external_id


def clean_profile_field(field: str, value, *, country: str = ""):
    """The value to store for one profile field, or InvalidField naming it.

    `country` (ISO 3166-1 alpha-2) reads a phone number given in national format.
    """
    if field == "lifecycle_stage":
        if not is_lifecycle_stage(value):
            raise InvalidField(field, f"lifecycle_stage must be one of {', '.join(lifecycle_stage_keys())}.")
        return value
    if field == "locale":
        text = require_string(field, value, max_length=16)
        if not LOCALE_PATTERN.fullmatch(text):
            raise InvalidField(field, f"'{text}' is not a BCP 47 language tag such as en or fr-CA.")
        return text

    # The remaining fields are optional: null or "" clears them.
    if value is None:
        return ""
    if field == "email":
        text = require_string(field, value, max_length=254).lower()
        if text:
            try:
                validate_email(text)
            except ValidationError:
                raise InvalidField(field, f"'{value}' is not a valid email address.") from None
        return text
    if field == "phone":
        text = require_string(field, value, max_length=64)
        if not text:
            return ""
        try:
            return normalize_phone(text, default_region=country or None)
        except ValidationError as exc:
            raise InvalidField(field, exc.messages[0]) from None
    if field == "timezone":
        text = require_string(field, value, max_length=64)
        if text and text not in known_timezones():
            raise InvalidField(field, f"'{text}' is not an IANA timezone such as Europe/Paris.")
        return text
    if field == "country":
        text = require_string(field, value, max_length=2)
        if text and not COUNTRY_PATTERN.fullmatch(text):
            raise InvalidField(field, f"'{text}' is not an ISO 3166-1 alpha-2 country code such as US.")
        return text.upper()
    if field == "region":
        text = require_string(field, value, max_length=6).upper()
        if text:
            try:
                validate_region(text)
            except ValidationError as exc:
                raise InvalidField(field, exc.messages[0]) from None
            if country and not text.startswith(f"{country}-"):
                raise InvalidField(field, f"Region {text} is not in the country {country}.")
        return text
    return require_string(field, value, max_length=100)  # first_name, last_name


def require_string(field: str, value, *, max_length: int) -> str:
    if not isinstance(value, str):
        raise InvalidField(field, f"{field} must be a string.")
    text = value.strip()
    if len(text) > max_length:
        raise InvalidField(field, f"{field} is longer than {max_length} characters.")
    return text


def clean_attributes(attributes) -> dict:
    if not isinstance(attributes, dict):
        raise InvalidField("attributes", "attributes must be a JSON object; a null value removes a key.")
    try:
        check_attributes(attributes)
    except WrongType as exc:
        raise InvalidField(exc.field, exc.messages[0], code=exc.code) from None
    return attributes


@functools.cache
def known_timezones() -> frozenset[str]:
    # available_timezones() walks the tz database on disk at every call.
    return frozenset(zoneinfo.available_timezones())


def clean_consents(consents) -> list[dict]:
    """Validate the consents of a contact upsert before anything is written."""
    if not isinstance(consents, list):
        raise InvalidField("consents", "consents must be a list of objects.")
    cleaned = []
    for index, consent in enumerate(consents):
        where = f"consents[{index}]"
        if not isinstance(consent, dict):
            raise InvalidField(where, f"{where} must be an object.")
        unknown = sorted(set(consent) - CONSENT_FIELDS)
        if unknown:
            raise InvalidField(f"{where}.{unknown[0]}", f"Unknown consent field(s): {', '.join(unknown)}.",
                               code="unknown_field")
        for field, values in (("channel", Channel.values), ("purpose", Purpose.values),
                              ("status", SUBMITTED_CONSENT_STATUSES)):
            if consent.get(field) not in values:
                raise InvalidField(f"{where}.{field}", f"{field} must be one of {', '.join(values)}.")
        lawful_basis = consent.get("lawful_basis")
        lawful_basis = "" if lawful_basis is None else lawful_basis
        if lawful_basis not in ["", *LawfulBasis.values]:
            raise InvalidField(f"{where}.lawful_basis",
                               f"lawful_basis must be one of {', '.join(LawfulBasis.values)} (or left out).")
        evidence = consent.get("evidence") or {}
        if not isinstance(evidence, dict):
            raise InvalidField(f"{where}.evidence", "evidence must be a JSON object.")
        cleaned.append({**consent, "lawful_basis": lawful_basis, "evidence": evidence})
    return cleaned


def record_consents(contact: Contact, consents: list[dict], *, actor_label: str) -> None:
    """Hand validated consents to the app that owns consent (compliance), through the hook."""
    hooks.send(hooks.consents_submitted, contact=contact, consents=consents, source="api", actor_label=actor_label)


# A key an update step may set with one JSON path on SQLite (no quote to escape).
BULK_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


def set_attribute_many(contact_ids: list[int], name: str, value, *, now) -> int:
    """Set one attribute to one value for many contacts, in one UPDATE (a JSON merge on
    PostgreSQL, json_set on SQLite): other attributes are kept, even ones written meanwhile.
    The caller audits. Returns how many rows it updated."""
    if not BULK_ATTRIBUTE_NAME.fullmatch(name or ""):
        raise ValueError(f"{name!r} cannot be set in bulk: use letters, digits and _ . : -")
    if not contact_ids:
        return 0
    table = connection.ops.quote_name(Contact._meta.db_table)
    encoded = json.dumps(value)
    now = Contact._meta.get_field("updated_at").get_db_prep_save(now, connection)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"UPDATE {table} SET attributes = COALESCE(attributes, '{{}}'::jsonb) || "
                           f"jsonb_build_object(%s::text, %s::jsonb), updated_at = %s WHERE id = ANY(%s)",
                           [name, encoded, now, list(contact_ids)])
        else:
            marks = ", ".join(["%s"] * len(contact_ids))
            cursor.execute(f"UPDATE {table} SET attributes = json_set(COALESCE(attributes, '{{}}'), %s, json(%s)), "
                           f"updated_at = %s WHERE id IN ({marks})", [f'$."{name}"', encoded, now, *contact_ids])
        return cursor.rowcount


def set_lifecycle_stage_many(contact_ids: list[int], stage: str, *, now) -> int:
    """Move many contacts to one lifecycle stage, in one UPDATE. The caller audits."""
    return Contact.objects.filter(pk__in=list(contact_ids)).update(lifecycle_stage=stage, updated_at=now)


# --- Erasure ----------------------------------------------------------------------------------

# The reason staff or a system give for an erasure: kept beside its audit entry as personal
# data (it may name the person), long enough for a ticket reference and a sentence or two.
ERASURE_REASON_MAX_CHARS = 1000
# Line breaks and tabs are fine in a reason; other control characters and lone surrogates are not.
REASON_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


class ContactAlreadyErased(ContactErased):
    """An erasure asked for a contact whose personal data is already gone."""

    def __init__(self, contact: Contact):
        Exception.__init__(self, f"{contact_reference_text(contact)} was already erased on "
                                 f"{contact.erased_at:%Y-%m-%d %H:%M} UTC; there is nothing left to erase.")
        self.external_id = contact.external_id


def contact_reference_text(contact: Contact) -> str:
    # Never the name or address: this text reaches logs and API answers.
    if contact.external_id:
        return f"The contact with external_id '{contact.external_id}'"
    return f"Contact {contact.pk}"


def clean_erasure_reason(why) -> str:
    """The reason as it will be kept; InvalidField naming "reason" when it is missing or too long."""
    if not isinstance(why, str) or not why.strip():
        raise InvalidField("reason", "Say why the contact is erased (e.g. the request's ticket number).")
    why = why.strip()
    if len(why) > ERASURE_REASON_MAX_CHARS:
        raise InvalidField("reason", f"reason is longer than {ERASURE_REASON_MAX_CHARS} characters.")
    if REASON_FORBIDDEN.search(why):
        raise InvalidField("reason", "reason must not contain control characters.")
    return why


def erase_contact(contact: Contact, actor=None, why: str = "", *, actor_label: str = "", now=None) -> dict:
    """Erase the contact's personal data in every app, in one transaction, on request.

    The apps above contacts empty what they keep (contacts.hooks.erase_contact: consent
    evidence, suppression addresses with their hashes kept, message bodies and addresses,
    enrollment context...) and cancel what was still to be sent; contacts blanks the profile,
    attributes, event properties and devices and sets erased_at; the audit log's personal data
    about the contact is emptied with its keys (the chained entries hold only plain ids and stay
    valid). Audited "contact.erased" with the counts; `why` is kept as personal data beside that
    entry, never in the chain. Returns the counts by what was emptied.

    Raises InvalidField ("reason") for a missing or oversized reason and ContactAlreadyErased
    when the contact was erased before; nothing is changed then.
    """
    from django.utils import timezone  # `now`, imported above, is this function's argument here

    from .erasure import erase_profile

    why = clean_erasure_reason(why)
    now = now or timezone.now()
    contact.refresh_from_db()
    if contact.erased_at is not None:
        raise ContactAlreadyErased(contact)
    addresses = (contact.email, contact.phone)
    with transaction.atomic():
        # The apps above first: channels locks the contact's unsent messages before anything
        # locks the contact row (the lock order of channels/state.py: messages, then contacts).
        counts = {}
        for _, answer in hooks.send(hooks.erase_contact, contact=contact, now=now):
            counts.update(answer or {})
        erased = erase_profile(contact, now)
        if erased is None:
            contact.refresh_from_db(fields=["erased_at"])
            raise ContactAlreadyErased(contact)  # erased meanwhile by another request: all rolls back
        counts.update({f"contacts.{name}": count for name, count in erased.items()})
        counts["omni.audit_personal_data"] = audit.erase_personal_data(contact.pk, addresses=addresses, now=now)
        audit.record("contact.erased", contact=contact, obj=contact, actor=actor, actor_label=actor_label,
                     reason="erasure_request", data={"counts": counts}, personal={"why": why})
    return counts
