"""Journeys (triggered, multi-step) and campaigns (one-off broadcasts).

A journey's own fields and its JourneyStep rows are its draft, freely edited in the admin. Running
contacts never read the draft: publishing it makes an immutable JourneyVersion (a snapshot of the
trigger, goal, re-entry and every step, with the template versions pinned), and each enrollment
runs on the version it pinned when it entered.
"""
from dataclasses import dataclass
from functools import cached_property

import pgtrigger
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from contacts.models import Contact, LifecycleStage, Segment
from omni.choices import Purpose, Urgency
from omni.lib.approval import Approvable
from templates.models import Template, TemplateVersion

from .step_settings import StepKind, step_setting_problems  # noqa: F401  (StepKind is part of this module's API)


class JourneyStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    # Not yet active: its published version enrolls only test contacts (campaigns.journey_testing).
    TESTING = "testing", "Testing"
    PAUSED = "paused", "Paused"
    ARCHIVED = "archived", "Archived"


# The statuses whose journeys enroll contacts and whose enrollments the tick runs; a journey in
# testing enrolls only test contacts (campaigns/admission.py).
RUNNING_JOURNEY_STATUSES = (JourneyStatus.ACTIVE, JourneyStatus.TESTING)


class TriggerType(models.TextChoices):
    EVENT = "event", "An event"
    SEGMENT_ENTRY = "segment", "Entering a segment"
    SEGMENT_EXIT = "segment_exit", "Leaving a segment"
    DATE_ATTRIBUTE = "date", "A date attribute"
    API = "api", "API call"


# The triggers the segment stage (campaigns/segment_triggers.py) enrolls for.
SEGMENT_TRIGGERS = (TriggerType.SEGMENT_ENTRY, TriggerType.SEGMENT_EXIT)


class ReentryPolicy(models.TextChoices):
    NEVER = "never", "Never"
    AFTER_PERIOD = "after_period", "After a period"
    ALWAYS = "always", "Always"


class OnReply(models.TextChoices):
    """What a contact's reply (an inbound message in a conversation) does to their enrollment."""

    PAUSE_RESUME = "pause_resume", "Pause until the conversation closes, then resume"
    PAUSE_EXIT = "pause_exit", "Pause until the conversation closes, then exit"
    EXIT = "exit", "Exit the journey"
    CONTINUE = "continue", "Carry on (replies change nothing)"


ON_REPLY_HELP = (
    "What happens to a contact in this journey when they write to us (an SMS or WhatsApp message that opens "
    "or continues a conversation with an agent). Pausing holds their next step while the conversation is "
    "open; once it closes they resume, and a wait that ran out meanwhile runs at once, or they exit. "
    "Enrollments paused by staff are never resumed by a closing."
)


TRIGGER_CONDITIONS_HELP = (
    'Conditions on the trigger event\'s properties, all of which must hold, e.g. [{"property": "amount", '
    '"operator": "gte", "value": 100}]. The operators depend on the property\'s declared type.')
TRIGGER_MAX_AGE_HELP = (
    "An event that happened longer ago than this when Omni processes it (a late delivery, a replayed backlog) "
    "enrolls nobody; the refusal is audited. Empty: any age.")
TRIGGER_DATE_ATTRIBUTE_HELP = (
    "For the trigger \"A date attribute\": the contact attribute holding the date (or date and time), e.g. "
    "renewal_date. Each contact enters once per date value, at the moment below.")
TRIGGER_DATE_PROPERTY_HELP = (
    "For an event trigger, optional: the event's property holding a date (e.g. appointment_at). The contact "
    "enters when the event arrives and their first step is due at the moment below; empty: at once.")
TRIGGER_DATE_OFFSET_HELP = "Days before (negative) or after (positive) the date, e.g. -1 for the day before."
TRIGGER_DATE_TIME_HELP = (
    "The time of day in the contact's own timezone (their profile's, else their phone number's, else the "
    "default). Empty: the date's own time of day, or midnight for a plain date.")


OBJECTIVE_HELP = "What the journey is for, in a sentence, e.g. \"Turn new trials into paying customers.\""
LIFECYCLE_STAGE_HELP = "The lifecycle stage of the contacts it is for, e.g. Trial for an onboarding journey."


class Journey(Approvable):
    """A triggered, multi-step journey. Its owner, objective and lifecycle stage say who answers
    for it and what it is for: required to activate it (with the goal event), never read by the
    engine, so they stay out of its versions. Its approval (omni/lib/approval.py) is of its draft."""

    APPROVE_PERMISSION = "campaigns.approve_journey"
    AUDIT_PREFIX = "journey"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=JourneyStatus.choices, default=JourneyStatus.DRAFT, db_index=True)
    trigger_type = models.CharField(max_length=20, choices=TriggerType.choices, default=TriggerType.EVENT)
    trigger_event = models.CharField(max_length=100, blank=True, db_index=True, help_text="Event name that enrolls.")
    # Conditions on the event's properties, all of which must hold (campaigns/trigger_conditions.py):
    # [{"property": "amount", "operator": "gte", "value": 100}, ...]. Journeys saved before typed
    # conditions hold {"plan": "pro"} (properties.plan equals "pro"), read as the same list.
    trigger_conditions = models.JSONField(default=list, blank=True, help_text=TRIGGER_CONDITIONS_HELP)
    # PROTECT: deleting the segment of a journey's trigger is refused (it used to strip a live trigger).
    trigger_segment = models.ForeignKey(Segment, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    trigger_max_age_seconds = models.PositiveIntegerField(
        "ignore events older than (seconds)", null=True, blank=True, help_text=TRIGGER_MAX_AGE_HELP)
    trigger_date_attribute = models.CharField(
        "date attribute", max_length=100, blank=True, help_text=TRIGGER_DATE_ATTRIBUTE_HELP)
    trigger_date_property = models.CharField(
        "date property of the event", max_length=100, blank=True, help_text=TRIGGER_DATE_PROPERTY_HELP)
    trigger_date_offset_days = models.SmallIntegerField(
        "days from the date", default=0, db_default=0, help_text=TRIGGER_DATE_OFFSET_HELP)
    trigger_date_time = models.TimeField(
        "at local time", null=True, blank=True, help_text=TRIGGER_DATE_TIME_HELP)
    # How far the date trigger's tick stage has looked (campaigns/date_triggers.py): dates whose
    # moment falls after it have not fired yet. Runtime state, never part of a version.
    date_trigger_checked_until = models.DateTimeField(null=True, blank=True, editable=False)
    goal_event = models.CharField(
        "goal event (success metric)", max_length=100, blank=True,
        help_text="Event that ends the journey as a conversion: what its success is counted by.")
    reentry = models.CharField(max_length=15, choices=ReentryPolicy.choices, default=ReentryPolicy.NEVER)
    reentry_after_seconds = models.PositiveIntegerField(null=True, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", help_text="Who answers for this journey.")
    objective = models.TextField(blank=True, help_text=OBJECTIVE_HELP)
    # PROTECT: a stage a journey is for is not deleted from under it.
    lifecycle_stage = models.ForeignKey(LifecycleStage, null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="+", help_text=LIFECYCLE_STAGE_HELP)
    on_reply = models.CharField("when the contact replies", max_length=15, choices=OnReply.choices,
                                default=OnReply.CONTINUE, db_default=OnReply.CONTINUE, help_text=ON_REPLY_HELP)
    # The version new enrollments pin; enrollments and visits keep the one they ran.
    live_version = models.ForeignKey(
        "JourneyVersion", null=True, blank=True, editable=False, on_delete=models.PROTECT, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    # Bumped by every draft edit (campaigns.drafts, the journey form): an edit made from a page
    # that read an older number is refused, so two people never overwrite each other unseen.
    draft_revision = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    # Why it stopped by itself (auto-pause: campaigns/auto_pause.py); a person resumes it.
    paused_reason = models.CharField(max_length=500, blank=True, default="", db_default="", editable=False)
    # When a person last resumed it: auto-pause judges only the sends made since, so the breach
    # it paused for is not counted again. Runtime state, never part of a version.
    watched_since = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        permissions = [("approve_journey", "Can approve journeys (not one's own request)")]

    def __str__(self):
        return self.name


class JourneyStep(models.Model):
    """One step of a journey: its kind and settings (campaigns/step_settings.py says what each
    kind takes in `config`). A condition goes to next_step when true and else_step when false; a
    wait for an event goes to else_step when it times out.
    A step without next_step continues with the next position (the last step completes), unless
    `ends` says the journey ends after it: the builder always writes one or the other.
    These rows are the draft: contacts run on the published JourneyVersion's copy of them.
    """

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="steps")
    key = models.SlugField(max_length=50, help_text="Unique within the journey; conditions refer to it.")
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=10, choices=StepKind.choices)
    config = models.JSONField(default=dict, blank=True, help_text=(
        'The settings of its kind, as JSON: wait {"seconds": 3600}; wait_until {"time": "09:00"}; wait_date '
        '{"attribute": "appointment_at", "offset_seconds": -86400}; wait_event {"event": "purchased", '
        '"timeout_seconds": 86400} or {"engagement": "opened", "step": "<send step>", "timeout_seconds": 86400}; '
        'condition {"check": "attribute", "name": "plan", "operator": "equals", "value": "pro"}; split {"paths": '
        '[{"name": "A", "weight": 50, "step": "<step>"}, {"name": "B", "weight": 50}]}; update {"attribute": '
        '"plan", "value": "pro"} or {"lifecycle_stage": "customer"}; webhook {"endpoint": "<name>", '
        '"timeout_seconds": 600}. Else step: a condition\'s false branch, a wait\'s timeout branch.'))
    template = models.ForeignKey(Template, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    purpose = models.CharField(max_length=15, choices=Purpose.choices, blank=True, help_text="Blank: the template's.")
    urgency = models.CharField(max_length=10, choices=Urgency.choices, default=Urgency.NORMAL)
    channel_plan = models.JSONField(
        default=list, blank=True, help_text='Ordered channels, e.g. [{"channel": "email"}, {"channel": "sms"}].'
    )
    intent_key = models.CharField(max_length=200, blank=True, help_text="Blank: journey and step key.")
    next_step = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    else_step = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The journey ends after this step (next_step is then empty). Kept apart from next_step so
    # that steps written before it (null: the next position) still mean what they meant.
    ends = models.BooleanField("ends the journey", default=False, db_default=False)

    class Meta:
        ordering = ["journey", "position"]
        constraints = [models.UniqueConstraint(fields=["journey", "key"], name="step_unique_key")]

    def __str__(self):
        return f"{self.journey}: {self.position}. {self.key} ({self.kind})"

    def clean(self):
        problems = step_setting_problems(self.kind, self.config, self.channel_plan, has_template=bool(self.template_id))
        if problems:
            raise ValidationError(problems)


@dataclass(frozen=True)
class PlannedStep:
    """One step as a published version runs it."""

    key: str
    kind: str
    config: dict
    template_version_id: int | None
    purpose: str
    urgency: str
    channel_plan: list
    intent_key: str
    # Where the step leads when it succeeds (its next, else the next position); None ends the journey.
    following: str | None
    # Where a condition leads when false; None ends the journey.
    else_key: str | None


class JourneyVersion(models.Model):
    """A published, immutable snapshot of a journey: what its enrollments run.

    `steps` lists every step in position order, each as {"key", "kind", "position", "config",
    "template", "template_key", "template_version", "template_version_number", "purpose",
    "urgency", "channel_plan", "intent_key", "next", "else"}: send steps pin the template
    version published when the journey was, and next/else name steps by key (null: the next
    position, or for else the end of the journey). A step that ends the journey also holds
    "end": true; the key is left out otherwise, so versions published before it compare unchanged.
    """

    # What a snapshot holds; two snapshots with equal values are the same journey.
    SNAPSHOT_FIELDS = ("trigger_type", "trigger_event", "trigger_conditions", "trigger_segment_id",
                       "trigger_max_age_seconds", "trigger_date_attribute", "trigger_date_property",
                       "trigger_date_offset_days", "trigger_date_time", "goal_event",
                       "reentry", "reentry_after_seconds", "on_reply", "steps")

    journey = models.ForeignKey(Journey, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    trigger_type = models.CharField(max_length=20, choices=TriggerType.choices)
    trigger_event = models.CharField(max_length=100, blank=True, db_index=True)
    trigger_conditions = models.JSONField(default=dict, blank=True)
    # PROTECT: a version is immutable, so deleting its segment may not empty the field.
    trigger_segment = models.ForeignKey(Segment, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # Versions published before these settings existed keep their meaning: any age, no date.
    trigger_max_age_seconds = models.PositiveIntegerField(null=True, blank=True)
    trigger_date_attribute = models.CharField(max_length=100, blank=True, default="", db_default="")
    trigger_date_property = models.CharField(max_length=100, blank=True, default="", db_default="")
    trigger_date_offset_days = models.SmallIntegerField(default=0, db_default=0)
    trigger_date_time = models.TimeField(null=True, blank=True)
    goal_event = models.CharField(max_length=100, blank=True, db_index=True)
    reentry = models.CharField(max_length=15, choices=ReentryPolicy.choices)
    reentry_after_seconds = models.PositiveIntegerField(null=True, blank=True)
    # Versions published before the setting existed carry on as they did: replies change nothing.
    on_reply = models.CharField("when the contact replies", max_length=15, choices=OnReply.choices,
                                default=OnReply.CONTINUE, db_default=OnReply.CONTINUE)
    steps = models.JSONField(default=list)
    published_at = models.DateTimeField(default=timezone.now)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["journey", "-number"]
        constraints = [models.UniqueConstraint(fields=["journey", "number"], name="journey_version_unique_number")]
        triggers = [
            # Enrollments run what was published: not even SQL rewrites it. Only the publisher
            # may be forgotten (SET_NULL when their user is deleted).
            pgtrigger.Protect(name="protect_published_update", operation=pgtrigger.Update,
                              condition=pgtrigger.AnyChange(exclude=["published_by"])),
        ]

    def __str__(self):
        return f"{self.journey} v{self.number}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Published journey versions are immutable; publish a new version instead.")
        super().save(*args, **kwargs)

    def snapshot(self) -> dict:
        return {name: getattr(self, name) for name in self.SNAPSHOT_FIELDS}

    @property
    def first_step_key(self) -> str:
        return self.steps[0]["key"] if self.steps else ""

    @cached_property
    def plan(self) -> dict[str, PlannedStep]:
        """The steps by key, with where each leads."""
        return plan_steps(self.steps)


class AwaitedEvent(models.Model):
    """An event name a version's wait steps wait for, written when the version is published, so
    the tick's event stage reads enrollments only for events someone waits for (engagement waits
    wait for channels' message.<kind> events)."""

    version = models.ForeignKey(JourneyVersion, on_delete=models.CASCADE, related_name="awaited_events")
    event = models.CharField(max_length=100)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["event", "version"], name="awaited_event_unique")]

    def __str__(self):
        return f"{self.version} waits for {self.event}"


def plan_steps(steps: list[dict]) -> dict[str, PlannedStep]:
    """Snapshot steps (in position order) by key, each with the step it leads to."""
    planned = {}
    for index, step in enumerate(steps):
        later = steps[index + 1]["key"] if index + 1 < len(steps) else None
        planned[step["key"]] = PlannedStep(
            key=step["key"], kind=step["kind"], config=step.get("config") or {},
            template_version_id=step.get("template_version"), purpose=step.get("purpose") or "",
            urgency=step.get("urgency") or Urgency.NORMAL, channel_plan=step.get("channel_plan") or [],
            intent_key=step.get("intent_key") or "", following=None if step.get("end") else (step.get("next") or later),
            else_key=step.get("else") or None,
        )
    return planned


class EnrollmentState(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    CONVERTED = "converted", "Converted (goal reached)"
    EXITED = "exited", "Exited"
    FAILED = "failed", "Failed"


LIVE_ENROLLMENT_STATES = (EnrollmentState.ACTIVE, EnrollmentState.PAUSED)


# Where an enrollment keeps what enrolled it, for templates (the `trigger` variable) and branches.
TRIGGER_CONTEXT = "trigger"


class Enrollment(models.Model):
    """A contact's way through a journey. Due when active and next_run_at has passed."""

    journey = models.ForeignKey(Journey, on_delete=models.PROTECT, related_name="enrollments")
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="enrollments")
    # The version it runs on: set when it enters, changed only by an audited move to a later one.
    journey_version = models.ForeignKey(
        JourneyVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="enrollments"
    )
    # The key of the step of its version it runs next; blank once the journey has run out of steps.
    current_step_key = models.CharField(max_length=50, blank=True)
    state = models.CharField(max_length=10, choices=EnrollmentState.choices, default=EnrollmentState.ACTIVE)
    next_run_at = models.DateTimeField(null=True, blank=True)
    # Set when the beat tick hands the enrollment to a worker, cleared when a worker has run it;
    # a claim older than advancing.ENROLLMENT_LEASE was lost and is claimed again.
    claimed_at = models.DateTimeField(null=True, blank=True)
    # How many steps this enrollment has run; part of each send's idempotency key.
    steps_taken = models.PositiveIntegerField(default=0)
    # Per-step memory, e.g. {"messages": {"welcome-email": 17}}, and what enrolled it under
    # "trigger" (see TRIGGER_CONTEXT): {"type": "event" | "api" | "date", "properties": {...}, ...}.
    context = models.JSONField(default=dict, blank=True)
    # What makes this enrollment the one answer to its trigger, unique in its journey when set:
    # "date:<contact id>:<date value>" (a date fires once per contact and value), or
    # "api:<Idempotency-Key>" (a retried API request finds the enrollment it made).
    trigger_key = models.CharField(max_length=300, blank=True, default="", db_default="")
    trigger_event = models.ForeignKey(
        "contacts.ContactEvent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    entered_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=100, blank=True)
    # Consecutive ticks that ended with this enrollment still running steps without a wait:
    # a loop. It is quarantined after advancing.MAX_LOOPING_TICKS of them.
    loop_ticks = models.PositiveSmallIntegerField(default=0, db_default=0)
    # Set when the tick could not process the row (omni/lib/quarantine.py): not claimed again
    # until someone retries it in the admin.
    quarantined_at = models.DateTimeField(null=True, blank=True)
    quarantine_reason = models.TextField(blank=True, default="", db_default="")
    # Set while paused (campaigns.enrollment_state): when, by whom and why, and the conversation
    # the pause waits on: the one whose opening paused it, or another of the contact's still open
    # when that one closed; only its closing resumes it (an enrollment paused by staff has none). A plain id: the conversation's row is channels'.
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_by_label = models.CharField(max_length=150, blank=True, default="", db_default="")
    pause_reason = models.CharField(max_length=200, blank=True, default="", db_default="")
    paused_for_conversation_id = models.BigIntegerField(null=True, blank=True)
    # What a waiting step (a wait for an event or engagement, a webhook's answer) waits for, e.g.
    # "event:purchased" or "engagement:<message id>:opened"; blank when it waits for nothing.
    # The tick's event stage wakes the enrollments of an event's contact that wait for it
    # (campaigns/waking.py) through the enrollment_waiting index: nothing polls them. The step
    # stays current while it waits, and next_run_at is its timeout.
    waiting_for = models.CharField(max_length=200, blank=True, default="", db_default="")
    # Set when what it waited for happened (next_run_at is then now): the step goes on to its next
    # step rather than its timeout branch. Cleared when the step runs.
    woken_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-entered_at"]
        permissions = [("pause_enrollment", "Can pause and resume one contact's enrollment")]
        constraints = [
            # A contact is in a journey at most once at a time.
            models.UniqueConstraint(
                fields=["journey", "contact"],
                condition=Q(state__in=["active", "paused"]),
                name="enrollment_one_live_per_contact",
            ),
            models.UniqueConstraint(fields=["journey", "trigger_key"], condition=~Q(trigger_key=""),
                                    name="enrollment_unique_trigger_key"),
        ]
        indexes = [
            # Claimed rows leave the due index, so each batch of a tick starts at the first row
            # nobody holds instead of stepping over every row the earlier batches claimed.
            models.Index(fields=["next_run_at", "id"], condition=Q(state="active", claimed_at__isnull=True),
                         name="enrollment_due"),
            models.Index(fields=["claimed_at"], condition=Q(claimed_at__isnull=False), name="enrollment_leased"),
            # The administrators' home counts quarantined enrollments (omni/web/home.py).
            models.Index(fields=["quarantined_at"], condition=Q(quarantined_at__isnull=False),
                         name="enrollment_quarantined"),
            # The contact's timeline: enrollments by when they entered and by when they ended.
            models.Index(fields=["contact", "entered_at", "id"], name="enrollment_contact_time"),
            models.Index(fields=["contact", "ended_at", "id"], condition=Q(ended_at__isnull=False),
                         name="enrollment_contact_ended"),
            # Waking: the live enrollments of an event's contacts that wait for it.
            models.Index(fields=["contact", "waiting_for"],
                         condition=Q(state__in=["active", "paused"]) & ~Q(waiting_for=""),
                         name="enrollment_waiting"),
            # The journey diagram: the contacts at each step of a version (campaigns/step_counts.py).
            models.Index(fields=["journey_version", "current_step_key"], condition=Q(state__in=["active", "paused"]),
                         name="enrollment_at_step"),
        ]

    def __str__(self):
        return f"{self.contact} in {self.journey} ({self.state})"


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    # Its start was asked for and its audience snapshot is being taken in the background
    # (campaigns/campaign_start_requests.py); it becomes scheduled or sending, or a draft again.
    STARTING = "starting", "Starting"
    SCHEDULED = "scheduled", "Scheduled"
    SENDING = "sending", "Sending"
    PAUSED = "paused", "Paused"
    SENT = "sent", "Sent"
    CANCELLED = "cancelled", "Cancelled"


class LocalTimePassed(models.TextChoices):
    SEND_NOW = "send_now", "Send at once"
    SKIP = "skip", "Leave the contact out (local_time_passed)"


class TestMetric(models.TextChoices):
    CLICKS = "clicks", "Clicks"
    REPLIES = "replies", "Replies"
    GOAL = "goal", "The goal event"
    OPENS = "opens", "Opens (where the channel reports them)"


class TestFallback(models.TextChoices):
    CONTROL = "control", "Send the first variant to the rest"
    HIGHER_RATE = "higher_rate", "Send the variant with the higher rate anyway"
    SPLIT = "split", "Keep splitting the rest by weight"


class FollowUpWhen(models.TextChoices):
    NOT_OPENED = "not_opened", "Did not open"
    NOT_CLICKED = "not_clicked", "Did not click"
    NOT_CONVERTED = "not_converted", "Did not reach the goal"


class Campaign(Approvable):
    """A one-off send to a segment. Its fan-out is built on the same message path as journeys.
    Its approval follows omni/lib/approval.py, like a journey's; its status changes only in
    campaigns/campaign_state.py."""

    APPROVE_PERMISSION = "campaigns.approve_campaign"
    AUDIT_PREFIX = "campaign"

    name = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT,
                              db_index=True, editable=False)
    # The template sent when the campaign has no CampaignVariant rows (no A/B test).
    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="+")
    segment = models.ForeignKey(Segment, null=True, blank=True, on_delete=models.PROTECT, related_name="campaigns")
    purpose = models.CharField(max_length=15, choices=Purpose.choices, default=Purpose.MARKETING)
    urgency = models.CharField(max_length=10, choices=Urgency.choices, default=Urgency.LOW)
    # Channels in order with their fallback conditions, as a journey send step keeps them
    # (campaigns/step_forms.py edits it); empty: the default plan for the purpose.
    channel_plan = models.JSONField(default=list, blank=True)
    intent_key = models.CharField(max_length=200, blank=True, help_text="Blank: campaign:<id>.")
    scheduled_at = models.DateTimeField(null=True, blank=True, help_text="Empty: send when started.")
    send_in_local_time = models.BooleanField(default=False, help_text="Send at scheduled_at's clock time in each contact's timezone.")
    local_time_passed = models.CharField(
        "where that time has passed", max_length=10, choices=LocalTimePassed.choices,
        default=LocalTimePassed.SEND_NOW, db_default=LocalTimePassed.SEND_NOW)
    throttle_per_minute = models.PositiveIntegerField(null=True, blank=True)
    expires_after = models.DurationField(
        null=True, blank=True, help_text="A recipient not sent this long after its send time is left out (expired).")
    holdout_percent = models.PositiveSmallIntegerField(default=0)

    # A/B test: with two or more variants, `test_percent` of the audience is split by weight; the
    # rest wait until the test period ends and the winner (or the fallback) goes to them.
    test_percent = models.PositiveSmallIntegerField(default=100, db_default=100)
    test_period = models.DurationField(null=True, blank=True)
    test_metric = models.CharField(max_length=10, choices=TestMetric.choices, default=TestMetric.CLICKS,
                                   db_default=TestMetric.CLICKS)
    test_fallback = models.CharField("when no variant wins", max_length=15, choices=TestFallback.choices,
                                     default=TestFallback.CONTROL, db_default=TestFallback.CONTROL)
    test_ends_at = models.DateTimeField(null=True, blank=True, editable=False)
    winner = models.ForeignKey("CampaignVariant", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+", editable=False)
    winner_chosen_at = models.DateTimeField(null=True, blank=True, editable=False)

    # Ownership and success, required to start.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="owned_campaigns")
    objective = models.TextField(blank=True)
    lifecycle_stage = models.ForeignKey(LifecycleStage, null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="+")
    goal_event = models.CharField(max_length=100, blank=True, help_text="The event that counts as success.")
    goal_window = models.DurationField(null=True, blank=True, help_text="How long after the send the goal counts.")

    # A follow-up's audience is drawn from an earlier campaign's recipients.
    follow_up_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="follow_ups")
    follow_up_when = models.CharField(max_length=15, choices=FollowUpWhen.choices, blank=True)
    follow_up_after = models.DurationField(null=True, blank=True)

    # Auto-pause thresholds, as fractions (0.05 = 5%); blank: settings.OMNI_AUTO_PAUSE's.
    max_bounce_rate = models.FloatField(null=True, blank=True)
    max_complaint_rate = models.FloatField(null=True, blank=True)
    max_opt_out_rate = models.FloatField(null=True, blank=True)
    max_failure_rate = models.FloatField(null=True, blank=True)
    min_engagement_rate = models.FloatField(null=True, blank=True)
    auto_pause_min_sample = models.PositiveIntegerField(null=True, blank=True)
    auto_paused_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When a person last resumed it: auto-pause judges only the sends made since, so the breach
    # it paused for is not counted again.
    watched_since = models.DateTimeField(null=True, blank=True, editable=False)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    paused_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    # The start runs in the background (campaigns/campaign_start_requests.py): who asked for the
    # last one and when, when it was last handed to the workers and how many times, why it was
    # refused or failed (in words, shown on its page until the next request), and what it did.
    start_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    start_requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                           on_delete=models.SET_NULL, related_name="+", editable=False)
    start_enqueued_at = models.DateTimeField(null=True, blank=True, editable=False)
    start_attempts = models.PositiveSmallIntegerField(default=0, db_default=0, editable=False)
    start_refused_problems = models.JSONField(default=list, blank=True, editable=False)
    # StartSummary.as_data() of the start: audience, pending, holdout, waiting_for_winner, skipped.
    start_summary = models.JSONField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("approve_campaign", "Can approve campaigns")]

    def __str__(self):
        return self.name


class CampaignVariant(models.Model):
    """One version of a campaign's message in an A/B test: its template, its weight in the
    split, and the TemplateVersion pinned when the campaign started."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="variants")
    name = models.CharField(max_length=50)
    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="+")
    weight = models.PositiveSmallIntegerField(default=50)
    position = models.PositiveSmallIntegerField(default=0)
    template_version = models.ForeignKey(TemplateVersion, null=True, blank=True,
                                         on_delete=models.PROTECT, related_name="+", editable=False)

    class Meta:
        ordering = ["campaign", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["campaign", "name"], name="variant_unique_name")]

    def __str__(self):
        return f"{self.campaign}: {self.name}"


class JourneyStepVisit(models.Model):
    """One step an enrollment ran: the provenance of what a journey did, as a row.

    A send step's visit points at the Message it produced, so "why did this contact get this?"
    reads downward: message <- visit -> enrollment -> journey. `visit_number` counts the
    enrollment's steps (1, 2, ...), the same count that makes the message's idempotency key.
    """

    # Covered by visit_unique_number and visit_journey_step, which lead with them.
    enrollment = models.ForeignKey(Enrollment, on_delete=models.PROTECT, related_name="visits", db_index=False)
    journey = models.ForeignKey(Journey, on_delete=models.PROTECT, related_name="+", db_index=False)
    journey_version = models.ForeignKey(
        JourneyVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="visits"
    )
    # The step of that version, by its key (a draft may rename or remove the step later).
    step_key = models.CharField(max_length=50)
    step_kind = models.CharField(max_length=10, choices=StepKind.choices)
    visit_number = models.PositiveIntegerField()
    message = models.OneToOneField(
        "channels.Message", null=True, blank=True, on_delete=models.PROTECT, related_name="journey_visit"
    )
    outcome = models.CharField(max_length=100, blank=True)
    visited_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["enrollment", "visit_number"]
        constraints = [
            models.UniqueConstraint(fields=["enrollment", "visit_number"], name="visit_unique_number"),
        ]
        indexes = [models.Index(fields=["journey", "step_key", "visited_at"], name="visit_journey_step")]

    def __str__(self):
        return f"{self.enrollment} visit {self.visit_number}: {self.step_key} ({self.outcome})"


class RecipientOutcome(models.TextChoices):
    PENDING = "pending", "Not sent yet"
    SENT = "sent", "Message created"
    HOLDOUT = "holdout", "Held out (control group)"
    SKIPPED = "skipped", "Left out"


class CampaignRecipient(models.Model):
    """One contact of a campaign's audience: the variant or holdout drawn, and the message sent
    or why the contact was left out. The campaign's provenance, as rows results can count.

    Pending recipients with a `send_at` are due then; those of an A/B test's rest wait with no
    `send_at` (and no variant) until the winner is chosen."""

    # No index of its own: recipient_unique_contact and recipient_campaign_outcome lead with it,
    # and each index is written three times per recipient (the start, the claim, the send).
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="recipients", db_index=False)
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="campaign_recipients")
    variant = models.ForeignKey(CampaignVariant, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="recipients")
    # In the A/B test's share of the audience (the rates are counted over these).
    in_test = models.BooleanField(default=False, db_default=False)
    outcome = models.CharField(max_length=10, choices=RecipientOutcome.choices, default=RecipientOutcome.PENDING)
    message = models.OneToOneField(
        "channels.Message", null=True, blank=True, on_delete=models.PROTECT, related_name="campaign_recipient"
    )
    skip_reason = models.CharField(max_length=100, blank=True)
    send_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    quarantined_at = models.DateTimeField(null=True, blank=True)
    quarantine_reason = models.TextField(blank=True, default="", db_default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "contact"], name="recipient_unique_contact"),
        ]
        indexes = [
            models.Index(fields=["campaign", "outcome", "variant"], name="recipient_campaign_outcome"),
            # The fan-out's claim: pending recipients by send time that no worker holds, so a
            # claimed batch leaves the index and the next claim does not step over it.
            models.Index(fields=["send_at", "id"], name="recipient_due",
                         condition=Q(outcome="pending", send_at__isnull=False, quarantined_at__isnull=True,
                                     claimed_at__isnull=True)),
            # The throttle's count of what a campaign claimed in the last minute
            # (campaign_sending.RecipientClaims): a row still claimed by its claimed_at, a sent one
            # (the send clears claimed_at) by its decided_at. Without it the count reads every
            # recipient of the campaign, every tick.
            models.Index(F("campaign"), Coalesce("claimed_at", "decided_at"), name="recipient_claimed_or_sent",
                         condition=Q(claimed_at__isnull=False) | Q(outcome="sent")),
        ]

    def __str__(self):
        return f"{self.contact} in {self.campaign} ({self.outcome})"
