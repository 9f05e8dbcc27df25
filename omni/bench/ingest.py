"""Event ingest over HTTP: Omni served by gunicorn (two sync workers) on 127.0.0.1, loaded from a
second process (omni.bench.load).

ingest_http: GET /healthz (no database) and then POST /api/v1/events under the same load (32
connections, one event a request, one in ten a retry of an earlier one), each for scale/5000
seconds (1 to 10) after a one-second warm-up; requests/s, p50 and p99, and the events' rate as
a fraction of /healthz's.
ingest_batch: 4 x scale events in batches of 1,000 on POST /api/v1/events/batch; events/s.
Both check what the database holds afterwards: every event stored once, and audited once the
tick has taken it up.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager

from django.conf import settings

from . import Figure
from .database import database_url

WORKERS = 2
CONTACTS = 10_000


def run_http(scale: int, *, figures, log) -> list[Figure]:
    contacts = _seed_contacts()
    raw_key = _api_key()
    seconds = min(10, max(1, scale // 5000))
    with web_server(log) as base:
        _load("single", f"{base}/healthz", seconds=1)
        ceiling = _load("single", f"{base}/healthz", seconds=seconds)
        _load("single", f"{base}/api/v1/events", seconds=1, key=raw_key, contacts=contacts, tag="warmup")
        before = _stored_events()
        events = _load("single", f"{base}/api/v1/events", seconds=seconds, key=raw_key, contacts=contacts,
                       tag="run")
        stored = _stored_events() - before
    missing_audit = _events_without_audit()
    ceiling_rate = ceiling["requests"] / ceiling["seconds"]
    events_rate = events["requests"] / events["seconds"]
    check = (f"{stored} events stored for {events['requests']} requests (one in ten a retry); "
             f"non-2xx {events['non_2xx']}, socket errors {events['errors']}, events without audit {missing_audit}")
    return [
        Figure("ingest_http", "healthz_requests_per_s", ceiling_rate, "req/s", ceiling["requests"], subject="peer",
               notes=f"GET /healthz, gunicorn {WORKERS} sync workers, {ceiling['client']}, {seconds}s"),
        Figure("ingest_http", "healthz_p50_ms", ceiling["p50_ms"], "ms", ceiling["requests"], subject="peer"),
        Figure("ingest_http", "healthz_p99_ms", ceiling["p99_ms"], "ms", ceiling["requests"], subject="peer"),
        Figure("ingest_http", "events_requests_per_s", events_rate, "req/s", events["requests"],
               notes=f"POST /api/v1/events, same load; {check}"),
        Figure("ingest_http", "events_p50_ms", events["p50_ms"], "ms", events["requests"]),
        Figure("ingest_http", "events_p99_ms", events["p99_ms"], "ms", events["requests"]),
        Figure("ingest_http", "ratio_to_healthz", events_rate / ceiling_rate, "ratio", events["requests"],
               notes=f"{events_rate:.0f} / {ceiling_rate:.0f} req/s"),
        Figure("ingest_http", "events_non_2xx", events["non_2xx"] + events["errors"], "requests", events["requests"]),
    ]


def run_batch(scale: int, *, figures, log) -> list[Figure]:
    contacts = _seed_contacts()
    raw_key = _api_key()
    total = max(1000, 4 * scale)
    with web_server(log) as base:
        _load("batch", f"{base}/api/v1/events/batch", key=raw_key, contacts=contacts, events=1000, tag="warmup")
        before = _stored_events()
        result = _load("batch", f"{base}/api/v1/events/batch", key=raw_key, contacts=contacts, events=total,
                       tag="batch")
        stored = _stored_events() - before
    missing_audit = _events_without_audit()
    notes = (f"{result['client']}; {result['requests']} batches in {result['seconds']:.2f}s; answered stored "
             f"{result['stored']}, duplicate {result['duplicate']}, refused {result['refused']}; "
             f"{stored} rows stored; non-2xx {result['non_2xx']}; events without audit {missing_audit}")
    return [
        Figure("ingest_batch", "events_per_s", stored / result["seconds"], "events/s", stored, notes=notes),
        Figure("ingest_batch", "batch_p50_ms", result["p50_ms"], "ms", result["requests"]),
        Figure("ingest_batch", "batch_p99_ms", result["p99_ms"], "ms", result["requests"]),
        Figure("ingest_batch", "events_not_stored", total - stored, "events", total),
    ]


@contextmanager
def web_server(log):
    """gunicorn serving Omni on a free port of 127.0.0.1 against the benchmark database; its base URL."""
    from django.db import connection

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": database_url(), "DEBUG": "false", "OMNI_ENV": "development",
           "ALLOWED_HOSTS": "127.0.0.1", "CELERY_BROKER_URL": "memory://"}
    command = [sys.executable, "-m", "gunicorn", "omni.wsgi:application", "--workers", str(WORKERS),
               "--worker-class", "sync", "--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
    # SQLite: let the server's workers take the write lock while this process is idle.
    connection.close()
    with tempfile.TemporaryFile("w+") as output:
        server = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=output, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(base, server, output)
            log(f"gunicorn ({WORKERS} sync workers) on {base}")
            yield base
        finally:
            server.terminate()
            server.wait(timeout=30)


def _wait_until_up(base: str, server, output) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output.seek(0)
            raise RuntimeError(f"gunicorn stopped at start:\n{output.read()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer /healthz within 30 seconds")


def _load(mode: str, url: str, **options) -> dict:
    arguments = [sys.executable, "-m", "omni.bench.load", mode, url]
    for name, value in options.items():
        arguments += [f"--{name}", str(value)]
    out = subprocess.run(arguments, cwd=settings.BASE_DIR, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _seed_contacts() -> int:
    """CONTACTS contacts known by external ids c0, c1... (the load generator's); how many exist."""
    from contacts.models import Contact

    if not Contact.objects.filter(external_id=f"c{CONTACTS - 1}").exists():
        Contact.objects.bulk_create(
            [Contact(external_id=f"c{i}", email=f"c{i}@example.com") for i in range(CONTACTS)], batch_size=5000)
    return CONTACTS


def _api_key() -> str:
    from omni.models import ApiKey, ApiScope

    _, raw_key = ApiKey.generate("Benchmark", [ApiScope.EVENTS_WRITE])
    return raw_key


def _stored_events() -> int:
    from contacts.models import ContactEvent

    return ContactEvent.objects.filter(source="api").count()


def _events_without_audit() -> int:
    """API events minus "event.received" entries once the tick has taken the events up (it writes
    those entries): 0 when every stored event was audited."""
    from campaigns.tick import tick
    from contacts.models import ContactEvent
    from omni.models import AuditEntry

    tick()
    return (ContactEvent.objects.filter(source="api").count()
            - AuditEntry.objects.filter(action="event.received").count())
