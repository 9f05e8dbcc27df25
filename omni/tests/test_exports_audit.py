"""The audit log's export: streamed as it is read (PostgreSQL writes the CSV itself with COPY),
formula cells neutralized by the one rule whichever path wrote them, memory flat however many
entries, and audited when it starts and when it ends."""
import csv
import io
import tracemalloc
from datetime import timedelta

import pytest
from django.db import connection
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone

from contacts.models import Contact
from omni import audit
from omni.lib.bulk import insert_rows
from omni.lib.spreadsheet import neutralize_formula, neutralize_formula_sql
from omni.models import AuditEntry
from omni.web import exports

on_postgresql = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="COPY is PostgreSQL's")

TRICKY = ["=1+1", "+14155550100", "-2+3", "+1\n", "abc", "-1.5", "-1.", "\tx", "\rx", "@x", "", "'=x", " =x",
          "+", "-", "1e5", "=", "+1.2.3", "ü=", "-0", "\n=1", "a\tb", "-1\n2"]


@on_postgresql
@pytest.mark.django_db
def test_postgresql_neutralizes_exactly_as_the_python_helper():
    with connection.cursor() as cursor:
        cursor.execute("SELECT v, " + neutralize_formula_sql("v") + " FROM unnest(%s::text[]) AS t(v)", [TRICKY])
        from_sql = dict(cursor.fetchall())
        cursor.execute("SELECT " + neutralize_formula_sql("NULL"))
        null = cursor.fetchone()[0]

    assert from_sql == {value: neutralize_formula(value) for value in TRICKY}
    assert null == neutralize_formula(None) == ""


def entries(count: int, contact=None, at=None):
    """`count` audit entries by COPY (bulk_create elsewhere), some with formulas and JSON."""
    at = at or timezone.now() - timedelta(hours=1)
    insert_rows(AuditEntry, ["occurred_at", "actor_label", "action", "contact_id", "object_type", "object_id",
                             "channel", "reason", "data"],
                [(at + timedelta(microseconds=i * 7), "=cmd|' /C calc'!A0" if i % 5 == 0 else "system",
                  "gate.allow", contact.pk if contact and i % 2 else None, "compliance.decision", str(i),
                  "email", "-2+3" if i % 3 == 0 else "consent:granted",
                  {"message": i, "plan_step": 0, "note": "ü “quoted”", "nested": {"b": [1, 2.5, None], "aa": True}})
                 for i in range(count)])


def drained(download) -> bytes:
    return b"".join(download.stream)


@on_postgresql
@pytest.mark.django_db
def test_the_copy_export_reads_the_same_as_the_python_one():
    contact = Contact.objects.create(external_id="=ext", email="x@example.com")
    entries(50, contact)
    audit.record("consent.changed", reason='"=quoted"', data={"evidence": "+SUM(A1)", "long_key": {"a": "\n"}})
    counts = []

    copied = b"".join(exports.audit_csv_copy(AuditEntry.objects.all(), counts.append))
    built = b"".join(exports.audit_csv_python(AuditEntry.objects.all(), counts.append))

    assert copied == built
    assert counts == [51, 51]
    rows = list(csv.DictReader(io.StringIO(copied.decode())))
    assert rows[1]["contact_external_id"] == "'=ext" and rows[0]["actor"] == "'=cmd|' /C calc'!A0"
    assert rows[-1]["reason"] == '"=quoted"'


def test_the_audit_export_streams_and_is_audited_when_it_starts_and_ends(admin_client, admin_user, db):
    entries(exports.CHUNK + 10)

    response = admin_client.get(reverse("admin:omni_auditentry_export"))

    assert isinstance(response, StreamingHttpResponse)
    pieces = iter(response.streaming_content)
    first = next(pieces)
    started = AuditEntry.objects.get(action="audit.export_started")
    assert started.actor_id == admin_user.pk and started.data == {"filters": ""}
    # nothing is counted before the rows are read
    assert not AuditEntry.objects.filter(action="audit.exported").exists()
    text = (first + b"".join(pieces)).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == exports.CHUNK + 10
    finished = AuditEntry.objects.get(action="audit.exported")
    assert finished.data == {"filters": "", "rows": exports.CHUNK + 10, "started": started.pk}
    assert {row["reason"] for row in rows} == {"'-2+3", "consent:granted"}


def test_the_audit_export_keeps_the_changelists_filters(admin_client, db):
    entries(3)
    audit.record("consent.changed", reason="=1")

    response = admin_client.get(reverse("admin:omni_auditentry_export"), {"action__exact": "consent.changed"})

    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["reason"] for row in rows] == ["'=1"]
    assert AuditEntry.objects.get(action="audit.exported").data["rows"] == 1


def peak_while_streaming(count: int) -> int:
    download = exports.export_audit_entries(AuditEntry.objects.all(), actor=None, scope={"filters": ""})
    tracemalloc.start()
    try:
        size = sum(len(piece) for piece in download.stream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size > count * 100
    return peak


@pytest.mark.django_db
def test_the_streams_memory_stays_flat_as_the_entries_grow_tenfold():
    entries(2_000)
    small = peak_while_streaming(2_000)
    entries(18_000)

    large = peak_while_streaming(20_000)

    # a behaviour check, not a timing: ten times the rows, about the same memory
    assert large < small * 1.5 + 256 * 1024, (small, large)
    assert AuditEntry.objects.filter(action="audit.exported").count() == 2


@pytest.mark.django_db(transaction=True)
def test_the_audit_export_benchmark_exports_every_entry_at_smoke_scale(role_groups):
    from omni.bench import audit_export

    figures = {(f.metric, f.n): f for f in audit_export.measure(300)}

    exported = next(f for (metric, _), f in figures.items() if metric == "rows_exported")
    assert exported.value == exported.n >= 300
    assert {metric for metric, _ in figures} == {"seconds", "first_byte_ms", "first_row_ms", "rows_per_s",
                                                 "peak_memory_mb", "rows_exported"}
    assert all(f.value > 0 for (metric, _), f in figures.items())
