import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiScope(models.TextChoices):
    EVENTS_WRITE = "events:write", "Send events"
    CONTACTS_WRITE = "contacts:write", "Create and update contacts"
    CONTACTS_READ = "contacts:read", "Read contacts"
    MESSAGES_WRITE = "messages:write", "Send messages"


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
