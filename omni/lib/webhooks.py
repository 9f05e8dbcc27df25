"""Outbound webhooks: signed JSON POSTs to the outside URLs of omni.WebhookEndpoint.

`call(endpoint, payload, idempotency_key=..., attempt=...)` makes one attempt, writes one
omni.WebhookCall row and returns a WebhookAnswer. It never retries: the caller (a Celery task)
retries an answer marked `retryable`, waiting `backoff(attempt)` seconds, with the same
idempotency key, so the receiver can tell a retry from a new call.

What a receiver gets, and how it checks it:
- `POST` with a JSON body (`Content-Type: application/json`);
- `Idempotency-Key`: the same on every attempt of one logical call;
- `X-Omni-Timestamp`: Unix seconds when the attempt was signed;
- `X-Omni-Signature: sha256=<hex>`: HMAC-SHA256, keyed with the endpoint's secret, of
  `<timestamp>.<body>` (the timestamp header, a dot, then the raw body bytes).
A receiver recomputes the HMAC over the raw body it received (before any JSON parsing),
compares in constant time, and refuses a timestamp older than a few minutes (a replayed
request). In Python: `verify_signature(secret, body, timestamp, signature)` below does all
three. Elsewhere:
    expected = "sha256=" + hex(hmac_sha256(secret, timestamp + "." + body))
    ok = constant_time_equals(expected, signature) and abs(now - int(timestamp)) <= 300

The answer: at most MAX_ANSWER_BYTES (16 KiB) are read. A longer answer is refused, not
truncated (a cut JSON document would parse as nothing or, worse, as something else): the
attempt fails for good with the status kept and the first bytes in the call log. 2xx is a
success; 408, 429, 5xx and connection errors (refused, reset, timed out, unresolvable name)
may be retried; every other answer (3xx: redirects are not followed, 4xx) fails for good.

Addresses are checked by omni/lib/webhook_addresses.py, and the connection goes to the address
checked, never to a second lookup a rebinding DNS server could answer differently. The Host
header and TLS server name (SNI and certificate check) stay the URL's host.
"""
import hashlib
import hmac
import json
import random
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from .webhook_addresses import RefusedAddress, checked_address

MAX_ANSWER_BYTES = 16 * 1024
SIGNATURE_TOLERANCE_SECONDS = 300
BACKOFF_BASE_SECONDS = 10
BACKOFF_CAP_SECONDS = 3600
USER_AGENT = "Omni-Webhooks/1"


@dataclass(frozen=True)
class WebhookAnswer:
    ok: bool
    retryable: bool
    status: int | None
    # The answer parsed as JSON, else its text; None when nothing was read.
    body: Any
    error: str = ""
    call_id: int | None = None


# --- Signing --------------------------------------------------------------------------------

def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Omni-Signature value for `body` signed at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, body: bytes | str, timestamp: str, signature_header: str, *,
                     tolerance_seconds: int = SIGNATURE_TOLERANCE_SECONDS, now: float | None = None) -> bool:
    """Whether a received webhook was signed with `secret` and recently: what a receiver checks.

    `body` is the raw request body, `timestamp` the X-Omni-Timestamp header and
    `signature_header` the X-Omni-Signature header.
    """
    if isinstance(body, str):
        body = body.encode()
    try:
        signed_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - signed_at) > tolerance_seconds:
        return False
    return hmac.compare_digest(signature(secret, str(timestamp), body), signature_header or "")


# --- Retries --------------------------------------------------------------------------------

def classify(status: int) -> tuple[bool, bool]:
    """(ok, retryable) for an HTTP status."""
    if 200 <= status < 300:
        return True, False
    # Timeouts, rate limits and server errors pass; every other refusal will be refused again.
    return False, status in (408, 429) or status >= 500


def backoff(attempt: int, *, base: float = BACKOFF_BASE_SECONDS, cap: float = BACKOFF_CAP_SECONDS) -> float:
    """Seconds to wait before attempt `attempt + 1`: doubling from `base`, capped at `cap`, with
    the upper half jittered so that calls failing together do not retry together."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


# --- Addresses ------------------------------------------------------------------------------

# --- The call -------------------------------------------------------------------------------

def call(endpoint, payload, *, idempotency_key: str, attempt: int) -> WebhookAnswer:
    """POST `payload` as signed JSON to `endpoint` once; log the attempt as a WebhookCall."""
    from omni.models import WebhookCall, WebhookOutcome

    requested_at = timezone.now()
    started = time.monotonic()
    status, raw, error, retryable, too_long = None, b"", "", False, False
    try:
        if not endpoint.active:
            raise RefusedAddress("The endpoint is inactive.")
        body = json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":")).encode()
        status, raw, too_long = _post(endpoint, body, idempotency_key)
        ok, retryable = classify(status)
        if too_long:
            ok, retryable = False, False
            error = f"The answer is longer than {MAX_ANSWER_BYTES} bytes; it was refused."
        elif not ok:
            error = f"HTTP {status}"
    except RefusedAddress as refusal:
        ok, error = False, str(refusal)
    except socket.gaierror as failure:
        ok, retryable, error = False, True, f"Could not resolve the host: {failure}"
    except (urllib3.exceptions.HTTPError, OSError) as failure:
        ok, retryable, error = False, True, f"{type(failure).__name__}: {failure}"

    text = raw.decode("utf-8", errors="replace")
    parsed = None
    if raw and not too_long:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
    outcome = WebhookOutcome.OK if ok else WebhookOutcome.RETRYABLE if retryable else WebhookOutcome.PERMANENT
    logged = WebhookCall.objects.create(
        endpoint=endpoint, url=endpoint.url[:500], idempotency_key=idempotency_key, attempt=attempt,
        requested_at=requested_at, status_code=status, duration_ms=int((time.monotonic() - started) * 1000),
        response_excerpt=text[:WebhookCall.EXCERPT_CHARS], error=error[:500], outcome=outcome,
    )
    return WebhookAnswer(ok=ok, retryable=retryable, status=status, body=parsed, error=error, call_id=logged.pk)


def _post(endpoint, body: bytes, idempotency_key: str) -> tuple[int, bytes, bool]:
    """Send one request to the checked address; return (status, up to MAX_ANSWER_BYTES of the
    answer, whether the answer was longer)."""
    address = checked_address(endpoint.url)
    parts = urlsplit(endpoint.url)
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host_header = f"[{host}]" if ":" in host else host
    if parts.port:
        host_header = f"{host_header}:{parts.port}"
    timestamp = str(int(time.time()))
    headers = {
        "Host": host_header,
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Accept-Encoding": "identity",
        "User-Agent": USER_AGENT,
        "Idempotency-Key": idempotency_key,
        "X-Omni-Timestamp": timestamp,
        "X-Omni-Signature": signature(endpoint.secret, timestamp, body),
    }
    timeout = urllib3.Timeout(total=endpoint.timeout_seconds)
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1,
                                           server_hostname=host, assert_hostname=host, cert_reqs="CERT_REQUIRED",
                                           ca_certs=_ca_certs())
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    with pool:
        response = pool.urlopen("POST", target, body=body, headers=headers, redirect=False, retries=False,
                                preload_content=False, assert_same_host=False)
        try:
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > MAX_ANSWER_BYTES:
                # Refused unread, but for the first bytes the log keeps.
                return response.status, response.read(1024), True
            raw = response.read(MAX_ANSWER_BYTES + 1)
            return response.status, raw[:MAX_ANSWER_BYTES], len(raw) > MAX_ANSWER_BYTES
        finally:
            response.release_conn()


def _ca_certs() -> str | None:
    """The certificate authorities receivers' certificates are checked against:
    settings.OMNI_WEBHOOKS_CA_BUNDLE (a private CA), else certifi's, else the system's."""
    bundle = getattr(settings, "OMNI_WEBHOOKS_CA_BUNDLE", "")
    if bundle:
        return bundle
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()
