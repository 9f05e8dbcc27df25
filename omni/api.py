"""The JSON API's front door: API keys and scopes, body limits, JSON in and out, JSON errors.

A view decorated with `api_view` receives `request.api_key` (the authenticated ApiKey) and,
for methods that carry a body, `request.json` (always a dict). Every error leaves as
`{"error": {"code": "...", "message": "...", "field": "..." or null}}`.
"""
import json
import time
from datetime import timedelta
from functools import wraps

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Q
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from .lib.text import first_unstorable, refuse_non_json_number
from .models import ApiKey

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# last_used_at answers "is this key still in use?"; it is not an access log. Writing it at most
# once a minute spares every request an UPDATE (and a row lock) on the key.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Verified keys each web process keeps (by the hash of the raw key), so a request costs no key
# lookup. Bounded, so a flood of distinct valid keys cannot grow it without end; misses are never
# kept, so a wrong key is always checked against the database.
KEY_CACHE_MAX = 1000
_verified_keys: dict[str, tuple[float, ApiKey]] = {}


class ApiError(Exception):
    """Raise from an API view to answer with a JSON error."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers


def error_response(status: int, code: str, message: str, *, field: str | None = None, headers=None) -> JsonResponse:
    """The JSON error every API endpoint answers with."""
    return JsonResponse(
        {"error": {"code": code, "message": message, "field": field}}, status=status, headers=headers
    )


def json_response(data: dict, status: int = 200, headers=None) -> JsonResponse:
    """A JSON answer; datetimes become ISO 8601 strings."""
    return JsonResponse(data, status=status, headers=headers, encoder=DjangoJSONEncoder)


def api_view(scope: str, methods=("POST",), max_body_setting: str = "OMNI_MAX_BODY_BYTES", check_size=None):
    """Make a view a JSON API endpoint that needs an API key holding `scope`.

    Checks, in order: the HTTP method (405), the key (401), the scope (403), then for methods
    with a body its size (413, over the setting named by `max_body_setting`), its content type
    (415), its JSON (400), `check_size(body)` when given (which raises ApiError for a body that
    holds too much, before anything walks what it holds), then what the database cannot store
    (400). A ValidationError
    raised by the view becomes a 400 naming the field when it carries one (`exc.field`, or the
    first key of a ValidationError built from a dict).
    """
    allowed_methods = frozenset(method.upper() for method in methods)

    def decorator(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in allowed_methods:
                return method_not_allowed(allowed_methods)
            try:
                request.api_key = authenticate_request(request, scope)
                if request.method in BODY_METHODS:
                    request.json = read_json_body(request, getattr(settings, max_body_setting), check_size)
                else:
                    request.json = None
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return error_response(exc.status, exc.code, exc.message, field=exc.field, headers=exc.headers)
            except ValidationError as exc:
                return validation_error_response(exc)

        return wrapper

    return decorator


def route_by_method(**views_by_method):
    """One URL served by a different api_view per HTTP method: route_by_method(GET=..., PUT=...)."""
    allowed_methods = frozenset(views_by_method)

    @csrf_exempt
    def route(request, *args, **kwargs):
        view = views_by_method.get(request.method)
        if view is None:
            return method_not_allowed(allowed_methods)
        return view(request, *args, **kwargs)

    return route


def method_not_allowed(allowed_methods) -> JsonResponse:
    allowed = ", ".join(sorted(allowed_methods))
    return error_response(
        405, "method_not_allowed", f"Use {allowed} on this endpoint.", headers={"Allow": allowed}
    )


def validation_error_response(exc: ValidationError) -> JsonResponse:
    field = getattr(exc, "field", None)
    if field is None and hasattr(exc, "error_dict"):
        field = next(iter(exc.error_dict), None)
    code = getattr(exc, "code", None) or "invalid_field"
    return error_response(400, code, " ".join(exc.messages), field=field)


def api_key_from_headers(request) -> str:
    authorization = request.headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("X-Api-Key", "").strip()


def authenticate_request(request, scope: str) -> ApiKey:
    """The active ApiKey the request carries, if it holds `scope`; ApiError (401/403) otherwise."""
    raw_key = api_key_from_headers(request)
    challenge = {"WWW-Authenticate": 'Bearer realm="omni"'}
    if not raw_key:
        raise ApiError(
            401, "missing_api_key", "Send an API key as 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'.",
            headers=challenge,
        )
    key = verified_key(raw_key)
    if key is None:
        raise ApiError(401, "invalid_api_key", "The API key is unknown or has been revoked.", headers=challenge)
    if not key.has_scope(scope):
        raise ApiError(403, "missing_scope", f"This API key does not have the '{scope}' scope.")
    note_key_used(key)
    return key


def verified_key(raw_key: str) -> ApiKey | None:
    """The active ApiKey for raw_key, from this process's cache when verified in the last
    OMNI_API_KEY_CACHE_SECONDS (so a revoked key may keep working that long), else from the
    database."""
    digest = ApiKey.hash_key(raw_key)
    now = time.monotonic()
    cached = _verified_keys.get(digest)
    if cached is not None and cached[0] > now:
        return cached[1]
    key = ApiKey.authenticate(raw_key)
    if key is not None and settings.OMNI_API_KEY_CACHE_SECONDS > 0:
        if len(_verified_keys) >= KEY_CACHE_MAX:
            _verified_keys.clear()
        _verified_keys[digest] = (now + settings.OMNI_API_KEY_CACHE_SECONDS, key)
    else:
        _verified_keys.pop(digest, None)
    return key


def forget_verified_keys() -> None:
    """Empty this process's cache of verified keys (after revoking one, in tests)."""
    _verified_keys.clear()


def note_key_used(key: ApiKey) -> None:
    now = timezone.now()
    if key.last_used_at is not None and now - key.last_used_at < LAST_USED_RESOLUTION:
        return
    # The condition makes concurrent requests write once between them, not once each.
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_RESOLUTION)
    ApiKey.objects.filter(stale, pk=key.pk).update(last_used_at=now)
    key.last_used_at = now


def read_json_body(request, limit: int, check_size=None) -> dict:
    """The request body as a JSON object of at most `limit` bytes; ApiError (413/415/400) when
    it is not one, or when `check_size(body)` refuses it."""
    too_large = ApiError(413, "body_too_large", f"The body is larger than {limit} bytes.")
    try:
        declared_length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared_length = 0
    # Refuse on the declared length first, so an oversized body is never read into memory.
    if declared_length > limit:
        raise too_large
    if request.content_type != "application/json":
        raise ApiError(
            415, "unsupported_media_type",
            f"Send the body as 'Content-Type: application/json' (got '{request.content_type or 'nothing'}').",
        )
    try:
        body = request.body
    except RequestDataTooBig:
        raise too_large from None
    if len(body) > limit:
        raise too_large
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=refuse_non_json_number)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", f"The body is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "body_not_object", f"The body must be a JSON object, not {type(data).__name__}.")
    if check_size is not None:
        check_size(data)
    unstorable = first_unstorable(data)
    if unstorable:
        # PostgreSQL cannot store U+0000, no database a lone surrogate, and jsonb no infinity
        # (1e400 parses as one); JSON nested too deep would exhaust the stack of whatever walks
        # it next: refuse them here, naming where, rather than fail later.
        where, reason = unstorable
        raise ApiError(400, "invalid_field", f"{where or 'The body'} contains {reason}.", field=where or None)
    return data

