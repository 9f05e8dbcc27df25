"""The audit log's CSV export on a full table: `scale` entries streamed through the admin's
"Export CSV" (the view, its audit entries, PostgreSQL's COPY), as a Compliance user gets it.

Seeds the entries by COPY in batches (a tenth of them first), a contact for every other entry
and a formula in some cells, as the gate writes them. Figures: `seconds` for the whole download
and `first_byte_ms` (the header) with `first_row_ms` beside it, on the full table;
`peak_memory_mb`, the most Python memory (tracemalloc) the download held above what it held
before it, at a tenth of the scale and at the full scale (flat: the second within 1.5 times the
first); `rows_per_s`; and `rows_exported` against the rows seeded (must be equal).
"""
import time
import tracemalloc
import uuid
from datetime import timedelta

from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from . import Figure

SEED_BATCH = 50_000
CONTACTS = 1000


def seed(first: int, count: int, start, contact_ids: list[int]) -> None:
    """Entries number first .. first+count-1, a millisecond apart from `start`, by COPY in batches."""
    from omni.lib.bulk import insert_rows
    from omni.models import AuditEntry

    fields = ["occurred_at", "actor_label", "action", "contact_id", "object_type", "object_id", "channel", "reason",
              "data"]
    for batch_start in range(first, first + count, SEED_BATCH):
        rows = []
        for i in range(batch_start, min(first + count, batch_start + SEED_BATCH)):
            rows.append((start + timedelta(milliseconds=i), "system", "gate.allow" if i % 4 else "gate.suppress",
                         contact_ids[i % len(contact_ids)] if i % 2 else None, "compliance.decision",
                         str(uuid.UUID(int=i)), "email", "consent:granted" if i % 7 else "=HYPERLINK(1)",
                         {"message": i, "plan_step": 0, "digest": f"{i:064x}"}))
        insert_rows(AuditEntry, fields, rows)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE omni_auditentry" if not connection.in_atomic_block
                           else "ANALYZE omni_auditentry")


def download(client, url) -> dict:
    """One export through the view: times to the first piece and the first row, the whole, and the rows."""
    started = time.perf_counter()
    response = client.get(url)
    first_byte = first_row = None
    size = lines = 0
    for piece in response.streaming_content:
        now = time.perf_counter()
        if first_byte is None:
            first_byte = now
        lines += piece.count(b"\n")
        if first_row is None and lines > 1:
            first_row = now
        size += len(piece)
    ended = time.perf_counter()
    return {"status": response.status_code, "seconds": ended - started, "first_byte_ms": (first_byte - started) * 1000,
            "first_row_ms": ((first_row or ended) - started) * 1000, "rows": lines - 1, "bytes": size}


def peak_memory_mb(client, url) -> tuple[float, int]:
    """The most memory (tracemalloc) one download held above what was held before it, and its rows."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = download(client, url)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - before) / 2**20, result["rows"]


def measure(scale: int, log=lambda line: None) -> list[Figure]:
    from django.contrib.auth.models import Group, User

    from contacts.models import Contact
    from omni.lib.bulk import insert_rows
    from omni.models import AuditEntry

    insert_rows(Contact, ["external_id", "email"],
                [(f"audit-bench-{uuid.uuid4().hex[:10]}", f"c{i}@example.com") for i in range(CONTACTS)])
    contact_ids = list(Contact.objects.order_by("-pk").values_list("pk", flat=True)[:CONTACTS])
    user = User.objects.create_user(f"bench-compliance-{uuid.uuid4().hex[:6]}", is_staff=True)
    user.groups.add(Group.objects.get(name="Compliance"))
    client = Client()
    client.force_login(user)
    url = reverse("admin:omni_auditentry_export")
    start = timezone.now() - timedelta(days=30)

    tenth = max(1, scale // 10)
    seed(0, tenth, start, contact_ids)
    small_peak, small_rows = peak_memory_mb(client, url)
    log(f"audit_export: {small_rows} rows at a tenth of the scale, peak {small_peak:.2f} MB")
    started = time.perf_counter()
    seed(tenth, scale - tenth, start, contact_ids)
    log(f"audit_export: seeded {scale} entries in {time.perf_counter() - started:.1f} s")

    # Each download exports every entry before it: the seeded ones, and the earlier exports' own.
    expected = AuditEntry.objects.count()
    timed = download(client, url)
    log(f"audit_export: {timed}")
    large_peak, large_rows = peak_memory_mb(client, url)
    notes = (f"{connection.vendor}; through the admin view as a Compliance user; "
             f"{timed['bytes'] / 2**20:.0f} MB of CSV; status {timed['status']}")
    return [
        Figure("audit_export", "seconds", timed["seconds"], "s", timed["rows"], notes=notes),
        Figure("audit_export", "first_byte_ms", timed["first_byte_ms"], "ms", timed["rows"],
               notes="the header line; the first row came at " f"{timed['first_row_ms']:.0f} ms"),
        Figure("audit_export", "first_row_ms", timed["first_row_ms"], "ms", timed["rows"]),
        Figure("audit_export", "rows_per_s", timed["rows"] / timed["seconds"], "rows/s", timed["rows"]),
        Figure("audit_export", "peak_memory_mb", small_peak, "MB", small_rows, notes="a tenth of the scale"),
        Figure("audit_export", "peak_memory_mb", large_peak, "MB", large_rows,
               notes=f"the full scale: {large_peak / small_peak if small_peak else 0:.2f} times a tenth's"),
        Figure("audit_export", "rows_exported", timed["rows"], "rows", expected,
               notes=f"of {expected} entries in the table when it started (must be equal): {scale} seeded, "
                     f"{expected - scale} others"),
    ]


def run(scale: int, *, figures, log) -> list[Figure]:
    return measure(scale, log=log)
