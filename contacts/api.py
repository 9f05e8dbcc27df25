"""The contact and event API for systems: parse the request, call the action, serialize."""
from django.urls import reverse

from omni.api import ApiError, api_view, json_response, route_by_method
from omni.models import ApiScope

from .actions import ContactErased, ContactNotFound, InvalidField, get_contact, upsert_contact
from .events import IdempotencyKeyReused, receive_event, request_fingerprint

# All API keys share one idempotency scope: a retry sent after the key was rotated is still
# the same event. Which key sent it is kept on the event (sent_by) and in the audit log.
API_EVENT_SOURCE = "api"

EVENT_BODY_FIELDS = frozenset({"contact", "external_id", "name", "properties", "occurred_at", "event_id"})


@api_view(scope=ApiScope.CONTACTS_READ, methods=["GET"])
def read_contact(request, external_id):
    try:
        contact = get_contact(external_id)
    except ContactNotFound as exc:
        raise ApiError(404, "contact_not_found", str(exc), field="external_id") from None
    return json_response(contact_json(contact))


@api_view(scope=ApiScope.CONTACTS_WRITE, methods=["PUT"])
def write_contact(request, external_id):
    try:
        contact, created = upsert_contact(external_id, request.json, actor_label=actor_label(request))
    except ContactErased as exc:
        raise ApiError(409, "contact_erased", str(exc), field="external_id") from None
    if created:
        location = reverse("contacts_api:contact", kwargs={"external_id": contact.external_id})
        return json_response(contact_json(contact), status=201, headers={"Location": location})
    return json_response(contact_json(contact))


contact_endpoint = route_by_method(GET=read_contact, PUT=write_contact)


@api_view(scope=ApiScope.EVENTS_WRITE, methods=["POST"])
def post_event(request):
    body = request.json
    unknown = sorted(set(body) - EVENT_BODY_FIELDS)
    if unknown:
        raise InvalidField(unknown[0], f"Unknown event field(s): {', '.join(unknown)}.", code="unknown_field")
    external_id, contact_data = contact_reference(body)
    key_header = request.headers.get("Idempotency-Key")
    idempotency_key = key_header or body.get("event_id")
    if not idempotency_key:
        raise ApiError(
            400, "idempotency_key_required",
            "Send an Idempotency-Key header or an event_id, so a retried request is stored once.",
            field="event_id",
        )
    try:
        event, created = receive_event(
            external_id=external_id, contact_data=contact_data, name=body.get("name"),
            properties=body.get("properties"), occurred_at=body.get("occurred_at"),
            idempotency_key=idempotency_key, source=API_EVENT_SOURCE, actor_label=actor_label(request),
            request_hash=request_fingerprint(body),
        )
    except IdempotencyKeyReused as exc:
        raise ApiError(
            409, "idempotency_key_reused",
            f"{exc} Send a new idempotency key for a new event, or the same body to retry this one.",
            field="Idempotency-Key" if key_header else "event_id",
        ) from None
    except ContactNotFound as exc:
        raise ApiError(
            404, "contact_not_found", f"{exc} Send contact fields (e.g. email) to create it.", field="external_id"
        ) from None
    except ContactErased as exc:
        raise ApiError(409, "contact_erased", str(exc), field="external_id") from None
    return json_response({**event_json(event), "duplicate": not created}, status=202 if created else 200)


def contact_reference(body: dict) -> tuple[str, dict]:
    """The external id and the contact fields of an event body: {"contact": {...}} or {"external_id": ...}."""
    if "contact" in body and "external_id" in body:
        raise InvalidField("contact", "Send either contact or external_id, not both.")
    if "contact" not in body:
        return body.get("external_id"), {}
    contact = body["contact"]
    if not isinstance(contact, dict):
        raise InvalidField("contact", "contact must be an object with at least an external_id.")
    contact_data = dict(contact)
    return contact_data.pop("external_id", None), contact_data


def actor_label(request) -> str:
    return f"apikey:{request.api_key.prefix}"


def contact_json(contact) -> dict:
    return {
        "id": contact.pk,
        "external_id": contact.external_id,
        "email": contact.email,
        "phone": contact.phone,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "locale": contact.locale,
        "timezone": contact.timezone,
        "country": contact.country,
        "lifecycle_stage": contact.lifecycle_stage,
        "attributes": contact.attributes,
        "messaging_paused": contact.messaging_paused,
        "consents": [
            {"channel": consent.channel, "purpose": consent.purpose, "status": consent.status,
             "updated_at": consent.updated_at}
            for consent in contact.consents.order_by("channel", "purpose")
        ],
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
        "erased_at": contact.erased_at,
    }


def event_json(event) -> dict:
    return {
        "id": event.pk,
        "contact": {"id": event.contact_id, "external_id": event.contact.external_id},
        "name": event.name,
        "properties": event.properties,
        "occurred_at": event.occurred_at,
        "received_at": event.received_at,
        "idempotency_key": event.idempotency_key,
    }
