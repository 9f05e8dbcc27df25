import hashlib
import hmac
import secrets

import pgtrigger
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone

from .lib.webhook_addresses import scheme_problem


class ApiScope(models.TextChoices):
    EVENTS_WRITE = "events:write", "Send events"
    CONTACTS_WRITE = "contacts:write", "Create and update contacts"
    CONTACTS_READ = "contacts:read", "Read contacts"
    MESSAGES_WRITE = "messages:write", "Send messages"
    JOURNEYS_WRITE = "journeys:write", "Enroll contacts in journeys"
    CONTACTS_ERASE = "contacts:erase", "Erase contacts' personal data"


class ApiKeyQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """A key for the HTTP API. Only a hash of the secret is stored; the secret is shown once.

    A key reads `omni_<prefix>_<secret>`: the prefix finds the row, the hash of the whole key
    is compared in constant time.
    """

    PREFIX_LENGTH = 8

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list, help_text="Scopes this key may use.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"

    def __str__(self):
        return f"{self.name} ({self.prefix})"

    @staticmethod
    def hash_key(raw_key: str) -> str:
        # The secret is 256 random bits, so a plain SHA-256 is enough: there is nothing to
        # brute-force that a slow password hash would protect.
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @classmethod
    def generate(cls, name: str, scopes, created_by=None) -> tuple["ApiKey", str]:
        """Create a key and return it with its raw secret, which is never stored."""
        prefix = secrets.token_hex(cls.PREFIX_LENGTH // 2)
        raw_key = f"omni_{prefix}_{secrets.token_urlsafe(32)}"
        key = cls.objects.create(
            name=name, prefix=prefix, key_hash=cls.hash_key(raw_key), scopes=list(scopes), created_by=created_by
        )
        return key, raw_key

    @classmethod
    def authenticate(cls, raw_key: str):
        """The active key matching raw_key, or None."""
        parts = (raw_key or "").split("_")
        if len(parts) < 3 or parts[0] != "omni":
            return None
        key = cls.objects.active().filter(prefix=parts[1]).first()
        if key is None or not hmac.compare_digest(key.key_hash, cls.hash_key(raw_key)):
            return None
        return key

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


# The only columns of an audit entry anything may write after its insert: the sealer's, once.
SEALER_COLUMNS = frozenset({"seq", "prev_hash", "hash", "sealed_at"})


class AuditEntryQuerySet(models.QuerySet):
    """The ORM's side of the database triggers (which SQLite has not): no delete, and no update
    but the sealer's."""

    def delete(self):
        raise ValueError("Audit entries are append-only.")

    def update(self, **kwargs):
        if set(kwargs) - SEALER_COLUMNS:
            raise ValueError("Audit entries are append-only: only the sealer's columns may be written.")
        return super().update(**kwargs)


class AuditEntry(models.Model):
    """One decision or change, written once and never edited; sealed into a hash chain after commit.

    Writers insert rows unsealed (`seq` empty) and never wait on each other; one sealer
    (omni.audit.seal_pending) gives committed rows a gap-free `seq` and a `hash` covering the
    row's content and the previous row's hash. On PostgreSQL triggers refuse DELETE and
    TRUNCATE, and any UPDATE but the sealer's own (the columns in SEALER_COLUMNS of an unsealed
    row); elsewhere the ORM refuses them. Rows keep plain ids, never foreign keys a delete could
    rewrite, and no personal data: that lives in AuditPersonalData, which erasure may empty
    without breaking the chain, and the entry keeps only a keyed hash of it (`personal_hmac`).
    `action` is a dotted verb such as "consent.changed"; `reason` is machine-readable.
    """

    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_id = models.BigIntegerField(null=True, blank=True, help_text="The staff user who acted, by id.")
    actor_label = models.CharField(max_length=200, default="system")
    # Indexed in Meta: db_index would add a second, LIKE-only index on PostgreSQL that no
    # query uses and every insert writes.
    action = models.CharField(max_length=64)
    contact_id = models.BigIntegerField(null=True, blank=True)
    # What the entry is about, by model label and primary key (a message, a journey, a consent).
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    channel = models.CharField(max_length=10, blank=True)
    reason = models.CharField(max_length=100, blank=True)
    data = models.JSONField(default=dict, blank=True)
    # HMAC-SHA256 of the entry's personal data under that row's own key (omni.audit.personal_hmac),
    # chained with the entry; empty when it has none, and in entries sealed before it existed.
    personal_hmac = models.CharField(max_length=64, blank=True, default="", editable=False)
    # When the row was inserted (occurred_at may be earlier: an event received late). Not
    # chained; verify_audit ages unsealed entries by it.
    written_at = models.DateTimeField(default=timezone.now, db_default=Now(), editable=False)
    # The chain, filled by the sealer.
    seq = models.BigIntegerField(null=True, blank=True, unique=True, editable=False)
    prev_hash = models.CharField(max_length=64, blank=True, editable=False)
    hash = models.CharField(max_length=64, blank=True, editable=False)
    sealed_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        verbose_name_plural = "audit entries"
        permissions = [("export_auditentry", "Can export audit entries")]
        indexes = [
            models.Index(fields=["action"], name="omni_audit_action"),
            models.Index(fields=["contact_id", "occurred_at"], name="omni_audit_contact_time"),
            models.Index(fields=["object_type", "object_id"], name="omni_audit_object"),
            models.Index(fields=["id"], condition=models.Q(seq__isnull=True), name="omni_audit_unsealed"),
        ]
        triggers = [
            # Entries are history: nobody rewrites or removes them, not even by SQL. Only the
            # sealer writes, and only its own columns of an entry not sealed yet.
            pgtrigger.Protect(
                name="protect_sealed_update", operation=pgtrigger.Update,
                condition=pgtrigger.Q(old__seq__isnull=False),
            ),
            pgtrigger.Protect(
                name="protect_unsealed_update", operation=pgtrigger.Update,
                condition=pgtrigger.AnyChange(exclude=list(SEALER_COLUMNS)),
            ),
            pgtrigger.Protect(name="protect_delete", operation=pgtrigger.Delete),
            # TRUNCATE skips row triggers. (The test suite empties the table between
            # transactional tests with pgtrigger.ignore: conftest.py.)
            pgtrigger.Trigger(
                name="protect_truncate", operation=pgtrigger.Truncate, level=pgtrigger.Statement,
                when=pgtrigger.Before, func="RAISE EXCEPTION 'pgtrigger: Cannot truncate % table', TG_TABLE_NAME;",
            ),
        ]

    def __str__(self):
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.action} {self.reason}".strip()

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Audit entries are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit entries are append-only.")

    @property
    def sealed(self) -> bool:
        return self.seq is not None


class AuditPersonalData(models.Model):
    """The personal part of an audit entry (addresses, evidence, provider responses), outside the chain.

    Each row has its own random key; the chained entry keeps HMAC(key, data), so verify_audit
    notices data changed later. Erasure (omni.audit.erase_personal_data) empties the data and
    the key together: what is left proves nothing about the person, the chained entry keeps
    the fact that something happened, and the chain stays valid.
    """

    entry = models.OneToOneField(AuditEntry, primary_key=True, on_delete=models.DO_NOTHING, db_constraint=False,
                                 related_name="personal")
    contact_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    data = models.JSONField(default=dict, blank=True)
    # Hex of 32 random bytes; empty once erased, and in rows written before keys existed.
    key = models.CharField(max_length=64, blank=True, default="", editable=False)
    erased_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "audit personal data"


def new_webhook_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


class WebhookEndpoint(models.Model):
    """An outside URL Omni calls with signed JSON (omni/lib/webhooks.py).

    The signing secret is kept in clear (signing needs it); the admin shows it once, after
    create or rotation, and masked afterwards.
    """

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=500, help_text="https only outside development; private addresses are refused.")
    secret = models.CharField(max_length=100, default=new_webhook_secret, editable=False)
    active = models.BooleanField(default=True, help_text="Inactive endpoints are never called.")
    timeout_seconds = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(30)],
        help_text="How long one attempt may take, from connecting to the last byte of the answer.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "webhook endpoint"

    def __str__(self):
        return self.name

    def clean(self):
        problem = scheme_problem(self.url or "")
        if problem:
            raise ValidationError({"url": problem})

    def rotate_secret(self) -> str:
        """Give the endpoint a new secret, saved at once; returns it."""
        self.secret = new_webhook_secret()
        self.save(update_fields=["secret", "updated_at"])
        return self.secret

    @property
    def masked_secret(self) -> str:
        return f"{self.secret[:10]}…{self.secret[-4:]}"


class WebhookOutcome(models.TextChoices):
    OK = "ok", "Succeeded"
    RETRYABLE = "retryable", "Failed, may be retried"
    PERMANENT = "permanent", "Failed for good"


class WebhookCall(models.Model):
    """One attempt at calling a webhook endpoint: the call log, one row per attempt."""

    # Excerpt of the answer kept here; the caller gets the whole answer (up to 16 KiB).
    EXCERPT_CHARS = 2000

    # PROTECT: the log is history; an endpoint no longer wanted is made inactive.
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, related_name="calls")
    url = models.CharField(max_length=500, help_text="The URL as it was when called.")
    idempotency_key = models.CharField(max_length=200)
    attempt = models.PositiveSmallIntegerField(default=1)
    requested_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)
    outcome = models.CharField(max_length=10, choices=WebhookOutcome.choices)

    class Meta:
        ordering = ["-requested_at", "-id"]
        verbose_name = "webhook call"
        indexes = [
            models.Index(fields=["endpoint", "requested_at"], name="omni_webhookcall_endpoint"),
            models.Index(fields=["idempotency_key"], name="omni_webhookcall_key"),
            models.Index(fields=["outcome", "requested_at"], name="omni_webhookcall_outcome"),
        ]

    def __str__(self):
        return f"{self.endpoint_id} {self.idempotency_key} #{self.attempt}: {self.outcome}"
