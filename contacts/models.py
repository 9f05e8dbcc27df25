"""The unified profile: one contact, its addresses and devices, and its event stream."""
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.db.models import Q
from django.utils.timezone import now

from omni.choices import Channel

from . import hooks
from .phones import normalize_phone, validate_region


def validate_timezone(value: str):
    if value and value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known IANA timezone.")


def validate_e164(value: str):
    if value:
        normalize_phone(value)  # raises ValidationError with the reason


# A new contact's stage: one of the five contacts 0012 seeds (marketers add their own).
DEFAULT_LIFECYCLE_STAGE = "subscriber"


class LifecycleStageInUse(ValidationError):
    """A stage contacts or rules still use cannot be deleted; the message says how many use it."""


class LifecycleStageQuerySet(models.QuerySet):
    def delete(self):
        # A bulk delete is refused like a single one (LifecycleStage.delete).
        for stage in self:
            stage.refuse_if_used()
        return super().delete()


class LifecycleStage(models.Model):
    """A step of the customer lifecycle; Contact.lifecycle_stage holds its key. A stage in use
    (by contacts, or by what the apps above say through hooks.lifecycle_stage_used) is never deleted."""

    key = models.SlugField(max_length=20, unique=True, help_text="What contacts store and the API sends, e.g. trial.")
    name = models.CharField(max_length=100)
    order = models.PositiveIntegerField(default=0, help_text="Where the stage comes in the lifecycle; lower first.")

    objects = LifecycleStageQuerySet.as_manager()

    class Meta:
        ordering = ["order", "key"]

    def __str__(self):
        return self.name

    def uses(self) -> list[str]:
        """What still uses this stage, e.g. ["3 contacts", "1 frequency cap"]; empty when nothing does."""
        uses = []
        contacts = Contact.objects.filter(lifecycle_stage=self.key).count()
        if contacts:
            uses.append(f"{contacts} contact{'s' if contacts != 1 else ''}")
        uses.extend(hooks.lifecycle_stage_uses(self.key))
        return uses

    def refuse_if_used(self) -> None:
        """LifecycleStageInUse, saying what uses the stage and how many, unless nothing does."""
        uses = self.uses()
        if uses:
            raise LifecycleStageInUse(
                f"The lifecycle stage {self.key!r} is used by {' and '.join(uses)}; move them to another stage first.",
                code="stage_in_use",
            )

    def delete(self, *args, **kwargs):
        self.refuse_if_used()
        return super().delete(*args, **kwargs)


def lifecycle_stage_keys() -> list[str]:
    """The keys a contact's lifecycle_stage may hold, in their order."""
    return list(LifecycleStage.objects.order_by("order", "key").values_list("key", flat=True))


class DataType(models.TextChoices):
    """The types a contact attribute or an event property is declared with."""

    TEXT = "text", "Text"
    NUMBER = "number", "Number"
    BOOLEAN = "boolean", "Yes or no"
    DATE = "date", "Date"
    DATETIME = "datetime", "Date and time"
    LIST = "list", "List"


class AttributeDefinition(models.Model):
    """The declared type of one key of Contact.attributes. Undeclared keys stay untyped."""

    name = models.CharField(max_length=100, unique=True)
    data_type = models.CharField("type", max_length=10, choices=DataType.choices)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} ({self.get_data_type_display()})"


class EventPropertyDefinition(models.Model):
    """The declared type of one property of one event's ContactEvent.properties."""

    event = models.CharField(max_length=100, help_text="The event name, e.g. order.placed.")
    name = models.CharField("property", max_length=100)
    data_type = models.CharField("type", max_length=10, choices=DataType.choices)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["event", "name"]
        constraints = [models.UniqueConstraint(fields=["event", "name"], name="event_property_unique")]

    def __str__(self):
        return f"{self.event}.{self.name} ({self.get_data_type_display()})"


class ContactQuerySet(models.QuerySet):
    def reachable(self):
        return self.filter(erased_at__isnull=True)


class Contact(models.Model):
    external_id = models.CharField(
        max_length=255, unique=True, null=True, blank=True, help_text="The id your systems know this person by."
    )
    email = models.EmailField(max_length=254, blank=True, db_index=True, validators=[validate_email])
    phone = models.CharField(
        max_length=20, blank=True, db_index=True, validators=[validate_e164], help_text="E.164, e.g. +14155550100"
    )
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    locale = models.CharField(max_length=16, default="en", help_text="BCP 47 language tag, e.g. en, fr-CA.")
    timezone = models.CharField(max_length=64, blank=True, validators=[validate_timezone])
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2, e.g. US.")
    # Where rules differ within a country (quiet hours by state): compliance.QuietHours.region.
    region = models.CharField(max_length=6, blank=True, default="", db_default="", validators=[validate_region],
                              help_text="ISO 3166-2, e.g. US-FL.")
    lifecycle_stage = models.CharField(
        max_length=20, default=DEFAULT_LIFECYCLE_STAGE, db_index=True,
        help_text="The key of a lifecycle stage (contacts.LifecycleStage).",
    )
    attributes = models.JSONField(default=dict, blank=True)
    # The channel the contact asked for on the preference page; routing will honour it.
    preferred_channel = models.CharField(max_length=10, choices=Channel.choices, blank=True, default="",
                                         db_default="")
    # Made for an address that wrote in and matched no contact (channels' inbound messages); no
    # consent is assumed for it. Merging it into a known contact comes later.
    unknown_sender = models.BooleanField(default=False, db_default=False, db_index=True)
    # Human override: a paused contact receives nothing automated until resumed.
    messaging_paused = models.BooleanField(default=False)
    # A member of staff's own address, used to try journeys and campaigns: the only kind of contact
    # a journey in testing enrolls; its messages are marked as tests (Message.is_test). Set in the
    # admin by staff with contacts.mark_test_contact, never through the API or an import.
    is_test = models.BooleanField("test contact", default=False, db_default=False, help_text=(
        "A test contact (a member of staff's own address): journeys being tested enrol only test contacts, and "
        "their messages are marked as tests."))
    created_at = models.DateTimeField(default=now, editable=False, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Set when personal data was erased on request; the row stays for referential history.
    erased_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ContactQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        permissions = [("mark_test_contact", "Can mark a contact as a test contact"),
                       ("erase_contact", "Can erase a contact's personal data")]

    def __str__(self):
        name = f"{self.first_name} {self.last_name}".strip()
        return name or self.email or self.phone or self.external_id or f"Contact {self.pk}"

    def clean(self):
        # The stage and the declared attribute types are checked by contacts.data_types
        # (contact_problems), which reads the definition models: the form and the import ask it.
        errors = {}
        if self.email:
            self.email = self.email.strip().lower()
        if self.phone:
            self.phone = normalize_phone(self.phone)
        if self.region:
            self.region = self.region.strip().upper()
            if self.country and not self.region.startswith(f"{self.country.upper()}-"):
                errors["region"] = f"Region {self.region} is not in the contact's country {self.country}."
        if errors:
            raise ValidationError(errors)

    def address_for(self, channel: str) -> str:
        """Where a message on this channel goes, or "" when the contact cannot receive it."""
        if channel == Channel.EMAIL:
            return self.email
        if channel in (Channel.SMS, Channel.WHATSAPP, Channel.RCS):
            return self.phone
        return ""


class DevicePlatform(models.TextChoices):
    IOS = "ios", "iOS (APNs)"
    ANDROID = "android", "Android (FCM)"
    WEB = "web", "Web push"


class Device(models.Model):
    """A mobile or web push target for a contact."""

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="devices")
    platform = models.CharField(max_length=10, choices=DevicePlatform.choices)
    token = models.CharField(max_length=512)
    # The provider's handle for the token, e.g. an SNS platform endpoint ARN.
    provider_endpoint = models.CharField(max_length=512, blank=True)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    app_version = models.CharField(max_length=50, blank=True)
    created_at = models.DateTimeField(default=now, editable=False)
    last_seen_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["platform", "token"], name="device_unique_token")]

    def __str__(self):
        return f"{self.get_platform_display()} device of {self.contact}"


class ContactEvent(models.Model):
    """Something a contact did or that happened to them. Stored once, then acted on.

    The idempotency key is unique per source (all API keys share the source "api"), so a
    retried POST or a replayed webhook stores nothing twice. The orchestration tick claims events whose processed_at is empty.
    """

    # No index of their own: event_contact_name leads with the contact and then the name, and
    # every index is written by each insert on the busiest path (the event API).
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="events", db_index=False)
    name = models.CharField(max_length=100)
    properties = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField(default=now)
    received_at = models.DateTimeField(default=now, editable=False)
    # The idempotency scope: "api" for every API key (a rotated key's retry is still the same
    # event), or a webhook, the admin...
    source = models.CharField(max_length=100, default="api", help_text="Where it came from: the API, a webhook, the admin.")
    sent_by = models.CharField(max_length=100, blank=True, default="", help_text="Which API key sent it.")
    idempotency_key = models.CharField(max_length=255)
    # SHA-256 of the canonical request, so a key reused for a different event is told apart
    # from a retry. Empty for events stored before it was kept.
    request_hash = models.CharField(max_length=64, blank=True, default="")
    processed_at = models.DateTimeField(null=True, blank=True)
    # Set when the tick could not process the row (omni/lib/quarantine.py): not claimed again
    # until someone retries it in the admin.
    quarantined_at = models.DateTimeField(null=True, blank=True)
    quarantine_reason = models.TextField(blank=True, default="", db_default="")

    class Meta:
        ordering = ["-occurred_at"]
        constraints = [
            models.UniqueConstraint(fields=["source", "idempotency_key"], name="event_unique_per_source"),
        ]
        indexes = [
            models.Index(fields=["received_at"], condition=Q(processed_at__isnull=True), name="event_unprocessed"),
            models.Index(fields=["contact", "name", "occurred_at"], name="event_contact_name"),
            # The administrators' home counts quarantined events (omni/web/home.py).
            models.Index(fields=["quarantined_at"], condition=Q(quarantined_at__isnull=False), name="event_quarantined"),
            # The contact's timeline: events by when they happened.
            models.Index(fields=["contact", "occurred_at", "id"], name="event_contact_time"),
            # Segments' event filters ("did X in the last 30 days"): the events of one name in a
            # window, with their contacts, read from the index alone (contacts/segments.py).
            models.Index(fields=["name", "occurred_at", "contact"], name="event_name_time"),
        ]

    def __str__(self):
        return f"{self.name} for {self.contact}"


class Segment(models.Model):
    """A saved audience. `definition` holds filters on attributes, lifecycle stage, consent,
    events and engagement; contacts.segments evaluates it."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    definition = models.JSONField(default=dict, blank=True)
    # How often segment triggers compare the members with SegmentMembership.
    refresh_seconds = models.PositiveIntegerField(default=60, db_default=60)
    refreshed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When a refresh first filled SegmentMembership (a refresh that failed fills nothing): before
    # that, nobody in the segment has entered it yet.
    members_filled_at = models.DateTimeField("members first filled", null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class SegmentMembership(models.Model):
    """A contact in a segment as of its last refresh: what segment triggers diff against."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="memberships")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+", db_index=False)
    entered_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["segment", "contact"], name="segment_membership_unique")]
        indexes = [models.Index(fields=["contact"], name="segment_membership_contact")]


class ImportStatus(models.TextChoices):
    VALIDATING = "validating", "Validating"
    VALIDATED = "validated", "Validated"
    IMPORTING = "importing", "Importing"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class ContactImport(models.Model):
    """One contact file uploaded through the admin: validated row by row, then imported (the valid
    rows, or none when any row is bad, as the uploader chose), in a Celery task for large files."""

    VALID_ONLY = "valid_only"
    ALL_OR_NOTHING = "all_or_nothing"
    MODES = [(VALID_ONLY, "Import the valid rows"), (ALL_OR_NOTHING, "Import nothing if any row is bad")]

    file_name = models.CharField(max_length=255)
    data = models.TextField(help_text="The uploaded CSV, kept until the import is done.")
    mode = models.CharField(max_length=20, choices=MODES, default=VALID_ONLY)
    status = models.CharField(max_length=12, choices=ImportStatus.choices, default=ImportStatus.VALIDATING)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    valid_rows = models.PositiveIntegerField(default=0)
    imported_rows = models.PositiveIntegerField(default=0)
    # [{"row": 3, "column": "email", "message": "...", then whom the row is about: "external_id"
    # (or "email" for a row keyed by email) and "contact" when it matched one}], in row order.
    # Erasure finds the rows about a contact by these (contacts.import_erasure).
    errors = models.JSONField(default=list, blank=True)
    # The spreadsheet row numbers (never their values) erasure emptied in the kept file: a check
    # or an import that read the file before refuses them "erased on request" (it re-reads them
    # per chunk under this row's lock, which erasure holds while it records them).
    erased_rows = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.file_name} ({self.get_status_display()})"


class ErasureRequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"


class ErasureOutcome(models.TextChoices):
    ERASED = "erased", "Erased by this request"
    ERASED_BY_ANOTHER_REQUEST = "erased_by_another_request", "Erased by another request meanwhile"


class ErasureRequest(models.Model):
    """An erasure asked for while an import naming the contact was running: kept, and carried out
    once the import lets it (contacts.erasure_requests), so that nobody has to ask again."""

    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="erasure_requests")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    # Who asked, as the audit log names them: the user's name, or the API key (apikey:<prefix>).
    actor_label = models.CharField("asked by", max_length=100, blank=True)
    requested_at = models.DateTimeField(default=now)
    # The reason may name the person (a ticket's subject): kept here only until the erasure runs,
    # then beside its audit entry as personal data, as every erasure's reason is.
    why = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=ErasureRequestStatus.choices,
                              default=ErasureRequestStatus.PENDING)
    outcome = models.CharField(max_length=30, choices=ErasureOutcome.choices, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    last_tried_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        constraints = [models.UniqueConstraint(fields=["contact"], condition=Q(status="pending"),
                                               name="erasure_request_one_pending_per_contact")]
        indexes = [models.Index(fields=["last_tried_at", "requested_at"], condition=Q(status="pending"),
                                name="erasure_request_pending")]

    def __str__(self):
        return f"Erasure of contact {self.contact_id} ({self.get_status_display()})"
