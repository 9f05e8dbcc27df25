"""The audit chain: entries written unsealed, sealed after commit into a gap-free hash chain,
protected by a trigger on PostgreSQL, and verified by `manage.py verify_audit`."""
import hashlib
import io
import json
import threading
import time
from datetime import timedelta
from datetime import timezone as dt_timezone

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from compliance.models import Decision
from omni import audit
from omni.audit_verification import verify_chain
from omni.lib.bulk import insert_rows
from omni.models import AuditEntry, AuditPersonalData

pytestmark = pytest.mark.django_db


def write(n: int, **kwargs) -> list[AuditEntry]:
    return [audit.record("test.happened", reason=f"r{i}", data={"i": i, "nested": {"b": 1, "a": [1, 2]}}, **kwargs)
            for i in range(n)]


def alter_behind_the_triggers_back(sql: str, params=()) -> None:
    """Run SQL on the audit table with its protecting triggers off, as someone with table rights could."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE omni_auditentry DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE omni_auditentry ENABLE TRIGGER USER")


def test_entries_are_written_unsealed_and_the_sealer_chains_them_in_a_gap_free_sequence():
    # given
    entries = write(5)
    assert not AuditEntry.objects.filter(seq__isnull=False).exists()

    # when
    sealed = audit.seal_pending()

    # then
    assert sealed == 5
    chain = list(AuditEntry.objects.order_by("seq").values_list("id", "seq", "prev_hash", "hash"))
    assert [seq for _, seq, _, _ in chain] == [1, 2, 3, 4, 5]
    assert [entry_id for entry_id, _, _, _ in chain] == [e.pk for e in entries]
    assert chain[0][2] == audit.GENESIS_HASH
    assert all(chain[i][2] == chain[i - 1][3] for i in range(1, 5))
    assert verify_chain().ok


def test_sealing_continues_the_chain_across_runs_and_small_batches():
    write(3)
    audit.seal_pending(batch=2)
    write(4)
    audit.seal_pending(batch=3)

    assert list(AuditEntry.objects.order_by("seq").values_list("seq", flat=True)) == list(range(1, 8))
    report = verify_chain()
    assert report.ok and report.checked == 7


def test_entries_written_in_bulk_with_and_without_personal_data_are_chained():
    audit.record_many([
        audit.build("bulk.plain", contact_id=1, data={"n": 1}),
        audit.build("bulk.personal", contact_id=2, data={"n": 2}, personal={"address": "ann@example.com"}),
    ])
    audit.seal_pending()

    assert AuditEntry.objects.filter(seq__isnull=False).count() == 2
    personal = AuditPersonalData.objects.get()
    assert personal.data == {"address": "ann@example.com"} and personal.contact_id == 2
    assert "ann@example.com" not in str(AuditEntry.objects.get(action="bulk.personal").data)
    assert verify_chain().ok


def test_verify_names_the_first_entry_whose_content_was_altered():
    entries = write(4)
    audit.seal_pending()
    third = AuditEntry.objects.get(pk=entries[2].pk)

    alter_behind_the_triggers_back("UPDATE omni_auditentry SET reason = 'tampered' WHERE id = %s", [third.pk])

    report = verify_chain()
    assert report.broken.seq == 3 and report.broken.entry_id == third.pk
    assert "altered" in report.broken.problem and report.checked == 2


def test_verify_notices_a_removed_entry():
    entries = write(4)
    audit.seal_pending()

    alter_behind_the_triggers_back("DELETE FROM omni_auditentry WHERE id = %s", [entries[1].pk])

    report = verify_chain()
    assert report.broken.seq == 2 and "missing" in report.broken.problem


def test_verify_notices_a_rehashed_entry_whose_successor_no_longer_links_to_it():
    entries = write(3)
    audit.seal_pending()
    second = AuditEntry.objects.get(pk=entries[1].pk)
    forged = audit.entry_hash(2, second.prev_hash, {**AuditEntry.objects.filter(pk=second.pk).values(
        *audit.CHAINED_FIELDS).get(), "reason": "forged"})

    alter_behind_the_triggers_back("UPDATE omni_auditentry SET reason = 'forged', hash = %s WHERE id = %s",
                                   [forged, second.pk])

    report = verify_chain()
    assert report.broken.seq == 3 and "previous hash" in report.broken.problem


def test_verify_audit_command_exits_non_zero_naming_the_broken_link():
    entries = write(2)
    audit.seal_pending()
    call_command("verify_audit", stdout=io.StringIO())
    alter_behind_the_triggers_back("UPDATE omni_auditentry SET data = '{}' WHERE id = %s", [entries[0].pk])

    with pytest.raises(CommandError, match=rf"seq 1 \(entry {entries[0].pk}\)"):
        call_command("verify_audit", stdout=io.StringIO())


def test_verify_audit_reports_entries_left_unsealed_for_more_than_a_minute():
    AuditEntry.objects.create(action="test.old", written_at=timezone.now() - timedelta(minutes=5))
    audit.record("test.fresh")

    with pytest.raises(CommandError, match="1 audit entries unsealed for more than"):
        call_command("verify_audit", stdout=io.StringIO())

    call_command("seal_audit", stdout=io.StringIO())
    call_command("verify_audit", stdout=io.StringIO())


def test_erasing_personal_data_keeps_the_chain_valid():
    entry = audit.record("consent.changed", contact_id=7, data={"status": "granted"},
                         personal={"evidence": {"ip": "203.0.113.9"}})
    audit.seal_pending()

    erased = audit.erase_personal_data(7)

    assert erased == 1
    personal = AuditPersonalData.objects.get(entry_id=entry.pk)
    assert (personal.data, personal.key) == ({}, "") and personal.erased_at is not None
    assert verify_chain().ok


def test_the_chained_entry_keeps_a_keyed_hash_of_its_personal_data():
    entry = audit.record("suppression.added", contact_id=7, data={"purpose": ""},
                         personal={"address": "ann@example.com"})

    personal = AuditPersonalData.objects.get(entry_id=entry.pk)
    assert len(personal.key) == 64
    assert AuditEntry.objects.get(pk=entry.pk).personal_hmac == audit.personal_hmac(personal.key, personal.data)
    assert "ann@example.com" not in AuditEntry.objects.get(pk=entry.pk).personal_hmac


def test_verify_notices_a_changed_personal_data_row():
    # given an entry whose personal data is sealed by its keyed hash
    audit.record_many([audit.build("suppression.added", contact_id=7, personal={"address": "ann@example.com"})])
    entry = audit.record("consent.changed", contact_id=7, personal={"evidence": {"ip": "203.0.113.9"}})
    audit.seal_pending()
    assert verify_chain().ok

    # when someone rewrites the personal data outside the chain
    AuditPersonalData.objects.filter(entry_id=entry.pk).update(data={"evidence": {"ip": "198.51.100.1"}})

    # then verify notices it
    report = verify_chain()
    assert report.personal_problems == (f"entry {entry.pk}: its personal data does not match its keyed hash",)
    with pytest.raises(CommandError, match="personal data does not match"):
        call_command("verify_audit", stdout=io.StringIO())


def test_verify_notices_personal_data_kept_after_its_key_was_removed_or_a_row_removed():
    kept = audit.record("consent.changed", contact_id=7, personal={"evidence": {"ip": "203.0.113.9"}})
    gone = audit.record("consent.changed", contact_id=8, personal={"evidence": {"ip": "203.0.113.10"}})
    audit.seal_pending()

    AuditPersonalData.objects.filter(entry_id=kept.pk).update(key="")
    AuditPersonalData.objects.filter(entry_id=gone.pk).delete()

    assert verify_chain().personal_problems == (
        f"entry {kept.pk}: its personal data does not match its keyed hash",
        f"entry {gone.pk}: its personal data row is missing",
    )


def test_entries_sealed_before_keyed_hashes_keep_their_hashes_and_verify():
    # given an entry written as before keyed hashes: personal data without a key or hash
    entry = AuditEntry.objects.create(action="consent.changed", contact_id=7, data={"status": "granted"})
    AuditPersonalData.objects.create(entry=entry, contact_id=7, data={"evidence": {"ip": "203.0.113.9"}})

    audit.seal_pending()

    # then its hash is the one the original formula gives, and the chain verifies
    row = AuditEntry.objects.filter(pk=entry.pk).values(*audit.CHAINED_FIELDS).get()
    row["occurred_at"] = row["occurred_at"].astimezone(dt_timezone.utc).isoformat()
    content = json.dumps([row[name] for name in audit.CHAINED_FIELDS], sort_keys=True, separators=(",", ":"),
                         ensure_ascii=False, default=str).encode()
    original = hashlib.sha256(f"1:{audit.GENESIS_HASH}:".encode() + content).hexdigest()
    assert AuditEntry.objects.get(pk=entry.pk).hash == original
    assert verify_chain().ok


def test_verify_ages_unsealed_entries_by_when_they_were_written_not_when_they_happened():
    # given an event received now that happened ten minutes ago (event.received backdates)
    audit.record("event.received", occurred_at=timezone.now() - timedelta(minutes=10))

    # then the sealer is not reported missing for it
    report = verify_chain()
    assert report.stale_unsealed == 0 and report.ok

    # but an entry written five minutes ago and still unsealed is
    AuditEntry.objects.create(action="test.stuck", written_at=timezone.now() - timedelta(minutes=5))
    assert verify_chain().stale_unsealed == 1


def test_verify_flags_a_decision_with_no_sealed_audit_entry():
    from compliance import decisions, gate
    from contacts.models import Contact

    # given a decision from five minutes ago whose audit entry was never written
    ann = Contact.objects.create(external_id="ann", phone="+14155550101")
    [verdict] = gate.decide_many([gate.SendRequest(ann, "sms", "marketing", ann.phone)])
    lost = decisions.values(decisions.Ruling(verdict, 41, ann.pk), timezone.now() - timedelta(minutes=5))
    insert_rows(Decision, decisions.ROW_FIELDS, [tuple(lost[name] for name in decisions.ROW_FIELDS)])
    # and one decided just now, with its entry not sealed yet (the sealer may lag that long)
    decisions.record([decisions.Ruling(verdict, 42, ann.pk)], timezone.now())

    report = verify_chain()

    assert report.record_problems == (f"decision {lost['id']} has no sealed audit entry",)
    with pytest.raises(CommandError, match="has no sealed audit entry"):
        call_command("verify_audit", stdout=io.StringIO())
    audit.seal_pending()
    assert verify_chain().record_problems == (f"decision {lost['id']} has no sealed audit entry",)


def test_the_orm_refuses_to_delete_audit_entries_or_change_what_they_say():
    entry = audit.record("test.happened", reason="as it was")

    with pytest.raises(ValueError, match="append-only"):
        AuditEntry.objects.filter(pk=entry.pk).delete()
    with pytest.raises(ValueError, match="append-only"):
        AuditEntry.objects.filter(pk=entry.pk).update(reason="rewritten")

    assert AuditEntry.objects.get(pk=entry.pk).reason == "as it was"


def test_the_demo_data_verifies(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("seed_demo", stdout=io.StringIO())
    call_command("seal_audit", stdout=io.StringIO())

    out = io.StringIO()
    call_command("verify_audit", stdout=out)

    assert "Audit chain intact" in out.getvalue()
    # (the verification itself is written down, as an audit.verified entry still to be sealed)
    assert AuditEntry.objects.filter(seq__isnull=True).exclude(action="audit.verified").count() == 0


@pytest.mark.postgres
def test_the_database_refuses_to_update_or_delete_an_entry_sealed_or_not_but_lets_the_sealer_seal():
    sealed, unsealed = write(2)
    # the sealer's own columns may be written while an entry is unsealed
    assert AuditEntry.objects.filter(pk=sealed.pk).update(seq=1, hash="x" * 64, prev_hash=audit.GENESIS_HASH,
                                                          sealed_at=timezone.now()) == 1

    refused = [
        ("UPDATE omni_auditentry SET reason = 'x' WHERE id = %s", sealed),
        ("DELETE FROM omni_auditentry WHERE id = %s", sealed),
        ("UPDATE omni_auditentry SET hash = 'y' WHERE id = %s", sealed),
        ("UPDATE omni_auditentry SET reason = 'x' WHERE id = %s", unsealed),
        ("UPDATE omni_auditentry SET data = '{}' WHERE id = %s", unsealed),
        ("UPDATE omni_auditentry SET written_at = now() - interval '1 day' WHERE id = %s", unsealed),
        ("DELETE FROM omni_auditentry WHERE id = %s", unsealed),
    ]
    for statement, entry in refused:
        with pytest.raises(DatabaseError, match="Cannot"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [entry.pk])

    assert AuditEntry.objects.filter(pk=unsealed.pk).values_list("reason", flat=True).get() == "r1"


@pytest.mark.postgres
def test_a_sealer_finding_another_at_work_skips_instead_of_waiting(transactional_db):
    # given another sealer holding the sealer's lock
    write(2)
    holding, release = threading.Event(), threading.Event()

    def other_sealer():
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [audit.SEALER_LOCK_KEY])
                holding.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=other_sealer)
    thread.start()
    assert holding.wait(10)

    # when a beat tick's sealer runs meanwhile (a waiting sealer would hit the lock timeout)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
        started = time.monotonic()
        sealed = audit.seal_pending()
        took = time.monotonic() - started
    finally:
        release.set()
        thread.join(10)
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")

    # then it skipped at once, and the next run seals
    assert sealed == 0 and took < 1
    assert audit.seal_pending() == 2


@pytest.mark.postgres
def test_the_sealer_seals_only_committed_entries_and_never_waits_on_writers(transactional_db):
    # given a writer holding an uncommitted entry open
    write(2)
    inserted, release, done = threading.Event(), threading.Event(), threading.Event()

    def slow_writer():
        try:
            with transaction.atomic():
                audit.record("test.slow")
                inserted.set()
                release.wait(10)
        finally:
            connection.close()
            done.set()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    inserted.wait(10)

    # when the sealer runs meanwhile
    first = audit.seal_pending()

    # then it sealed what was committed, without waiting
    assert first == 2
    release.set()
    done.wait(10)
    thread.join(10)
    assert audit.seal_pending() == 1
    assert list(AuditEntry.objects.order_by("seq").values_list("seq", flat=True)) == [1, 2, 3]
    assert verify_chain().ok


@pytest.mark.postgres
def test_two_sealers_at_once_build_one_chain(transactional_db):
    from omni.tests.fakes import run_concurrently

    audit.record_many([audit.build("test.many", data={"i": i}) for i in range(3000)])

    results, errors = run_concurrently(lambda: audit.seal_pending(batch=500), times=2)

    assert not errors and sum(results) == 3000
    report = verify_chain()
    assert report.ok and report.checked == 3000


def test_a_gate_decision_is_sealed_by_digest_and_an_altered_one_is_caught(settings):
    from compliance import decisions, gate
    from compliance.models import Decision
    from contacts.models import Contact

    ann = Contact.objects.create(external_id="ann", phone="+14155550101")
    [verdict] = gate.decide_many([gate.SendRequest(ann, "sms", "marketing", ann.phone)])
    [decision] = decisions.record([decisions.Ruling(verdict, 41, ann.pk, 0, "sandbox")], timezone.now())
    audit.seal_pending()
    assert verify_chain().ok
    entry = AuditEntry.objects.get(object_id=str(decision["id"]))
    assert (entry.action, entry.data["digest"], entry.data["message"]) == ("gate.suppress", decision["digest"], 41)
    assert Decision.objects.get().compute_digest() == decision["digest"]

    Decision.objects.filter(pk=decision["id"]).update(reason="consent:granted", outcome="allow")

    report = verify_chain()
    assert report.record_problems == (f"decision {decision['id']} was altered",)
    with pytest.raises(CommandError, match="was altered"):
        call_command("verify_audit", stdout=io.StringIO())


def test_entries_written_together_go_in_one_statement_at_the_end_and_not_at_all_on_failure():
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured, audit.written_together():
        assert audit.record("thing.one", data={"n": 1}) is None
        audit.record("thing.two", data={"n": 2})
        with audit.written_together():  # joins the outer block
            audit.record("thing.three", data={"n": 3})
        assert AuditEntry.objects.filter(action__startswith="thing.").count() == 0
    assert [e.action for e in AuditEntry.objects.filter(action__startswith="thing.").order_by("pk")] == [
        "thing.one", "thing.two", "thing.three"]
    assert sum("omni_auditentry" in q["sql"] for q in captured.captured_queries) == 2  # the count, then the write

    with pytest.raises(RuntimeError), transaction.atomic(), audit.written_together():
        audit.record("thing.lost")
        raise RuntimeError("the change fails")
    assert not AuditEntry.objects.filter(action="thing.lost").exists()
