"""The canonical message, its deliveries on providers, and what providers tell us back."""
from datetime import datetime, time
from datetime import timezone as dt_timezone

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from contacts.models import Contact, Device, validate_timezone
from omni.choices import Channel, Exemption, Purpose, Urgency
from omni.lib.text import hash_address
from omni.models import ApiKey
from templates.models import TemplateVersion

from .business_hours import Schedule


class MessageSource(models.TextChoices):
    JOURNEY = "journey", "Journey step"
    CAMPAIGN = "campaign", "Campaign"
    API = "api", "API"
    AGENT = "agent", "Support agent"
    SYSTEM = "system", "System"


class MessageStatus(models.TextChoices):
    PENDING = "pending", "Pending decision"
    DEFERRED = "deferred", "Deferred"
    QUEUED = "queued", "Queued for delivery"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    ENGAGED = "engaged", "Opened, clicked or replied"
    SUPPRESSED = "suppressed", "Suppressed"
    FAILED = "failed", "Failed on every channel"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"


class Message(models.Model):
    """One thing Omni wants to tell one contact, whatever channel ends up carrying it.

    `channel_plan` is the ordered list of channels to try, each with the condition that moves
    to the next: [{"channel": "email", "fallback_after_seconds": 3600}, {"channel": "sms"}].
    `plan_step` indexes the plan entry in use.

    What it says comes from a published template version, or from `content` (an agent's reply,
    a keyword confirmation), never both. Where it came from is kept where that points down: a
    journey step visit or a campaign recipient row points at the message; the message itself
    keeps only the conversation and agent of a reply and the API key of an API send.
    """

    # Indexes here are few on purpose: the tick inserts thousands of messages a second and each
    # index is a write per row. The contact is covered by message_contact_intent; the rarely
    # set references by partial indexes (Meta); status and keys without PostgreSQL's extra
    # LIKE-only index that db_index and unique=True add to a CharField.
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="messages", db_index=False)
    purpose = models.CharField(max_length=15, choices=Purpose.choices)
    urgency = models.CharField(max_length=10, choices=Urgency.choices, default=Urgency.NORMAL)
    priority = models.IntegerField(default=0, help_text="Breaks ties between messages of the same purpose.")
    # Two messages with the same intent key are the same thing said twice (arbitration).
    intent_key = models.CharField(max_length=200, blank=True)
    template_version = models.ForeignKey(
        TemplateVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="messages"
    )
    # Literal content in TemplateVersion.variants' shape ([{"channel", "locale", "subject",
    # "text_body", ...}]): sent as written, not rendered.
    content = models.JSONField(null=True, blank=True)
    variables = models.JSONField(default=dict, blank=True, help_text="Values the template is rendered with.")
    channel_plan = models.JSONField(default=list)
    plan_step = models.PositiveSmallIntegerField(default=0)
    # The contact's preferred channel when create_messages put it first in channel_plan (blank
    # when the preference did not apply: none, not in the plan, or high or critical urgency).
    preferred_channel_first = models.CharField(max_length=10, choices=Channel.choices, blank=True, default="")
    source = models.CharField(max_length=10, choices=MessageSource.choices)
    conversation = models.ForeignKey(
        "Conversation", null=True, blank=True, on_delete=models.PROTECT, related_name="messages", db_index=False
    )
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.PROTECT, related_name="messages",
                                db_index=False)
    # A failed reply sent again is a new message pointing at the one that failed (FAILED stays final).
    resent_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="resends",
                                    db_index=False)
    # A replayed trigger (retried task, re-claimed step) finds the existing message instead of
    # making a second one.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    status = models.CharField(max_length=12, choices=MessageStatus.choices, default=MessageStatus.PENDING)
    status_reason = models.CharField(max_length=100, blank=True)
    defer_until = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Not sent after this time.")
    # Gate rules this message may pass (compliance.gate.EXEMPTIONS): set by Omni's own code only.
    # Copied from the contact when the message is made (routing.create_messages): a test send.
    is_test = models.BooleanField("test", default=False, db_default=False)
    exemption = models.CharField(max_length=30, choices=Exemption.choices, blank=True, default="", db_default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    # When the message last went into the queue (a fallback's next channel, or a delivery
    # cancelled at send time and routed again, counts anew): written by channels/state.py with
    # the status. Arbitration's windows count from it, not from created_at: a message made days
    # ago and deferred by quiet hours is said when it is queued.
    said_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set when the tick could not process the row (omni/lib/quarantine.py): not claimed again
    # until someone retries it in the admin.
    quarantined_at = models.DateTimeField(null=True, blank=True)
    quarantine_reason = models.TextField(blank=True, default="", db_default="")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["defer_until"], condition=Q(status="deferred"), name="message_deferred_due"),
            # Arbitration reads the messages said to a contact within its windows (channels/arbitration.py).
            models.Index(fields=["contact", "intent_key", "said_at"], name="message_contact_intent"),
            # The contact's timeline pages through their messages by time (omni/web/timeline.py).
            models.Index(fields=["contact", "created_at", "id"], name="message_contact_time"),
            models.Index(fields=["status"], name="message_status"),
            models.Index(fields=["conversation"], condition=Q(conversation__isnull=False), name="message_conversation"),
            models.Index(fields=["agent"], condition=Q(agent__isnull=False), name="message_agent"),
            models.Index(fields=["api_key"], condition=Q(api_key__isnull=False), name="message_api_key"),
            models.Index(fields=["resent_from"], condition=Q(resent_from__isnull=False), name="message_resent_from"),
            # The administrators' home counts quarantined rows (omni/web/home.py); partial, so
            # rows that are not quarantined cost nothing.
            models.Index(fields=["quarantined_at"], condition=Q(quarantined_at__isnull=False), name="message_quarantined"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["idempotency_key"], name="message_unique_idempotency_key"),
            models.CheckConstraint(
                condition=Q(template_version__isnull=False, content__isnull=True)
                | Q(template_version__isnull=True, content__isnull=False),
                name="message_template_or_own_content",
            ),
        ]

    def __str__(self):
        return f"Message {self.pk} ({self.purpose}) to {self.contact}"

    @property
    def current_channel(self) -> str | None:
        if 0 <= self.plan_step < len(self.channel_plan):
            return self.channel_plan[self.plan_step]["channel"]
        return None

    @property
    def is_templated(self) -> bool:
        return self.content is None

    def variant_for(self, channel: str, locale: str) -> dict | None:
        """What to say on `channel` to someone reading `locale`, or None if nothing is written for it."""
        if self.template_version_id is not None:
            return self.template_version.variant_for(channel, locale)
        return next((v for v in self.content if v.get("channel") == channel), None)

    @property
    def allows_fallback(self) -> bool:
        return self.template_version.allow_fallback if self.template_version_id is not None else True


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    # The provider call may have happened but its result was not recorded (worker died):
    # reconciled from the provider's id or a webhook, never blindly sent again.
    UNCERTAIN = "uncertain", "Uncertain (reconciling)"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    OPENED = "opened", "Opened"
    CLICKED = "clicked", "Clicked"
    READ = "read", "Read"
    REPLIED = "replied", "Replied"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained"
    UNDELIVERED = "undelivered", "Undelivered"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


# Which status may follow which: channels/state.py.
ENGAGED_DELIVERY_STATUSES = frozenset(
    {DeliveryStatus.OPENED, DeliveryStatus.CLICKED, DeliveryStatus.READ, DeliveryStatus.REPLIED}
)
FAILED_DELIVERY_STATUSES = frozenset(
    {DeliveryStatus.BOUNCED, DeliveryStatus.UNDELIVERED, DeliveryStatus.FAILED, DeliveryStatus.COMPLAINED}
)


class Delivery(models.Model):
    """One attempt to carry a message on one channel through one provider (for push, to one device).

    `plan_step` is the entry of the message's channel plan it carries. A push message to a
    contact with three devices has three deliveries at the same step; the message falls back to
    the next channel only when none of them can still succeed.
    """

    message = models.ForeignKey(Message, on_delete=models.PROTECT, related_name="deliveries")
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="deliveries")
    plan_step = models.PositiveSmallIntegerField(default=0)
    device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.PROTECT, related_name="deliveries",
                               db_index=False)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    provider = models.CharField(max_length=50)
    to_address = models.CharField(max_length=512)
    # The rendered content exactly as handed to the provider.
    subject = models.CharField(max_length=500, blank=True)
    text_body = models.TextField(blank=True)
    html_body = models.TextField(blank=True)
    content = models.JSONField(default=dict, blank=True, help_text="Channel extras: push title, template ids, headers.")
    # Indexed in Meta, without the LIKE-only twins db_index adds on PostgreSQL.
    status = models.CharField(max_length=12, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED)
    provider_message_id = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    error_permanent = models.BooleanField(default=False)
    segments = models.PositiveSmallIntegerField(null=True, blank=True, help_text="SMS segments billed.")
    cost = models.DecimalField(max_digits=10, decimal_places=5, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    queued_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    engaged_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    # When the plan's next channel takes over if this delivery has not succeeded by then.
    fallback_due_at = models.DateTimeField(null=True, blank=True)
    # When its send task was last handed to the broker; empty while never published. The tick
    # republishes queued deliveries whose publish failed or whose task was lost.
    published_at = models.DateTimeField(null=True, blank=True)
    # After a transient error: when the next attempt is due (channels/delivery.py's backoff
    # schedule). The tick publishes it then, not before; empty when nothing is waiting.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # When an uncertain delivery that nothing could settle was listed for a person to settle.
    unresolved_at = models.DateTimeField(null=True, blank=True)
    # Set when the tick could not process the row (omni/lib/quarantine.py): not claimed again
    # until someone retries it in the admin.
    quarantined_at = models.DateTimeField(null=True, blank=True)
    quarantine_reason = models.TextField(blank=True, default="", db_default="")

    class Meta:
        ordering = ["-queued_at"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_message_id"],
                condition=~Q(provider_message_id=""),
                name="delivery_unique_provider_id",
            ),
        ]
        indexes = [
            models.Index(fields=["fallback_due_at"], condition=Q(fallback_due_at__isnull=False), name="delivery_fallback_due"),
            models.Index(fields=["status"], name="delivery_status"),
            models.Index(fields=["provider_message_id"], name="delivery_provider_message_id"),
            models.Index(fields=["device"], condition=Q(device__isnull=False), name="delivery_device"),
            # An inbound reply finds the latest delivery sent to its sender (record_inbound_message).
            # Partial: a queued delivery is inserted without an entry, which keeps the tick's inserts cheap.
            models.Index(fields=["to_address", "channel", "-sent_at", "-id"], condition=Q(sent_at__isnull=False),
                         name="delivery_to_address_sent"),
            # The administrators' home: quarantined rows, and failures of the last hour per provider.
            models.Index(fields=["quarantined_at"], condition=Q(quarantined_at__isnull=False), name="delivery_quarantined"),
            models.Index(fields=["failed_at", "provider"], condition=Q(failed_at__isnull=False), name="delivery_failed_at"),
            # Retention (channels/retention.py) blanks bodies oldest first: only deliveries still
            # holding one are in it (a queued delivery has none until the worker renders it).
            models.Index(fields=["queued_at"], condition=~Q(subject="", text_body="", html_body=""),
                         name="delivery_body_kept"),
        ]

    def __str__(self):
        return f"{self.channel} to {self.to_address} via {self.provider} ({self.status})"


class EventType(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    OPENED = "opened", "Opened"
    CLICKED = "clicked", "Clicked"
    READ = "read", "Read"
    REPLIED = "replied", "Replied"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained"
    FAILED = "failed", "Failed"
    UNDELIVERED = "undelivered", "Undelivered"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    DEFERRED = "deferred", "Deferred by provider"
    REJECTED = "rejected", "Rejected by provider"
    # Stored, never dropped, when we cannot classify what the provider said.
    UNKNOWN = "unknown", "Unknown"


# The delivery status each event type moves a delivery to, if that is further along.
# Queued, deferred, unsubscribed and unknown events are stored but move nothing.
EVENT_DELIVERY_STATUS = {
    EventType.SENT: DeliveryStatus.SENT,
    EventType.DELIVERED: DeliveryStatus.DELIVERED,
    EventType.OPENED: DeliveryStatus.OPENED,
    EventType.CLICKED: DeliveryStatus.CLICKED,
    EventType.READ: DeliveryStatus.READ,
    EventType.REPLIED: DeliveryStatus.REPLIED,
    EventType.BOUNCED: DeliveryStatus.BOUNCED,
    EventType.COMPLAINED: DeliveryStatus.COMPLAINED,
    EventType.FAILED: DeliveryStatus.FAILED,
    EventType.UNDELIVERED: DeliveryStatus.UNDELIVERED,
    EventType.REJECTED: DeliveryStatus.FAILED,
}


class DeliveryEvent(models.Model):
    """A provider's report about a delivery, normalized, with the raw payload kept.

    `delivery` is empty when the provider's message id matches nothing yet (kept for
    reconciliation). The unique event id makes a repeated webhook count once.
    """

    delivery = models.ForeignKey(Delivery, null=True, blank=True, on_delete=models.PROTECT, related_name="events")
    provider = models.CharField(max_length=50)
    provider_event_id = models.CharField(max_length=255)
    provider_message_id = models.CharField(max_length=255, blank=True, db_index=True)
    event_type = models.CharField(max_length=12, choices=EventType.choices)
    # Hard or soft bounce, error code, carrier reason...
    detail = models.CharField(max_length=500, blank=True)
    permanent = models.BooleanField(default=False, help_text="A hard bounce or other failure retrying cannot fix.")
    recipient = models.CharField(max_length=512, blank=True)
    occurred_at = models.DateTimeField(default=timezone.now)
    received_at = models.DateTimeField(default=timezone.now)
    raw = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-occurred_at"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "provider_event_id"], name="deliveryevent_unique_provider_event"),
        ]

    def __str__(self):
        return f"{self.event_type} from {self.provider} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class ConversationStatus(models.TextChoices):
    OPEN = "open", "Open"
    WAITING = "waiting", "Waiting on customer"
    CLOSED = "closed", "Closed"


class ResolvedBy(models.TextChoices):
    AGENT = "agent", "Agent"
    AUTOMATION = "automation", "Automation"


class AssignmentStrategy(models.TextChoices):
    ROUND_ROBIN = "round_robin", "Round-robin"
    FEWEST_OPEN = "fewest_open", "Fewest open conversations"
    MANUAL = "manual", "No automatic assignment"


class BusinessHours(models.Model):
    """When people answer: weekly opening hours in a time zone, and holidays when nobody does.
    channels/business_hours.py computes due times from it."""

    name = models.CharField(max_length=100, unique=True)
    timezone = models.CharField(max_length=64, validators=[validate_timezone], help_text="IANA zone, e.g. Europe/London.")
    # Read on every inbound message through a per-process cache (channels/inbound_settings.py)
    # that notices a save by this column, here and on opening hours, holidays and service levels.
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "business hours"
        verbose_name_plural = "business hours"

    def __str__(self):
        return f"{self.name} ({self.timezone})"

    def schedule(self) -> Schedule:
        """These hours as a Schedule (reads openings and holidays: prefetch them for many).
        ValueError says what is wrong, e.g. no opening hours at all."""
        weekly = tuple((o.weekday, o.opens, None if o.closes == END_OF_DAY else o.closes) for o in self.openings.all())
        return Schedule(self.timezone, weekly, frozenset(h.date for h in self.holidays.all()))


# An opening that closes at 23:59 runs to midnight (a TimeField cannot say 24:00).
END_OF_DAY = time(23, 59)


class Weekday(models.IntegerChoices):
    MONDAY = 0, "Monday"
    TUESDAY = 1, "Tuesday"
    WEDNESDAY = 2, "Wednesday"
    THURSDAY = 3, "Thursday"
    FRIDAY = 4, "Friday"
    SATURDAY = 5, "Saturday"
    SUNDAY = 6, "Sunday"


class OpeningHours(models.Model):
    """One opening interval on one weekday, in the business hours' time zone."""

    business_hours = models.ForeignKey(BusinessHours, on_delete=models.CASCADE, related_name="openings")
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices)
    opens = models.TimeField()
    closes = models.TimeField(help_text="Must be later than opens; 23:59 closes at the end of the day.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["weekday", "opens"]
        verbose_name_plural = "opening hours"
        constraints = [models.CheckConstraint(condition=Q(closes__gt=F("opens")), name="opening_closes_after_opens")]

    def __str__(self):
        return f"{self.get_weekday_display()} {self.opens:%H:%M}-{self.closes:%H:%M}"


class Holiday(models.Model):
    """A local date on which nobody answers."""

    business_hours = models.ForeignKey(BusinessHours, on_delete=models.CASCADE, related_name="holidays")
    date = models.DateField()
    name = models.CharField(max_length=100, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["date"]
        constraints = [models.UniqueConstraint(fields=["business_hours", "date"], name="holiday_once_per_date")]

    def __str__(self):
        return f"{self.date} {self.name}".strip()


# A due time is found by walking the business hours day by day, in the inbound webhook: a larger
# target is no promise to a customer and would cost each message a long walk.
MAX_SERVICE_LEVEL_MINUTES = 90 * 24 * 60


class ServiceLevel(models.Model):
    """How fast each channel's conversations are answered and resolved, counted in business hours."""

    channel = models.CharField(max_length=10, choices=Channel.choices, unique=True)
    business_hours = models.ForeignKey(
        BusinessHours, null=True, blank=True, on_delete=models.PROTECT, related_name="service_levels",
        help_text="Empty: the clock runs around the clock.",
    )
    first_response_minutes = models.PositiveIntegerField(
        default=60, validators=[MaxValueValidator(MAX_SERVICE_LEVEL_MINUTES)],
        help_text="Minutes of business time. At most 129,600 (90 days around the clock).")
    resolution_minutes = models.PositiveIntegerField(
        default=24 * 60, validators=[MaxValueValidator(MAX_SERVICE_LEVEL_MINUTES)],
        help_text="Minutes of business time. At most 129,600 (90 days around the clock).")
    after_hours_reply = models.TextField(
        blank=True, help_text="Sent once per conversation and day to a customer who writes outside business "
                              "hours. Empty: none.",
    )
    satisfaction_question = models.TextField(
        blank=True, help_text="Asked on the channel after a conversation closes; the customer answers 1 to 5. "
                              "Empty: not asked.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.get_channel_display()}: first response {self.first_response_minutes} min"


class SupportQueue(models.Model):
    """Where conversations wait for an agent, and how they are handed out."""

    name = models.CharField(max_length=100, unique=True)
    agents = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="support_queues")
    assignment = models.CharField(max_length=15, choices=AssignmentStrategy.choices,
                                  default=AssignmentStrategy.ROUND_ROBIN)
    max_open_per_agent = models.PositiveIntegerField(
        default=10, help_text="An agent with this many open conversations gets no more automatically.",
    )
    # Round-robin's cursor: the agent who got the last conversation.
    last_assigned = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+", editable=False)
    is_default = models.BooleanField(default=False, help_text="New conversations no rule routes elsewhere wait here.")

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True),
                                               name="one_default_support_queue")]

    def __str__(self):
        return self.name


class AgentStatus(models.Model):
    """Whether an agent takes new conversations now."""

    agent = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="support_status")
    available = models.BooleanField(default=False)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "agent statuses"

    def __str__(self):
        return f"{self.agent}: {'available' if self.available else 'away'}"


class ConversationTag(models.Model):
    name = models.CharField(max_length=50, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


# The inbox's order (omni/web/inbox.py): first-response due time while nobody has answered,
# then follow-up date, either "never" when not set. Defined here so the index serving it
# (conversation_inbox_attention) holds the very same expressions.
NEVER = datetime(9999, 12, 31, tzinfo=dt_timezone.utc)


def response_due_order():
    return Case(When(first_response_at__isnull=True, first_response_due_at__isnull=False,
                     then=F("first_response_due_at")), default=Value(NEVER), output_field=models.DateTimeField())


def follow_up_order():
    return Coalesce("follow_up_at", Value(NEVER), output_field=models.DateTimeField())


class Conversation(models.Model):
    """A support thread with one contact on one channel; at most one not closed per contact and channel."""

    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="conversations")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    status = models.CharField(max_length=10, choices=ConversationStatus.choices, default=ConversationStatus.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    queue = models.ForeignKey(SupportQueue, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="conversations")
    tags = models.ManyToManyField(ConversationTag, blank=True, related_name="conversations")
    opened_at = models.DateTimeField(default=timezone.now)
    first_response_due_at = models.DateTimeField(null=True, blank=True)
    first_response_at = models.DateTimeField(null=True, blank=True)
    resolution_due_at = models.DateTimeField(null=True, blank=True)
    follow_up_at = models.DateTimeField(null=True, blank=True, help_text="When someone should look at it again.")
    closed_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=10, choices=ResolvedBy.choices, blank=True, default="", db_default="")
    closed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    # Times kept when they happen, in real seconds and in business-hours seconds (the service level's hours).
    first_response_seconds = models.PositiveIntegerField(null=True, blank=True)
    first_response_business_seconds = models.PositiveIntegerField(null=True, blank=True)
    resolution_seconds = models.PositiveIntegerField(null=True, blank=True)
    resolution_business_seconds = models.PositiveIntegerField(null=True, blank=True)
    # Since when it waits on the customer: closed after OMNI_CONVERSATION_WAITING_CLOSE_DAYS.
    waiting_since = models.DateTimeField(null=True, blank=True)
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(default=timezone.now)
    # Automation's memory: how many automated replies it sent, the day of its after-hours reply.
    automated_replies = models.PositiveSmallIntegerField(default=0, db_default=0)
    after_hours_replied_on = models.DateField(null=True, blank=True)
    satisfaction_asked_at = models.DateTimeField(null=True, blank=True)
    satisfaction = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-last_activity_at"]
        # Sending to the customer (channels/replies.py) is more than changing the conversation.
        permissions = [("reply_conversation", "Can reply to conversations")]
        constraints = [
            models.UniqueConstraint(fields=["contact", "channel"], condition=~Q(status="closed"),
                                    name="one_unclosed_conversation_per_channel"),
            models.CheckConstraint(condition=Q(satisfaction__isnull=True) | Q(satisfaction__range=(1, 5)),
                                   name="satisfaction_one_to_five"),
        ]
        indexes = [
            # The support home counts open and unassigned conversations (omni/web/home.py).
            models.Index(fields=["status", "assignee"], name="conversation_status_assignee"),
            # The inbox: not closed, by first-response due time.
            models.Index(fields=["status", "first_response_due_at", "id"], name="conversation_inbox_order"),
            # The inbox's pages in its order, among conversations not closed (an ORDER BY ... LIMIT
            # that reads the first rows of this index instead of sorting every open conversation).
            models.Index(response_due_order(), follow_up_order(), "id", name="conversation_inbox_attention",
                         condition=~Q(status="closed")),
            # The figures page (omni/web/support_figures.py) reads conversations opened, answered or
            # closed in a period, and whether the contact came back on the channel soon after.
            models.Index(fields=["opened_at"], name="conversation_opened"),
            models.Index(fields=["first_response_at"], name="conversation_first_response",
                         condition=Q(first_response_at__isnull=False)),
            models.Index(fields=["closed_at"], name="conversation_closed", condition=Q(closed_at__isnull=False)),
            models.Index(fields=["contact", "channel", "opened_at"], name="conversation_contact_opened"),
            # Closed and not yet asked the satisfaction question (channels.support_automation.
            # ask_satisfaction, every minute): each asked one leaves the index.
            models.Index(fields=["channel", "closed_at"], name="conversation_to_survey",
                         condition=Q(status="closed", satisfaction_asked_at__isnull=True)),
        ]

    def __str__(self):
        return f"{self.get_channel_display()} conversation with {self.contact}"


class ConversationNote(models.Model):
    """What an agent writes for other agents; never sent."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return self.body[:60]


class SavedReply(models.Model):
    """An answer agents reuse; {{ variables }} are rendered strictly for the contact."""

    title = models.CharField(max_length=100, unique=True)
    body = models.TextField(help_text="Variables such as {{ contact.first_name }} are filled for the contact; "
                                      "a reply naming one the contact lacks is not sent.")
    channel = models.CharField(max_length=10, choices=Channel.choices, blank=True,
                               help_text="Empty: offered on every channel.")

    class Meta:
        ordering = ["title"]
        verbose_name_plural = "saved replies"

    def __str__(self):
        return self.title


class EscalationTrigger(models.TextChoices):
    PHRASE = "phrase", "The customer writes one of the phrases"
    AUTOMATED_REPLIES = "automated_replies", "Automation has replied this many times"
    REPEATED_MESSAGE = "repeated_message", "The customer sends the same message this many times"


class EscalationRule(models.Model):
    """When a conversation needs a person: assigns a queue and tells the customer when one answers."""

    name = models.CharField(max_length=100, unique=True)
    active = models.BooleanField(default=True)
    trigger = models.CharField(max_length=20, choices=EscalationTrigger.choices)
    phrases = models.TextField(blank=True, help_text="One phrase per line, matched case-insensitively.")
    threshold = models.PositiveSmallIntegerField(default=2, help_text="For the counting triggers.")
    queue = models.ForeignKey(SupportQueue, on_delete=models.PROTECT, related_name="escalation_rules")
    acknowledgement = models.TextField(
        blank=True, help_text="Sent to the customer; {{ response_due }} says when a person will answer.",
    )
    position = models.PositiveSmallIntegerField(default=0, help_text="Rules run in this order; the first match wins.")

    class Meta:
        ordering = ["position", "id"]

    def __str__(self):
        return self.name


class AutoResponse(models.Model):
    """An automated first response to a message containing one of the phrases."""

    name = models.CharField(max_length=100, unique=True)
    active = models.BooleanField(default=True)
    phrases = models.TextField(help_text="One phrase per line, matched case-insensitively.")
    body = models.TextField()
    channel = models.CharField(max_length=10, choices=Channel.choices, blank=True,
                               help_text="Empty: every channel.")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self):
        return self.name


class BlockReason(models.TextChoices):
    SPAM = "spam", "Spam"
    ABUSE = "abuse", "Abuse"
    OTHER = "other", "Other"


class BlockedSender(models.Model):
    """An address whose messages are stored but open nothing and get no automated answer.

    Looked up by `address_hash`: erasure empties `address` and `note`, and the sender stays
    blocked without Omni keeping who it was."""

    channel = models.CharField(max_length=10, choices=Channel.choices)
    address = models.CharField(max_length=512, blank=True)
    address_hash = models.CharField(max_length=64, editable=False, default="")
    reason = models.CharField(max_length=10, choices=BlockReason.choices)
    note = models.TextField(blank=True)
    blocked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    blocked_at = models.DateTimeField(default=timezone.now)
    unblocked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    unblocked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-blocked_at"]
        constraints = [models.UniqueConstraint(fields=["channel", "address_hash"], condition=Q(unblocked_at__isnull=True),
                                               name="one_active_block_per_address")]

    def save(self, *args, **kwargs):
        if self.address:
            self.address_hash = hash_address(self.address)
        super().save(*args, **kwargs)

    def __str__(self):
        return f"{self.address or self.address_hash[:12]} ({self.get_reason_display()})"


class InboundMessage(models.Model):
    """Something a contact sent us: an SMS, a WhatsApp message, an email reply."""

    # Indexed by inbound_contact_time, which leads with it.
    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="inbound_messages", db_index=False)
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="inbound_messages"
    )
    channel = models.CharField(max_length=10, choices=Channel.choices)
    provider = models.CharField(max_length=50)
    provider_message_id = models.CharField(max_length=255)
    from_address = models.CharField(max_length=512)
    to_address = models.CharField(max_length=512, blank=True)
    body = models.TextField(blank=True)
    media = models.JSONField(default=list, blank=True)
    # The keyword Omni acted on (compliance.models.KeywordKind: stop, stop_all, start, help), or
    # "" for a normal message; set by channels.consent_messages.act_on_keyword.
    keyword = models.CharField(max_length=20, blank=True)
    # A person should read it: an opt-out word inside other text (OMNI_KEYWORD_EMBEDDED_OPT_OUT).
    needs_agent = models.BooleanField(default=False, db_default=False)
    in_reply_to = models.ForeignKey(Delivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="replies")
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    raw = models.JSONField(default=dict, blank=True)
    # From a blocked sender: stored, opens nothing, answered by nothing.
    blocked = models.BooleanField(default=False, db_default=False)
    # Support automation's tick stage has looked at it (escalation, automated and after-hours replies).
    handled_at = models.DateTimeField(null=True, blank=True)
    quarantined_at = models.DateTimeField(null=True, blank=True)
    quarantine_reason = models.TextField(blank=True, default="", db_default="")
    # Indexed only where set (inbound_automated_reply): most messages get no automated reply.
    automated_reply = models.ForeignKey("Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                        db_index=False)
    # The tick marked in_reply_to replied (provider_reports.apply_replies_batch), out of the webhook.
    reply_applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "provider_message_id"], name="inbound_unique_provider_id"),
        ]
        indexes = [
            models.Index(fields=["contact", "received_at", "id"], name="inbound_contact_time"),
            models.Index(fields=["received_at", "id"], condition=Q(handled_at__isnull=True, quarantined_at__isnull=True),
                         name="inbound_unhandled"),
            # The administrators' home counts quarantined rows (omni/web/home.py).
            models.Index(fields=["quarantined_at"], condition=Q(quarantined_at__isnull=False), name="inbound_quarantined"),
            models.Index(fields=["received_at", "id"],
                         condition=Q(in_reply_to__isnull=False, reply_applied_at__isnull=True,
                                     quarantined_at__isnull=True),
                         name="inbound_reply_unapplied"),
            models.Index(fields=["automated_reply"], condition=Q(automated_reply__isnull=False),
                         name="inbound_automated_reply"),
        ]

    def __str__(self):
        return f"{self.channel} from {self.from_address}"


class OutboxMessage(models.Model):
    """What the sandbox provider would have sent: the embedded default's outbox."""

    delivery = models.OneToOneField(Delivery, null=True, on_delete=models.SET_NULL, related_name="outbox_message")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    to_address = models.CharField(max_length=512)
    subject = models.CharField(max_length=500, blank=True)
    text_body = models.TextField(blank=True)
    html_body = models.TextField(blank=True)
    content = models.JSONField(default=dict, blank=True)
    provider_message_id = models.CharField(max_length=64, unique=True)
    # What the sandbox will report for this address (delivered, bounced, complained, failed...).
    simulated_outcome = models.CharField(max_length=20)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "sandbox outbox message"

    def __str__(self):
        return f"{self.channel} to {self.to_address}: {self.subject or self.text_body[:40]}"


class DefaultChannelPlan(models.Model):
    """The channel plan a journey send step without its own gets, by purpose and urgency.

    Publishing a journey copies it into the version (campaigns.actions.draft_snapshot), so a
    later edit here changes only what is published next.
    """

    purpose = models.CharField(max_length=15, choices=Purpose.choices)
    urgency = models.CharField(max_length=10, choices=Urgency.choices)
    channel_plan = models.JSONField(default=list)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["purpose", "urgency"]
        verbose_name = "default channel plan"
        constraints = [models.UniqueConstraint(fields=["purpose", "urgency"], name="default_plan_unique")]

    def __str__(self):
        return f"{self.get_purpose_display()}, {self.get_urgency_display().lower()} urgency"

    def clean(self):
        from django.core.exceptions import ValidationError

        from .plans import channel_plan_problems

        problems = channel_plan_problems(self.channel_plan)
        if problems:
            raise ValidationError({"channel_plan": problems})

    @property
    def channels(self) -> list[str]:
        return [entry["channel"] for entry in self.channel_plan]

    @classmethod
    def plans(cls) -> dict[tuple[str, str], list]:
        """Every default plan by (purpose, urgency), in one query."""
        return {(purpose, urgency): plan for purpose, urgency, plan
                in cls.objects.values_list("purpose", "urgency", "channel_plan")}


class ArbitrationAction(models.TextChoices):
    DEFER = "defer", "Defer it until the collision window has passed"
    DROP = "drop", "Drop it"


class ArbitrationRule(models.Model):
    """How messages of one purpose give way to others for the same contact (channels.arbitration).

    The intent window: a message whose intent key a message to the same contact already carried
    within it (queued, sent or delivered, whatever the source) is dropped; with one per channel,
    only when that message went on the same channel. The collision window: a message is deferred
    or dropped when a message that outranks it (its purpose, then its priority) goes to the same
    contact within it. Zero turns either check off.
    """

    purpose = models.CharField(max_length=15, choices=Purpose.choices, unique=True)
    intent_window_seconds = models.PositiveIntegerField(
        "intent window", default=0,
        help_text="How long the same intent key is not said twice to one contact. Zero: never checked.")
    one_per_channel = models.BooleanField(
        default=False,
        help_text="Allow the same intent once on each channel within the intent window: an SMS alert, with the "
                  "email kept as the record.")
    collision_window_seconds = models.PositiveIntegerField(
        "collision window", default=0,
        help_text="How close to a more important message to the same contact this purpose's messages may go. "
                  "Zero: they never give way.")
    action = models.CharField(
        max_length=10, choices=ArbitrationAction.choices, default=ArbitrationAction.DEFER,
        help_text="What happens to a message that gives way in a collision. A repeated intent is always dropped.")
    # Raised by every save and kept in each decision that applied the rule.
    version = models.PositiveIntegerField(default=1, db_default=1, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["purpose"]
        verbose_name = "arbitration rule"

    def __str__(self):
        return f"Arbitration of {self.get_purpose_display().lower()} messages"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            self.version += 1
        if "update_fields" in kwargs and kwargs["update_fields"] is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "version", "updated_at"}
        super().save(*args, **kwargs)
