"""The canonical message, its deliveries on providers, and what providers tell us back."""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from contacts.models import Contact, Device
from omni.choices import Channel, Exemption, Purpose, Urgency
from omni.models import ApiKey
from templates.models import TemplateVersion


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
    source = models.CharField(max_length=10, choices=MessageSource.choices)
    conversation = models.ForeignKey(
        "Conversation", null=True, blank=True, on_delete=models.PROTECT, related_name="messages", db_index=False
    )
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.PROTECT, related_name="messages",
                                db_index=False)
    # A replayed trigger (retried task, re-claimed step) finds the existing message instead of
    # making a second one.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    status = models.CharField(max_length=12, choices=MessageStatus.choices, default=MessageStatus.PENDING)
    status_reason = models.CharField(max_length=100, blank=True)
    defer_until = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Not sent after this time.")
    # Gate rules this message may pass (compliance.gate.EXEMPTIONS): set by Omni's own code only.
    exemption = models.CharField(max_length=30, choices=Exemption.choices, blank=True, default="", db_default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Set when the tick could not process the row (omni/lib/quarantine.py): not claimed again
    # until someone retries it in the admin.
    quarantined_at = models.DateTimeField(null=True, blank=True)
    quarantine_reason = models.TextField(blank=True, default="", db_default="")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["defer_until"], condition=Q(status="deferred"), name="message_deferred_due"),
            models.Index(fields=["contact", "intent_key", "created_at"], name="message_contact_intent"),
            # The contact's timeline pages through their messages by time (omni/web/timeline.py).
            models.Index(fields=["contact", "created_at", "id"], name="message_contact_time"),
            models.Index(fields=["status"], name="message_status"),
            models.Index(fields=["conversation"], condition=Q(conversation__isnull=False), name="message_conversation"),
            models.Index(fields=["agent"], condition=Q(agent__isnull=False), name="message_agent"),
            models.Index(fields=["api_key"], condition=Q(api_key__isnull=False), name="message_api_key"),
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


class Conversation(models.Model):
    """A support thread with one contact on one channel."""

    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="conversations")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    status = models.CharField(max_length=10, choices=ConversationStatus.choices, default=ConversationStatus.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    queue = models.CharField(max_length=100, blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    first_response_due_at = models.DateTimeField(null=True, blank=True)
    first_response_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-last_activity_at"]
        # The support home counts open and unassigned conversations (omni/web/home.py).
        indexes = [models.Index(fields=["status", "assignee"], name="conversation_status_assignee")]

    def __str__(self):
        return f"{self.get_channel_display()} conversation with {self.contact}"


class InboundMessage(models.Model):
    """Something a contact sent us: an SMS, a WhatsApp message, an email reply."""

    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="inbound_messages")
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

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "provider_message_id"], name="inbound_unique_provider_id"),
        ]
        indexes = [models.Index(fields=["contact", "received_at", "id"], name="inbound_contact_time")]

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
