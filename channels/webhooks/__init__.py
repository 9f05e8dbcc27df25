"""Webhooks from providers: delivery status and inbound messages.

Each view runs validate, then parse, then record. Refusals are explicit (400 malformed, 403
bad signature, 413 too large); an unexpected error answers 500 so the provider retries, which
is safe because recording is idempotent.
"""
import functools
import logging

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

log = logging.getLogger(__name__)


def webhook_view(view):
    """Make a provider webhook: POST only, no CSRF, bounded body, 500 on surprises."""

    @csrf_exempt
    @require_POST
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            declared_length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return HttpResponse("Bad Content-Length", status=400)
        # Checked before the body is read, so a huge body is never loaded into memory.
        if declared_length > settings.OMNI_MAX_BODY_BYTES or len(request.body) > settings.OMNI_MAX_BODY_BYTES:
            return HttpResponse("Body too large", status=413)
        try:
            return view(request, *args, **kwargs)
        except Exception:
            log.exception("Webhook %s failed; answering 500 so the provider retries", request.path)
            return HttpResponse("Internal error", status=500)

    return wrapper


def public_url(request) -> str:
    """The URL the provider called, as it saw it (behind a proxy the request's own host differs)."""
    return f"{settings.OMNI_PUBLIC_URL}{request.get_full_path()}"
