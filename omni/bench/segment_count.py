"""Counting a segment of three filters over `scale` contacts with 5 events each.

Seeds by SQL: `scale` contacts, a declared number attribute `score` (0 to 99), lifecycle stages
in turn, and 5 events each (one of each of five names, spread over the last 90 days), so
5 x scale events. The segment: score at least 50, lifecycle stage customer, and did
`order.placed` in the last 30 days (about 1 contact in 30 matches). The issue's target: under
1 s at 1,000,000 contacts on PostgreSQL.

Figures: `count_seconds`, the median of REPEATS counts of the compiled segment (n: the members
counted); `queries_per_count` (must be 1, the declared types loaded before); `seed_seconds`.
"""
import statistics
import time
from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from . import Figure

EVENTS_PER_CONTACT = 5
EVENT_NAMES = ["page.viewed", "order.placed", "signed.in", "cart.abandoned", "email.subscribed"]
REPEATS = 3
DEFINITION = {"match": "all", "filters": [
    {"kind": "attribute", "attribute": "score", "operator": "at_least", "value": 50},
    {"kind": "lifecycle_stage", "stages": ["customer"]},
    {"kind": "event", "event": "order.placed", "within_days": 30},
]}


def seed(scale: int, now) -> None:
    from contacts.models import AttributeDefinition, Contact, ContactEvent, DataType, lifecycle_stage_keys

    from .journey_tick import _insert_select, _insert_series

    AttributeDefinition.objects.get_or_create(name="score", defaults={"data_type": DataType.NUMBER})
    stages = lifecycle_stage_keys()
    stage_sql = "CASE " + " ".join(f"WHEN g %% {len(stages)} = {i} THEN '{key}'" for i, key in enumerate(stages)) + " END"
    if connection.vendor == "postgresql":
        attributes = "jsonb_build_object('score', g %% 100)"
    else:
        attributes = "json_object('score', g %% 100)"
    base = Contact.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    _insert_series(Contact, scale, {"external_id": "'seg' || g", "lifecycle_stage": stage_sql,
                                    "attributes": attributes})
    # Which events a contact gets, and when, follow its place g in the series (kept in its
    # external_id), never its id: ids go on from wherever the table's sequence stands (rows
    # inserted and rolled back before still used up ids), and a layout of ids would match a
    # different set of contacts each time, none at all at small scales for some starting ids.
    names = "CASE " + " ".join(f"WHEN (c.g + e.i) %% {len(EVENT_NAMES)} = {n} THEN '{name}'"
                               for n, name in enumerate(EVENT_NAMES)) + " END"
    if connection.vendor == "postgresql":
        series, prefix = f"generate_series(1, {EVENTS_PER_CONTACT}) e(i)", ""
        occurred = "%s::timestamptz - make_interval(secs => ((c.g * 7919 + e.i * 104729) %% 7776000))"
        key = "'seg-' || c.id || '-' || e.i"
    else:
        series = "e"
        prefix = f"WITH RECURSIVE e(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM e WHERE i < {EVENTS_PER_CONTACT}) "
        occurred = "datetime(%s, '-' || ((c.g * 7919 + e.i * 104729) %% 7776000) || ' seconds')"
        key = "'seg-' || c.id || '-' || e.i"
    _insert_select(ContactEvent, {"contact_id": "c.id", "name": names, "occurred_at": occurred,
                                  "idempotency_key": key},
                   f"FROM (SELECT id, CAST(SUBSTR(external_id, 4) AS INTEGER) AS g FROM contacts_contact "
                   f"WHERE id > {base}) c CROSS JOIN {series}", prefix=prefix,
                   defaults={"processed_at": now, "received_at": now}, varying_params={"occurred_at": now})
    if connection.vendor == "postgresql":
        # As autovacuum leaves a table after a bulk load: statistics and a visibility map.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE" if connection.in_atomic_block else "VACUUM ANALYZE")


def measure(scale: int, log=lambda line: None) -> list[Figure]:
    from contacts import segments

    now = timezone.now().replace(microsecond=0)
    started = time.perf_counter()
    seed(scale, now)
    seeded = time.perf_counter() - started
    log(f"segment_count: seeded {scale} contacts and {scale * EVENTS_PER_CONTACT} events in {seeded:.1f} s")
    types = segments.declared_types(DEFINITION)
    timings, counts = [], set()
    for _ in range(REPEATS):
        members = segments.compile(DEFINITION, now, types)
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            counts.add(members.count())
            timings.append(time.perf_counter() - started)
    count = counts.pop()
    notes = f"vendor {connection.vendor}; {len(counts) + 1} distinct answer(s); timings " + ", ".join(
        f"{t:.3f}" for t in timings)
    return [
        Figure("segment_count", "count_seconds", statistics.median(timings), "s", count, notes=notes),
        Figure("segment_count", "queries_per_count", len(captured), "queries", count),
        Figure("segment_count", "seed_seconds", seeded, "s", scale * (1 + EVENTS_PER_CONTACT)),
    ]


def expected_members(scale: int, now) -> int:
    """How many of the seeded contacts the segment keeps, counted in Python (for the test)."""
    from contacts.models import Contact

    kept = 0
    since = now - timedelta(days=30)
    for contact in Contact.objects.filter(external_id__startswith="seg").prefetch_related("events"):
        recent = any(e.name == "order.placed" and since <= e.occurred_at <= now for e in contact.events.all())
        kept += contact.lifecycle_stage == "customer" and contact.attributes.get("score", 0) >= 50 and recent
    return kept


def run(scale: int, *, figures, log) -> list[Figure]:
    return measure(scale, log=log)
