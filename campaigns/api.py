"""The journey API for systems: enroll a contact in a journey. Parse the request, call the action, serialize."""
from contacts.actions import ContactNotFound, InvalidField, get_contact
from omni.api import ApiError, api_view, json_response
from omni.models import ApiScope

from .actions import (
    JOURNEY_NOT_ACTIVE,
    EnrollmentRefused,
    IdempotencyKeyReused,
    enroll_contact_once,
)
from .models import TRIGGER_CONTEXT, Journey

ENROLLMENT_BODY_FIELDS = frozenset({"external_id", "properties"})
# Room for a UUID or a request id with a prefix; the enrollment's trigger_key holds it.
MAX_IDEMPOTENCY_KEY_LENGTH = 200
KEY_HEADER = "Idempotency-Key"


@api_view(scope=ApiScope.JOURNEYS_WRITE, methods=["POST"], max_body_setting="OMNI_MAX_ENROLLMENT_BODY_BYTES")
def post_enrollment(request, slug):
    """{"external_id": "...", "properties": {...}} with an Idempotency-Key header: 201 and the
    enrollment (again 201 and the same enrollment for a retry); 404 for an unknown journey or
    contact; 409 for a contact the journey refuses (already in it, or its re-entry rules) or a
    key reused for another request; 422 for a journey that is not active or a body that is wrong."""
    key, external_id, properties = _enrollment_request(request)
    journey = Journey.objects.select_related("live_version").filter(slug=slug).first()
    if journey is None:
        raise ApiError(404, "journey_not_found", f"No journey has the slug {slug!r}.", field="slug")
    try:
        contact = get_contact(external_id)
    except ContactNotFound as exc:
        raise ApiError(404, "contact_not_found", str(exc), field="external_id") from None
    except InvalidField as exc:
        raise ApiError(422, exc.code or "invalid_field", " ".join(exc.messages), field="external_id") from None
    if contact.erased_at is not None:
        raise ApiError(409, "contact_erased", f"The contact {external_id!r} was erased and cannot be enrolled.",
                       field="external_id")
    try:
        enrollment, created = enroll_contact_once(journey, contact, idempotency_key=key, properties=properties,
                                                  actor_label=f"apikey:{request.api_key.prefix}")
    except EnrollmentRefused as exc:
        status = 422 if exc.reason == JOURNEY_NOT_ACTIVE else 409
        raise ApiError(status, exc.reason, " ".join(exc.messages), field="slug" if status == 422 else None) from None
    except IdempotencyKeyReused as exc:
        raise ApiError(409, "idempotency_key_reused",
                       f"{exc} Send a new Idempotency-Key for a new request, or the same body to retry this one.",
                       field=KEY_HEADER) from None
    headers = None if created else {"Idempotent-Replayed": "true"}
    return json_response(enrollment_json(enrollment, journey, contact), status=201, headers=headers)


def _enrollment_request(request) -> tuple[str, str, dict]:
    """(idempotency key, external id, properties) of a request; ApiError 422 naming the field at fault."""
    key = request.headers.get(KEY_HEADER, "").strip()
    if not key:
        raise ApiError(422, "idempotency_key_required",
                       f"Send an {KEY_HEADER} header, so a retried request enrolls the contact once.", field=KEY_HEADER)
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ApiError(422, "invalid_field", f"The {KEY_HEADER} is longer than {MAX_IDEMPOTENCY_KEY_LENGTH} "
                                             f"characters.", field=KEY_HEADER)
    body = request.json
    unknown = sorted(set(body) - ENROLLMENT_BODY_FIELDS)
    if unknown:
        raise ApiError(422, "unknown_field", f"Unknown field(s): {', '.join(unknown)}; send external_id and "
                                             f"properties.", field=unknown[0])
    external_id = body.get("external_id")
    if not isinstance(external_id, str) or not external_id.strip():
        raise ApiError(422, "invalid_field", "external_id must be the contact's external id, a non-empty string.",
                       field="external_id")
    properties = body.get("properties", {})
    if not isinstance(properties, dict):
        raise ApiError(422, "invalid_field", "properties must be a JSON object, e.g. {\"plan\": \"pro\"}.",
                       field="properties")
    return key, external_id.strip(), properties


def enrollment_json(enrollment, journey, contact) -> dict:
    return {
        "id": enrollment.pk,
        "journey": {"id": journey.pk, "slug": journey.slug},
        "version": enrollment.journey_version.number if enrollment.journey_version_id else None,
        "contact": {"id": contact.pk, "external_id": contact.external_id},
        "state": enrollment.state,
        "current_step": enrollment.current_step_key,
        "next_run_at": enrollment.next_run_at,
        "entered_at": enrollment.entered_at,
        "trigger": (enrollment.context or {}).get(TRIGGER_CONTEXT),
    }
