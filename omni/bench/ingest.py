"""Event ingest over HTTP: Omni served by gunicorn (two sync workers) on 127.0.0.1, loaded from a
second process (omni.bench.load).

ingest_http: GET /healthz (no database) and then POST /api/v1/events under the same load (32
connections, one event a request, one in ten a retry of an earlier one), each for scale/5000
seconds (1 to 10) after a one-second warm-up; requests/s, p50 and p99, and the events' rate as
a fraction of /healthz's.
ingest_batch: 4 x scale events in batches of 1,000 on POST /api/v1/events/batch; events/s.
Both check what the database holds afterwards: every event stored once, and audited once the
tick has taken it up. Both declare the types of order.placed's properties (and of a few others),
so every event goes through the typed check (contacts.data_types).
"""
from . import Figure
from .http import compared_with_healthz, healthz_ceiling, run_load, web_server

CONTACTS = 10_000
# The load generator's events are order.placed with order_id and total (omni.bench.load).
PROPERTY_TYPES = [
    ("order.placed", "order_id", "text"), ("order.placed", "total", "number"), ("order.placed", "currency", "text"),
    ("order.placed", "placed_at", "datetime"), ("order.placed", "items", "list"), ("order.placed", "gift", "boolean"),
    ("cart.viewed", "total", "number"), ("signed_up", "plan", "text"), ("signed_up", "trial_ends_on", "date"),
]


def run_http(scale: int, *, figures, log) -> list[Figure]:
    contacts = _seed_contacts()
    _declare_property_types()
    raw_key = _api_key()
    seconds = min(10, max(1, scale // 5000))
    with web_server(log) as base:
        ceiling = healthz_ceiling(base, seconds)
        run_load("single", f"{base}/api/v1/events", seconds=1, key=raw_key, contacts=contacts, tag="warmup")
        before = _stored_events()
        events = run_load("single", f"{base}/api/v1/events", seconds=seconds, key=raw_key, contacts=contacts,
                          tag="run")
        stored = _stored_events() - before
    missing_audit = _events_without_audit()
    check = (f"{stored} events stored for {events['requests']} requests (one in ten a retry), "
             f"{len(PROPERTY_TYPES)} property types declared; "
             f"non-2xx {events['non_2xx']}, socket errors {events['errors']}, events without audit {missing_audit}")
    return compared_with_healthz("ingest_http", "events", ceiling, events, seconds=seconds,
                                 what="POST /api/v1/events", check=check)


def run_batch(scale: int, *, figures, log) -> list[Figure]:
    contacts = _seed_contacts()
    _declare_property_types()
    raw_key = _api_key()
    total = max(1000, 4 * scale)
    with web_server(log) as base:
        run_load("batch", f"{base}/api/v1/events/batch", key=raw_key, contacts=contacts, events=1000, tag="warmup")
        before = _stored_events()
        result = run_load("batch", f"{base}/api/v1/events/batch", key=raw_key, contacts=contacts, events=total,
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


def _seed_contacts() -> int:
    """CONTACTS contacts known by external ids c0, c1... (the load generator's); how many exist."""
    from contacts.models import Contact

    if not Contact.objects.filter(external_id=f"c{CONTACTS - 1}").exists():
        Contact.objects.bulk_create(
            [Contact(external_id=f"c{i}", email=f"c{i}@example.com") for i in range(CONTACTS)], batch_size=5000)
    return CONTACTS


def _declare_property_types() -> None:
    from contacts.models import EventPropertyDefinition

    EventPropertyDefinition.objects.bulk_create(
        [EventPropertyDefinition(event=event, name=name, data_type=data_type)
         for event, name, data_type in PROPERTY_TYPES], ignore_conflicts=True)


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
