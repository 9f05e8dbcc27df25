"""The chain's ends: the sealer writes checkpoints (seq, hash, time) outside the database, so
verify_audit notices entries removed or rewritten at the end of the chain, even when whoever
did it recomputed every hash."""
import io
import json

import boto3
import pytest
from botocore.exceptions import ClientError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from omni import audit
from omni.audit_checkpoints import checkpoint_store
from omni.audit_verification import verify_chain
from omni.models import AuditEntry

from .test_audit_chain import alter_behind_the_triggers_back

pytestmark = pytest.mark.django_db

BUCKET = "omni-audit-checkpoints"


def write_and_seal(n: int) -> list[AuditEntry]:
    entries = [audit.record("test.happened", reason=f"r{i}", data={"i": i}) for i in range(n)]
    audit.seal_pending()
    return entries


def rewrite_from(seq: int, new_reason: str) -> None:
    """Change the entries from `seq` to the end and recompute their hashes, so the chain holds."""
    rows = list(AuditEntry.objects.filter(seq__gte=seq).order_by("seq")
                .values("id", "seq", "prev_hash", *audit.CHAINED_FIELDS))
    prev_hash = rows[0]["prev_hash"]
    for row in rows:
        row["reason"] = new_reason
        digest = audit.entry_hash(row["seq"], prev_hash, row)
        alter_behind_the_triggers_back("UPDATE omni_auditentry SET reason = %s, prev_hash = %s, hash = %s WHERE id = %s",
                                 [new_reason, prev_hash, digest, row["id"]])
        prev_hash = digest


def chain_is_consistent_by_itself() -> bool:
    """What verify_audit saw before checkpoints: every link holds (the checkpoint aside)."""
    report = verify_chain()
    return report.broken is None


def test_the_sealer_writes_a_checkpoint_of_the_chain_end_outside_the_database():
    entries = write_and_seal(3)

    checkpoint = checkpoint_store().latest()

    last = AuditEntry.objects.get(pk=entries[-1].pk)
    assert (checkpoint.seq, checkpoint.hash) == (3, last.hash)
    assert checkpoint.written_at is not None


def test_verify_fails_after_the_last_entries_are_deleted_although_the_rest_still_links():
    # given a sealed chain of five, checkpointed
    write_and_seal(5)

    # when the last two are deleted (what is left is a valid chain of three)
    alter_behind_the_triggers_back("DELETE FROM omni_auditentry WHERE seq > 3")

    # then verify fails, naming the checkpoint the chain no longer reaches
    assert chain_is_consistent_by_itself()
    report = verify_chain()
    assert not report.ok
    assert "ends at seq 3" in report.checkpoint_problem and "seq 5" in report.checkpoint_problem
    with pytest.raises(CommandError, match="checkpoint"):
        call_command("verify_audit", stdout=io.StringIO())


def test_verify_fails_after_the_last_entries_are_rewritten_with_recomputed_hashes():
    write_and_seal(4)

    rewrite_from(3, "forged")

    assert chain_is_consistent_by_itself()
    report = verify_chain()
    assert not report.ok and "differs from the checkpoint" in report.checkpoint_problem


def test_verify_fails_after_every_entry_is_deleted():
    write_and_seal(3)

    alter_behind_the_triggers_back("DELETE FROM omni_auditentry")

    report = verify_chain()
    assert report.checked == 0 and not report.ok
    assert "ends at seq 0" in report.checkpoint_problem


@pytest.mark.postgres
def test_the_database_refuses_to_truncate_the_audit_log():
    write_and_seal(2)

    with pytest.raises(DatabaseError, match="Cannot truncate"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE omni_auditentry")

    assert AuditEntry.objects.count() == 2


@pytest.mark.postgres
def test_verify_fails_after_a_truncate_done_with_the_triggers_off():
    write_and_seal(3)

    alter_behind_the_triggers_back("TRUNCATE omni_auditentry")

    report = verify_chain()
    assert not report.ok and "ends at seq 0" in report.checkpoint_problem


def test_entries_added_after_the_last_checkpoint_verify():
    write_and_seal(2)
    audit.record("test.later")

    assert verify_chain().ok
    audit.seal_pending()
    assert verify_chain().ok and checkpoint_store().latest().seq == 3


def test_checkpoints_of_one_database_are_kept_apart_from_another_s(settings, tmp_path):
    # The embedded default names a folder; each database gets its own file in it, so the
    # benchmarks' database never writes checkpoints the configured one would be held to.
    write_and_seal(1)
    folder = tmp_path / "audit-checkpoints"

    [kept] = list(folder.iterdir())

    assert kept.suffix == ".jsonl" and json.loads(kept.read_text().splitlines()[-1])["seq"] == 1


# --- S3 with object lock -----------------------------------------------------------------------

@pytest.fixture
def s3_checkpoints(aws_settings, moto_server):
    """An S3 bucket with object lock on the moto server, named by OMNI_AUDIT_CHECKPOINT_URL."""
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_server.url,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    aws_settings.OMNI_AUDIT_CHECKPOINT_URL = f"s3://{BUCKET}/production/"
    aws_settings.OMNI_AUDIT_CHECKPOINT_RETENTION_DAYS = 30
    return client


def test_checkpoints_go_to_write_once_objects_in_an_s3_bucket_with_object_lock(s3_checkpoints):
    # when the sealer seals
    write_and_seal(2)
    write_and_seal(1)

    # then each checkpoint is an object of its own, locked in compliance mode
    listed = s3_checkpoints.list_objects_v2(Bucket=BUCKET, Prefix="production/")["Contents"]
    assert len(listed) == 2
    newest = listed[0]["Key"]
    head = s3_checkpoints.head_object(Bucket=BUCKET, Key=newest)
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockRetainUntilDate"]
    assert checkpoint_store().latest().seq == 3
    assert verify_chain().ok

    # and nobody can remove it
    version = s3_checkpoints.list_object_versions(Bucket=BUCKET, Prefix=newest)["Versions"][0]["VersionId"]
    with pytest.raises(ClientError):
        s3_checkpoints.delete_object(Bucket=BUCKET, Key=newest, VersionId=version)


def test_an_s3_checkpoint_hidden_or_overwritten_still_counts(s3_checkpoints):
    # given a chain of three, checkpointed, whose last entry is then deleted
    write_and_seal(3)
    newest = s3_checkpoints.list_objects_v2(Bucket=BUCKET, Prefix="production/")["Contents"][0]["Key"]
    alter_behind_the_triggers_back("DELETE FROM omni_auditentry WHERE seq = 3")

    # when someone with write access hides the checkpoint behind a delete marker and writes
    # a new version of it that agrees with the shortened chain
    s3_checkpoints.delete_object(Bucket=BUCKET, Key=newest)
    second = AuditEntry.objects.get(seq=2)
    s3_checkpoints.put_object(Bucket=BUCKET, Key=newest, Body=json.dumps(
        {"seq": 2, "hash": second.hash, "written_at": "2030-01-01T00:00:00+00:00"}).encode())

    # then the first version written is the one verify holds the chain to
    report = verify_chain()
    assert not report.ok and "ends at seq 2" in report.checkpoint_problem
