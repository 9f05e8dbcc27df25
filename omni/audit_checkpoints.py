"""Checkpoints of the audit chain, kept outside the database.

The chain proves that nothing inside it changed, but not that its end is still there: someone
able to write the table could delete or rewrite the last entries and recompute their hashes.
After sealing, the sealer writes the chain's last (seq, hash) to a store the database cannot
touch, and verify_audit fails when the chain no longer reaches the latest checkpoint or
differs from it there.

OMNI_AUDIT_CHECKPOINT_URL names the store:
- `file:///path/to/folder`: one JSON line per checkpoint, appended to a file named for the
  database (the embedded default, under OMNI_VAR_DIR);
- `s3://bucket/prefix/`: one write-once object per checkpoint, in a bucket with S3 Object Lock
  (retention OMNI_AUDIT_CHECKPOINT_RETENTION_DAYS in OMNI_AUDIT_CHECKPOINT_LOCK_MODE).
"""
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import connection
from django.utils import timezone


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    written_at: datetime

    def to_json(self) -> str:
        return json.dumps({"seq": self.seq, "hash": self.hash, "written_at": self.written_at.isoformat()},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Checkpoint":
        values = json.loads(text)
        return cls(seq=int(values["seq"]), hash=str(values["hash"]),
                   written_at=datetime.fromisoformat(values["written_at"]))


class FileCheckpoints:
    """Checkpoints appended as JSON lines to <folder>/<database>.jsonl.

    One file per database, so the benchmarks' or a test run's database never writes
    checkpoints the configured one would then be held to. Only as safe as the file's
    permissions: production uses S3 with object lock.
    """

    # The latest checkpoint is among the last lines; two sealers may append out of order.
    TAIL_BYTES = 64 * 1024

    def __init__(self, folder: Path, database: str):
        self.path = folder / f"{database}.jsonl"
        self.location = f"file://{self.path}"

    def write(self, checkpoint: Checkpoint) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(checkpoint.to_json() + "\n")
            file.flush()
            os.fsync(file.fileno())

    def latest(self) -> Checkpoint | None:
        try:
            with open(self.path, "rb") as file:
                size = file.seek(0, os.SEEK_END)
                file.seek(max(0, size - self.TAIL_BYTES))
                lines = file.read().splitlines()
        except FileNotFoundError:
            return None
        if size > self.TAIL_BYTES:
            lines = lines[1:]  # the first line read is probably cut
        found = []
        for line in lines:
            try:
                found.append(Checkpoint.from_json(line))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a crash mid-write
        return max(found, key=lambda checkpoint: checkpoint.seq, default=None)


class S3Checkpoints:
    """One object per checkpoint in an S3 bucket with Object Lock: write-once storage.

    Keys count down (<prefix><10^19 - 1 - seq>.json) so the latest checkpoint is listed first.
    Versions are read, not objects: a delete marker cannot hide a checkpoint, and a later
    version written over one does not replace it (the first version of a key is the one read).
    """

    KEY_DIGITS = 19  # a bigint seq has at most 19 digits

    def __init__(self, bucket: str, prefix: str):
        self.bucket, self.prefix = bucket, prefix
        self.location = f"s3://{bucket}/{prefix}"

    def key(self, seq: int) -> str:
        return f"{self.prefix}{10 ** self.KEY_DIGITS - 1 - seq:0{self.KEY_DIGITS}d}.json"

    def write(self, checkpoint: Checkpoint) -> None:
        retain_until = timezone.now() + timedelta(days=settings.OMNI_AUDIT_CHECKPOINT_RETENTION_DAYS)
        self._client().put_object(
            Bucket=self.bucket, Key=self.key(checkpoint.seq), Body=checkpoint.to_json().encode(),
            ContentType="application/json", ObjectLockMode=settings.OMNI_AUDIT_CHECKPOINT_LOCK_MODE,
            ObjectLockRetainUntilDate=retain_until, ChecksumAlgorithm="SHA256",
        )

    def latest(self) -> Checkpoint | None:
        client = self._client()
        first_key, first_version = None, None
        pages = client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for version in page.get("Versions", []):
                if not version["Key"].endswith(".json"):
                    continue
                if first_key is None:
                    first_key = version["Key"]
                if version["Key"] != first_key:
                    break
                # Versions of a key are listed newest first: the last one seen is the first written.
                first_version = version["VersionId"]
            else:
                continue
            break
        if first_key is None:
            return None
        body = client.get_object(Bucket=self.bucket, Key=first_key, VersionId=first_version)["Body"].read()
        return Checkpoint.from_json(body)

    @staticmethod
    def _client():
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            region_name=settings.AWS_REGION,
            endpoint_url=settings.AWS_ENDPOINT_URL or None,
            aws_access_key_id=settings.AWS_ACCESS_KEY_ID or None,
            aws_secret_access_key=settings.AWS_SECRET_ACCESS_KEY or None,
            config=Config(connect_timeout=5, read_timeout=15, retries={"mode": "standard", "max_attempts": 3}),
        )


def checkpoint_store() -> FileCheckpoints | S3Checkpoints:
    """The store OMNI_AUDIT_CHECKPOINT_URL names."""
    url = settings.OMNI_AUDIT_CHECKPOINT_URL
    parts = urlsplit(url)
    if parts.scheme == "file":
        return FileCheckpoints(Path(unquote(parts.netloc + parts.path)), _database_name())
    if parts.scheme == "s3" and parts.netloc:
        prefix = parts.path.lstrip("/")
        return S3Checkpoints(parts.netloc, prefix if not prefix or prefix.endswith("/") else prefix + "/")
    raise ValueError(f"OMNI_AUDIT_CHECKPOINT_URL must be file:///folder or s3://bucket/prefix/, not {url!r}.")


def _database_name() -> str:
    db = connection.settings_dict
    name = "-".join(str(part) for part in (connection.vendor, db.get("HOST"), db.get("PORT"), db["NAME"]) if part)
    return re.sub(r"[^A-Za-z0-9._]+", "-", name).strip("-.")[:150]
