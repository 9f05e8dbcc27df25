"""Consent, suppression, sending rules, and the gate's decisions."""
import functools
import hashlib
import json
import re
import uuid
from datetime import datetime
from datetime import timezone as dt_timezone

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, validate_email
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone

from contacts.models import Contact, lifecycle_stage_keys
from contacts.phones import normalize_phone, validate_country, validate_region
from omni.choices import Channel, ConsentStatus, LawfulBasis, Purpose
from omni.lib.text import hash_address  # noqa: F401 (suppressions are looked up by it)

from .keywords import words_of


class ConsentSource(models.TextChoices):
    FORM = "form", "Signup form"
    IMPORT = "import", "Import"
    API = "api", "API"
    KEYWORD = "keyword", "SMS/WhatsApp keyword"
    AGENT = "agent", "Support agent"
    ADMIN = "admin", "Admin"
    UNSUBSCRIBE_LINK = "unsubscribe_link", "Unsubscribe link"
    PREFERENCE_PAGE = "preference_page", "Preference page"
    BOUNCE = "bounce", "Hard bounce"
    COMPLAINT = "complaint", "Complaint"
    CARRIER = "carrier", "Carrier"
    # A double opt-in confirmed by its link, or expired unconfirmed (evidence says which).
    DOUBLE_OPT_IN = "double_opt_in", "Double opt-in"


class Consent(models.Model):
    """The current consent of one contact for one channel and purpose.

    Derived from ConsentChange: compliance.actions.record_consent_change() appends a change and
    updates this row in the same transaction; nothing edits it by hand.
    """

    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="consents")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    purpose = models.CharField(max_length=15, choices=Purpose.choices)
    status = models.CharField(max_length=10, choices=ConsentStatus.choices, default=ConsentStatus.UNKNOWN)
    lawful_basis = models.CharField(max_length=20, choices=LawfulBasis.choices, blank=True)
    last_change = models.ForeignKey(
        "ConsentChange", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["contact", "channel", "purpose"], name="consent_unique_scope"),
        ]

    def __str__(self):
        return f"{self.contact}: {self.channel}/{self.purpose} {self.status}"


class ConsentChange(models.Model):
    """Append-only history of consent: who changed what, how, and on what evidence."""

    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="consent_changes")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    purpose = models.CharField(max_length=15, choices=Purpose.choices)
    status = models.CharField(max_length=10, choices=ConsentStatus.choices)
    source = models.CharField(max_length=20, choices=ConsentSource.choices)
    lawful_basis = models.CharField(max_length=20, choices=LawfulBasis.choices, blank=True)
    # Text shown, IP, user agent, URL, keyword received, provider event id...
    evidence = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200, blank=True, help_text="API key, webhook or system that acted.")
    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["contact", "channel", "purpose", "occurred_at"], name="consentchange_scope"),
                   models.Index(fields=["contact", "occurred_at", "id"], name="consentchange_contact_time")]

    def __str__(self):
        return f"{self.contact}: {self.channel}/{self.purpose} -> {self.status} ({self.source})"


class ConsentTextKey(models.TextChoices):
    """The pages of Omni's own where a person reads a consent text."""
    PREFERENCE_PAGE = "preference_page", "Preference page"
    DOUBLE_OPT_IN = "double_opt_in", "Double opt-in confirmation"


class ConsentTextQuerySet(models.QuerySet):
    def current(self, key: str) -> "ConsentText | None":
        """The newest version of the text shown at `key`, or None when none was written."""
        return self.filter(key=key).order_by("-version").first()


class ConsentText(models.Model):
    """One version of the words a person reads when giving consent on one of Omni's own pages
    (the preference page, the double opt-in form). Versions are never edited: a new text is a
    new version (compliance.actions.publish_consent_text), and consent evidence names the
    version that was shown."""

    key = models.SlugField(max_length=50, choices=ConsentTextKey.choices, help_text="Where the text is shown.")
    version = models.PositiveIntegerField(editable=False)
    text = models.TextField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = ConsentTextQuerySet.as_manager()

    class Meta:
        ordering = ["key", "-version"]
        constraints = [models.UniqueConstraint(fields=["key", "version"], name="consenttext_unique_version")]

    def __str__(self):
        return f"{self.key} v{self.version}"


class SpentLink(models.Model):
    """A single-use link or form that was used: a one-click unsubscribe, a preference form, a
    double opt-in confirmation (compliance/links.py). The unique key refuses a second use, also
    when two arrive at once."""

    key = models.CharField(max_length=100, unique=True)
    contact_id = models.BigIntegerField(null=True, blank=True)
    spent_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"{self.key} ({self.spent_at:%Y-%m-%d %H:%M})"


class SuppressionReason(models.TextChoices):
    HARD_BOUNCE = "hard_bounce", "Hard bounce"
    SOFT_BOUNCES = "soft_bounces", "Repeated soft bounces"
    COMPLAINT = "complaint", "Complaint"
    STOP = "stop", "STOP keyword"
    UNSUBSCRIBE = "unsubscribe", "Unsubscribed"
    MANUAL = "manual", "Added by staff"
    INVALID_ADDRESS = "invalid_address", "Invalid address"
    CARRIER_DEACTIVATED = "carrier_deactivated", "Number deactivated by carrier"
    # The person asked to be forgotten: only the hash is kept, so they are never messaged again.
    ERASURE = "erasure", "Erased on request"


def suppressed_address(address: str, channel: str, *, default_region: str | None = None) -> str:
    """The address as a suppression of `channel` keeps it, or ValidationError saying why it does
    not fit: an email address for email, an E.164 phone number for the phone channels (a
    national number is read in `default_region`), either for all channels (blank), any token
    for push. The gate looks suppressions up by the hash of the address exactly as contacts
    store it, so "(415) 555-0100" must become +14155550100 to ever match."""
    address = (address or "").strip()
    if not address:
        raise ValidationError("An address is required.")
    if len(address) > 254:
        raise ValidationError("An address is at most 254 characters.")
    if channel == Channel.PUSH:
        return address
    if channel == Channel.EMAIL or (not channel and "@" in address):
        validate_email(address)
        return address.lower()
    if "@" in address:
        raise ValidationError(f"An email address does not fit {Channel(channel).label}: give a phone number "
                              f"such as +14155550100.")
    return normalize_phone(address, default_region=default_region)


class Suppression(models.Model):
    """An address Omni must not message, for a channel and purpose or for all of them.

    Blank channel or purpose means every channel or purpose. `address` is emptied on erasure;
    `address_hash` keeps the address suppressed without keeping it.
    """

    address = models.CharField(max_length=254, blank=True, db_index=True)
    address_hash = models.CharField(max_length=64, db_index=True, editable=False)
    channel = models.CharField(max_length=10, choices=Channel.choices, blank=True)
    purpose = models.CharField(max_length=15, choices=Purpose.choices, blank=True)
    reason = models.CharField(max_length=20, choices=SuppressionReason.choices)
    detail = models.CharField(max_length=500, blank=True)
    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="suppressions")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["address_hash", "channel", "purpose"], name="suppression_unique_scope"),
        ]

    def save(self, *args, **kwargs):
        if self.address:
            self.address = self.address.strip().lower()
            self.address_hash = hash_address(self.address)
        super().save(*args, **kwargs)

    def __str__(self):
        scope = f"{self.channel or 'all channels'}/{self.purpose or 'all purposes'}"
        return f"{self.address or self.address_hash[:12]} ({scope}): {self.get_reason_display()}"


class SendingRule(models.Model):
    """What quiet hours and frequency caps share: a scope, a version every save raises (kept in
    each decision that applied the rule), and the time of the last change (the gate's rule cache
    reloads when it moves)."""

    name = models.CharField(max_length=100)
    channel = models.CharField(max_length=10, choices=Channel.choices, blank=True, help_text="Blank: every channel.")
    purpose = models.CharField(max_length=15, choices=Purpose.choices, blank=True, help_text="Blank: every purpose.")
    applies_to_transactional = models.BooleanField(
        default=False, help_text="Transactional messages (a password reset, a receipt) pass the rule unless set.")
    active = models.BooleanField(default=True)
    # Defaults in the database too, so code still running the previous release can add rows.
    version = models.PositiveIntegerField(default=1, db_default=1, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, db_default=Now(), editable=False)

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            self.version += 1
        self.updated_at = timezone.now()
        if "update_fields" in kwargs and kwargs["update_fields"] is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "version", "updated_at"}
        super().save(*args, **kwargs)


class QuietHours(SendingRule):
    """A window in the contact's local time when messages are deferred to its end, not dropped.

    Rules for a country and for a region of it are rows of their own; every rule that matches a
    contact applies (compliance.gate).
    """

    country = models.CharField(max_length=2, blank=True, validators=[validate_country],
                               help_text="ISO 3166-1 alpha-2, e.g. US. Blank: every country.")
    region = models.CharField(max_length=6, blank=True, default="", db_default="", validators=[validate_region],
                              help_text="ISO 3166-2, e.g. US-FL. Blank: the whole country.")
    start = models.TimeField(help_text="Local time the quiet window starts, e.g. 21:00.")
    end = models.TimeField(help_text="Local time it ends, e.g. 08:00 (may cross midnight).")

    class Meta:
        verbose_name_plural = "quiet hours"

    def __str__(self):
        return f"{self.name}: {self.start:%H:%M}-{self.end:%H:%M}"

    def clean(self):
        self.country = (self.country or "").upper()
        self.region = (self.region or "").upper()
        if self.region and self.country and not self.region.startswith(f"{self.country}-"):
            raise ValidationError({"region": f"Region {self.region} is not in the country {self.country}."})
        if self.start is not None and self.start == self.end:
            raise ValidationError({"end": "The window ends when it starts: it would never be quiet."})


class KeywordKind(models.TextChoices):
    """What a keyword texted to Omni does (compliance/keywords.py reads them)."""
    STOP = "stop", "Opt out of this channel"
    STOP_ALL = "stop_all", "Opt out of every channel"
    START = "start", "Opt back in"
    HELP = "help", "Ask for help"


# Words that work whatever the rows say (carriers require them; Twilio will not remove them
# either): deleting a list by mistake must never stop an opt-out from being honoured.
REQUIRED_KEYWORDS = {KeywordKind.STOP: ("STOP",), KeywordKind.START: ("START",), KeywordKind.HELP: ("HELP",)}


def split_words(text: str) -> list[str]:
    """The entries of a keyword list as staff type it: one per line or separated by commas."""
    return [entry.strip() for entry in re.split(r"[,\n]", text or "") if entry.strip()]


class KeywordListQuerySet(models.QuerySet):
    def parser_lists(self) -> dict[str, list[str]]:
        """Every language's words of each kind together, as compliance.keywords.read_keyword
        takes them: a STOP is honoured in any language the program knows, whoever sends it."""
        lists = {kind: list(REQUIRED_KEYWORDS.get(kind, ())) for kind in KeywordKind.values}
        for kind, words in self.values_list("kind", "words"):
            lists[kind] += split_words(words)
        return lists

    def reply_for(self, kind: str, languages: list[str]) -> str:
        """The reply of `kind` in the first of `languages` that has one ("" if none does)."""
        replies = dict(self.filter(kind=kind, language__in=languages).values_list("language", "reply"))
        return next((replies[language] for language in languages if replies.get(language, "").strip()), "")

    def languages_with(self, kind: str, word: str) -> list[str]:
        """The languages whose `kind` list holds `word` (as compliance.keywords reads words)."""
        wanted = " ".join(words_of(word))
        return sorted(language for language, words in self.filter(kind=kind).values_list("language", "words")
                      if wanted in {" ".join(words_of(entry)) for entry in split_words(words)})


class KeywordList(models.Model):
    """The words of one kind of keyword in one language, and what Omni replies to them.

    Staff edit these rows; English defaults come with the migration. The START reply is also
    the confirmation sent after an SMS opt-in from a form, the API or an agent, so it names the
    program, how often it messages, HELP and STOP.
    """

    language = models.CharField(max_length=16, help_text="Language code, e.g. en, es, fr.")
    kind = models.CharField(max_length=10, choices=KeywordKind.choices)
    words = models.TextField(help_text="One per line or separated by commas; any case. A phrase of several words "
                                       "matches only as a whole message.")
    reply = models.TextField(blank=True, help_text="Sent once in answer (empty: no reply). Where Twilio answers "
                                                  "keywords itself (TWILIO_OPT_OUT_HANDLING), Omni does not.")
    updated_at = models.DateTimeField(auto_now=True)

    objects = KeywordListQuerySet.as_manager()

    class Meta:
        ordering = ["language", "kind"]
        constraints = [models.UniqueConstraint(fields=["language", "kind"], name="keywordlist_unique_language_kind")]

    def __str__(self):
        return f"{self.get_kind_display()} [{self.language}]: {', '.join(split_words(self.words))}"


class CapAction(models.TextChoices):
    DROP = "drop", "Drop the message"
    DEFER = "defer", "Defer until the window allows it"


def validate_lifecycle_stages(value):
    if not isinstance(value, list):
        raise ValidationError(f"Lifecycle stages are a list of: {', '.join(lifecycle_stage_keys())}.")
    keys = lifecycle_stage_keys()
    unknown = [stage for stage in value if stage not in keys]
    if unknown:
        raise ValidationError(f"Unknown lifecycle stage(s) {', '.join(map(str, unknown))}; "
                              f"the stages are: {', '.join(keys)}.")


class FrequencyCap(SendingRule):
    """At most `limit` messages per rolling `window_seconds`, by channel and/or purpose, counted
    from the send ledger. Over the cap a message is dropped, or deferred until the oldest send
    counted leaves the window."""

    limit = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    window_seconds = models.PositiveIntegerField(default=86400, validators=[MinValueValidator(1)])
    action = models.CharField(max_length=10, choices=CapAction.choices, default=CapAction.DROP)
    lifecycle_stages = models.JSONField(default=list, db_default=[], blank=True, validators=[validate_lifecycle_stages],
                                        help_text="Contacts at these lifecycle stages only. Blank: every stage.")

    def __str__(self):
        return f"{self.name}: {self.limit} per {self.window_seconds}s"



def frequency_caps_using_stage(key: str, **kwargs) -> str | None:
    """How many frequency caps name the lifecycle stage `key` (contacts asks before deleting it)."""
    # Few rows, and JSON containment has no lookup on SQLite: counted here.
    count = sum(1 for stages in FrequencyCap.objects.values_list("lifecycle_stages", flat=True)
                if key in (stages or ()))
    if count:
        return f"{count} frequency cap{'s' if count != 1 else ''}"
    return None

class SendLedger(models.Model):
    """One row per message queued on a plan step (not per push device): what frequency caps count.

    Written by channels' routing in bulk with each batch it queues; plain ids, because the
    message lives in an app above this one, and history outlives what it points at.
    """

    contact_id = models.BigIntegerField()
    channel = models.CharField(max_length=10, choices=Channel.choices)
    purpose = models.CharField(max_length=15, choices=Purpose.choices)
    message_id = models.BigIntegerField()
    plan_step = models.PositiveSmallIntegerField(default=0)
    at = models.DateTimeField()

    class Meta:
        verbose_name = "send ledger entry"
        verbose_name_plural = "send ledger"
        ordering = ["-at"]
        indexes = [models.Index(fields=["contact_id", "at"], name="sendledger_contact_at")]

    def __str__(self):
        return f"message {self.message_id} step {self.plan_step} on {self.channel} at {self.at:%Y-%m-%d %H:%M}"


class SendingPause(models.Model):
    """Kill switch: an operator pauses a channel or one provider; the gate defers what is on it."""

    channel = models.CharField(max_length=10, choices=Channel.choices, blank=True, help_text="Blank: every channel.")
    provider = models.CharField(max_length=50, blank=True, help_text="Blank: every provider of the channel.")
    reason = models.CharField(max_length=500)
    paused_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    paused_at = models.DateTimeField(default=timezone.now)
    resumed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"Pause {self.channel or 'all'}/{self.provider or 'all'}: {self.reason}"


# json.dumps(value, sort_keys=True, separators=(",", ":"), default=str), made once: json.dumps
# makes a new encoder for every call given options, a tenth of the time of encoding a decision.
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


@functools.lru_cache(maxsize=256)
def _utc_isoformat(moment: datetime) -> str:
    # A batch's decisions share their time: converted once.
    return moment.astimezone(dt_timezone.utc).isoformat()


class DecisionOutcome(models.TextChoices):
    ALLOW = "allow", "Allowed"
    DEFER = "defer", "Deferred"
    SUPPRESS = "suppress", "Suppressed"


class Decision(models.Model):
    """One verdict of the pre-send gate, with every input it used.

    A message has one per channel the gate ruled on (a message that falls back has one per
    channel tried). Rows keep plain ids (a message lives in an app above this one) and are
    sealed into the audit chain by digest: each has one audit entry "gate.<outcome>" whose data
    holds the digest of the row's content, so verify_audit notices a decision altered later.
    Policy replay and the compliance export read these rows.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    decided_at = models.DateTimeField(default=timezone.now, db_index=True)
    message_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    delivery_id = models.BigIntegerField(null=True, blank=True, help_text="Set for a re-check at send time.")
    contact_id = models.BigIntegerField(null=True, blank=True)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    plan_step = models.PositiveSmallIntegerField(default=0)
    purpose = models.CharField(max_length=15, choices=Purpose.choices)
    provider = models.CharField(max_length=50, blank=True)
    outcome = models.CharField(max_length=10, choices=DecisionOutcome.choices)
    reason = models.CharField(max_length=100)
    defer_until = models.DateTimeField(null=True, blank=True)
    consent_status = models.CharField(max_length=10, choices=ConsentStatus.choices)
    # The ConsentChange the verdict relied on: under which permission it was sent.
    consent_change_id = models.BigIntegerField(null=True, blank=True)
    suppressions = models.JSONField(default=list, blank=True, help_text="Suppression reasons in force.")
    # Everything else the rules read: pauses, expiry, later quiet hours and caps.
    inputs = models.JSONField(default=dict, blank=True)
    digest = models.CharField(max_length=64, editable=False)

    class Meta:
        ordering = ["-decided_at"]
        indexes = [models.Index(fields=["contact_id", "decided_at"], name="decision_contact_time")]

    def __str__(self):
        return f"{self.outcome} {self.channel} for message {self.message_id}: {self.reason}"

    DIGEST_FIELDS = ("id", "decided_at", "message_id", "delivery_id", "contact_id", "channel", "plan_step", "purpose",
                     "provider", "outcome", "reason", "defer_until", "consent_status", "consent_change_id",
                     "suppressions", "inputs")

    # The JSON columns, last among DIGEST_FIELDS: a writer that encodes them for the row anyway
    # hands their canonical text to digest_of_encoded() rather than encoding them twice.
    JSON_DIGEST_FIELDS = ("suppressions", "inputs")

    @staticmethod
    def canonical_json(value) -> str:
        """A JSON value as the digest encodes it (sorted keys, no spaces); also valid column text."""
        return _CANONICAL_ENCODER.encode(value)

    @classmethod
    def digest_of(cls, values: dict) -> str:
        """SHA-256 of the decision's content as canonical JSON (values by DIGEST_FIELDS name)."""
        return cls.digest_of_encoded(values, *(cls.canonical_json(values[name]) for name in cls.JSON_DIGEST_FIELDS))

    @classmethod
    def digest_of_encoded(cls, values: dict, suppressions: str, inputs: str) -> str:
        """digest_of() for values whose JSON fields are given as their canonical_json() text: the
        same digest, since a JSON list is its items' encodings joined by commas."""
        head = []
        for name in cls.DIGEST_FIELDS[:-len(cls.JSON_DIGEST_FIELDS)]:
            value = values[name]
            if isinstance(value, datetime):
                value = _utc_isoformat(value)
            elif isinstance(value, uuid.UUID):
                value = str(value)
            head.append(value)
        content = f"{cls.canonical_json(head)[:-1]},{suppressions},{inputs}]"
        return hashlib.sha256(content.encode()).hexdigest()

    def compute_digest(self) -> str:
        return self.digest_of({name: getattr(self, name) for name in self.DIGEST_FIELDS})


class ReplayStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ReplayRun(models.Model):
    """One policy replay (compliance/replay.py): the gate's recent decisions re-decided with a
    proposed change to a quiet-hours rule or a frequency cap. It writes and sends nothing else."""

    status = models.CharField(max_length=10, choices=ReplayStatus.choices, default=ReplayStatus.QUEUED)
    # What is proposed: the rule's model label, its id (none for an added rule), and its fields.
    proposal = models.JSONField(default=dict, blank=True)
    since = models.DateTimeField(null=True, blank=True)
    until = models.DateTimeField(null=True, blank=True)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Replay {self.pk} ({self.status})"
