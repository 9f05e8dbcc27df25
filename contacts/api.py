"""The contact and event API for systems: parse the request, call the action, serialize."""
from django.urls import reverse

from omni.api import ApiError, api_view, json_response, route_by_method
from omni.models import ApiScope

from .actions import (
    ContactAlreadyErased,
    ContactErased,
    ContactNotFound,
    InvalidField,
    get_contact,
    upsert_contact,
)
from .erasure_requests import ERASED, request_erasure
from .ingest import EventSubmission, IdempotencyKeyReused, receive_events, request_fingerprint

# All API keys share one idempotency scope: a retry sent after the key was rotated is still
# the same event. Which key sent it is kept on the event (sent_by) and in the audit log.
API_EVENT_SOURCE = "api"

EVENT_BODY_FIELDS = frozenset({"contact", "external_id", "name", "properties", "occurred_at", "event_id"})
# Large enough to make a round trip worth it, small enough that one statement and one answer
# stay well under a second.
MAX_BATCH_EVENTS = 1000


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

ERASE_BODY_FIELDS = frozenset({"reason"})


@api_view(scope=ApiScope.CONTACTS_ERASE, methods=["POST"])
def post_erase(request, external_id):
    """{"reason": "..."}: erase the contact's personal data in every app (200); 202 when an import
    naming the contact is running and the erasure is queued until it finishes; 409 if erased before."""
    unknown = sorted(set(request.json) - ERASE_BODY_FIELDS)
    if unknown:
        raise InvalidField(unknown[0], f"Unknown field(s): {', '.join(unknown)}; send only reason.",
                           code="unknown_field")
    try:
        contact = get_contact(external_id)
        answer = request_erasure(contact, None, request.json.get("reason"), actor_label=actor_label(request))
    except ContactNotFound as exc:
        raise ApiError(404, "contact_not_found", str(exc), field="external_id") from None
    except ContactAlreadyErased as exc:
        raise ApiError(409, "contact_already_erased", str(exc), field="external_id") from None
    if answer.outcome != ERASED:
        pending = answer.request
        return json_response({"id": contact.pk, "external_id": contact.external_id, "erased_at": None,
                              "erasure": answer.outcome,
                              "erasure_request": {"id": pending.pk, "requested_at": pending.requested_at},
                              "message": "An import that names this contact is running: the erasure is queued and "
                                         "runs by itself as soon as the import finishes."}, status=202)
    contact.refresh_from_db()
    return json_response({"id": contact.pk, "external_id": contact.external_id, "erased_at": contact.erased_at,
                          "erasure": answer.outcome, "erased": answer.counts})


@api_view(scope=ApiScope.EVENTS_WRITE, methods=["POST"])
def post_event(request):
    key_header = request.headers.get("Idempotency-Key")
    submission = event_submission(request.json, key_header=key_header)
    [outcome] = receive_events([submission], source=API_EVENT_SOURCE, actor_label=actor_label(request))
    if outcome.error is not None:
        raise event_error(outcome.error, key_field="Idempotency-Key" if key_header else "event_id")
    return json_response({**event_json(outcome.event, outcome.external_id), "duplicate": not outcome.created},
                         status=202 if outcome.created else 200)


def refuse_oversized_batch(body: dict) -> None:
    """413 for a batch of more events than MAX_BATCH_EVENTS, before anything reads the events."""
    events = body.get("events")
    if isinstance(events, list) and len(events) > MAX_BATCH_EVENTS:
        raise ApiError(413, "too_many_events",
                       f"A batch holds at most {MAX_BATCH_EVENTS} events, not {len(events)}; split it.",
                       field="events")


@api_view(scope=ApiScope.EVENTS_WRITE, methods=["POST"], max_body_setting="OMNI_MAX_BATCH_BODY_BYTES",
          check_size=refuse_oversized_batch)
def post_event_batch(request):
    """{"events": [event, ...]}: each event as POST /events takes it, with its own event_id; one
    result per event, in order, and the good ones stored whatever becomes of the others."""
    events = request.json.get("events")
    unknown = sorted(set(request.json) - {"events"})
    if unknown:
        raise InvalidField(unknown[0], f"Unknown batch field(s): {', '.join(unknown)}.", code="unknown_field")
    if not isinstance(events, list) or not events:
        raise InvalidField("events", "events must be a non-empty list of event objects.")
    submissions, refused = [], {}
    for index, body in enumerate(events):
        try:
            if not isinstance(body, dict):
                raise InvalidField(f"events[{index}]", "Each event must be a JSON object.")
            submissions.append(event_submission(body, key_header=None))
        except (InvalidField, ApiError) as exc:
            refused[index] = exc
    outcomes = iter(receive_events(submissions, source=API_EVENT_SOURCE, actor_label=actor_label(request)))
    results = []
    for index, body in enumerate(events):
        if index in refused:
            results.append(batch_refusal(index, body, refused[index]))
            continue
        outcome = next(outcomes)
        if outcome.error is not None:
            results.append(batch_refusal(index, body, event_error(outcome.error, key_field="event_id")))
        else:
            results.append({"index": index, "event_id": outcome.event.idempotency_key,
                            "status": "stored" if outcome.created else "duplicate",
                            "id": outcome.event.pk, "contact": {"id": outcome.event.contact_id,
                                                                "external_id": outcome.external_id}})
    counts = {status: sum(1 for r in results if r["status"] == status) for status in ("stored", "duplicate", "refused")}
    return json_response({"results": results, **counts})


def event_submission(body: dict, *, key_header: str | None) -> EventSubmission:
    """The EventSubmission of one event body; InvalidField or ApiError (400) when its shape is wrong."""
    unknown = sorted(set(body) - EVENT_BODY_FIELDS)
    if unknown:
        raise InvalidField(unknown[0], f"Unknown event field(s): {', '.join(unknown)}.", code="unknown_field")
    external_id, contact_data = contact_reference(body)
    idempotency_key = key_header or body.get("event_id")
    if not idempotency_key:
        raise ApiError(
            400, "idempotency_key_required",
            "Send an Idempotency-Key header or an event_id, so a retried request is stored once.",
            field="event_id",
        )
    return EventSubmission(
        external_id=external_id, contact_data=contact_data, name=body.get("name"),
        properties=body.get("properties"), occurred_at=body.get("occurred_at"), idempotency_key=idempotency_key,
        request_hash=request_fingerprint(body),
    )


def event_error(error: Exception, *, key_field: str) -> ApiError:
    """The API's answer to an event receive_events() refused."""
    if isinstance(error, IdempotencyKeyReused):
        return ApiError(
            409, "idempotency_key_reused",
            f"{error} Send a new idempotency key for a new event, or the same body to retry this one.",
            field=key_field,
        )
    if isinstance(error, ContactNotFound):
        return ApiError(404, "contact_not_found", f"{error} Send contact fields (e.g. email) to create it.",
                        field="external_id")
    if isinstance(error, ContactErased):
        return ApiError(409, "contact_erased", str(error), field="external_id")
    if isinstance(error, InvalidField):
        return ApiError(400, error.code or "invalid_field", " ".join(error.messages), field=error.field)
    raise error


def batch_refusal(index: int, body, error) -> dict:
    if isinstance(error, InvalidField):
        error = event_error(error, key_field="event_id")
    event_id = body.get("event_id") if isinstance(body, dict) else None
    return {"index": index, "event_id": event_id if isinstance(event_id, str) else None, "status": "refused",
            "error": {"status": error.status, "code": error.code, "message": error.message, "field": error.field}}


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
        "region": contact.region,
        "lifecycle_stage": contact.lifecycle_stage,
        "attributes": contact.attributes,
        "messaging_paused": contact.messaging_paused,
        "consents": [
            {"channel": consent.channel, "purpose": consent.purpose, "status": consent.status,
             "lawful_basis": consent.lawful_basis, "updated_at": consent.updated_at}
            for consent in contact.consents.order_by("channel", "purpose")
        ],
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
        "erased_at": contact.erased_at,
    }


def event_json(event, external_id: str) -> dict:
    return {
        "id": event.pk,
        "contact": {"id": event.contact_id, "external_id": external_id},
        "name": event.name,
        "properties": event.properties,
        "occurred_at": event.occurred_at,
        "received_at": event.received_at,
        "idempotency_key": event.idempotency_key,
    }
