from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, F, Q
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from django.utils.timezone import localtime
from unfold.forms import ActionForm

from omni.choices import Urgency
from omni.lib.admin import ModelAdmin, OwnedByCreatorMixin, ReadOnlyAdminMixin, ReadOnlyInline
from omni.lib.quarantine import QuarantineAdminMixin, QuarantinedFilter

from . import actions, journey_testing
from . import campaign_admin  # noqa: F401 (registers CampaignAdmin)
from .builder_admin import JourneyBuilderMixin
from .diagram import duration_words
from .diagram_admin import EnrollmentsAtStepAdminMixin, JourneyDiagramAdminMixin
from .enrollment_context import context_sections
from .journey_page import page_draft
from .journey_approval_admin import JourneyApprovalAdminMixin
from .journey_testing_admin import JourneyTestingAdminMixin
from .models import (
    LIVE_ENROLLMENT_STATES,
    CampaignRecipient,
    Enrollment,
    EnrollmentState,
    Journey,
    JourneyStep,
    JourneyStepVisit,
    JourneyVersion,
    StepKind,
    TriggerType,
)
from .trigger_conditions import read_conditions


def describe_step(step: dict) -> str:
    """One line a marketer can read for a step of a published version."""
    key, kind, config = step["key"], step["kind"], step.get("config") or {}
    otherwise = step.get("else") or "the end"
    if kind == StepKind.SEND:
        channels = ", then ".join(entry.get("channel", "?") for entry in step.get("channel_plan") or [])
        text = f"{key}: send {step.get('template_key')} v{step.get('template_version_number')} by {channels}"
        if step.get("urgency") not in (None, "", Urgency.NORMAL):
            text += f", {step['urgency']} urgency"
    elif kind == StepKind.WAIT:
        text = f"{key}: wait {duration_words(config.get('seconds'))}"
    elif kind == StepKind.WAIT_UNTIL:
        days = f" on {', '.join(config['days'])}" if config.get("days") else ""
        text = f"{key}: wait until {config.get('time')}{days}, contact's time"
    elif kind == StepKind.WAIT_DATE:
        source = (f"attribute {config['attribute']}" if "attribute" in config
                  else f"trigger property {config.get('property')}")
        offset = config.get("offset_seconds", 0)
        when = f"{duration_words(abs(offset))} {'before' if offset < 0 else 'after'}" if offset else "at"
        text = f"{key}: wait until {when} {source} (without it, go to {step.get('else') or 'the next step'})"
    elif kind == StepKind.WAIT_EVENT:
        what = (f"event {config.get('event')}" if "event" in config
                else f"{config.get('engagement')} of {config.get('step')}")
        text = (f"{key}: wait for {what}, at most {duration_words(config.get('timeout_seconds'))}, "
                f"then go to {step.get('else') or 'the next step'}")
    elif kind == StepKind.CONDITION:
        check = config.get("check", "engaged")
        if check == "attribute":
            text = f"{key}: if attribute {config.get('name')} {_comparison(config)}"
        elif check == "event":
            within = f"in the last {config['within_days']} days" if "within_days" in config else "since entering"
            text = f"{key}: if did {config.get('name')} {within}"
        elif check == "webhook":
            text = f"{key}: if {config.get('step')}'s answer {config.get('name')} {_comparison(config)}"
        else:
            text = f"{key}: if {config.get('step')} {check}"
        text += f", else go to {otherwise}"
    elif kind == StepKind.SPLIT:
        total = sum(path.get("weight", 0) for path in config.get("paths") or []) or 1
        text = f"{key}: split " + ", ".join(
            f"{path.get('name')} {100 * path.get('weight', 0) / total:.0f}% → {path.get('step') or 'next'}"
            for path in config.get("paths") or [])
    elif kind == StepKind.UPDATE:
        if "lifecycle_stage" in config:
            text = f"{key}: set lifecycle stage to {config['lifecycle_stage']}"
        else:
            text = f"{key}: set attribute {config.get('attribute')} to {config.get('value')!r}"
    elif kind == StepKind.WEBHOOK:
        text = (f"{key}: call webhook {config.get('endpoint')}, wait at most "
                f"{duration_words(config.get('timeout_seconds'))} for "
                f"its answer; without one, go to {step.get('else') or 'the next step'}")
    else:
        text = f"{key}: exit"
    if step.get("end"):
        return text + " → the end"
    return text + (f" → {step['next']}" if step.get("next") else "")


def describe_trigger(version: JourneyVersion) -> str:
    """One line a marketer can read for what enrolls contacts in a published version."""
    if version.trigger_type == TriggerType.EVENT:
        text = f"the event {version.trigger_event}"
        conditions = [c for c in read_conditions(version.trigger_conditions) if isinstance(c, dict)]
        if conditions:
            text += " where " + " and ".join(_describe_condition(c) for c in conditions)
        if version.trigger_max_age_seconds is not None:
            text += f", at most {duration_words(version.trigger_max_age_seconds)} old"
        if version.trigger_date_property:
            text += f"; the first step {_describe_moment(version)} its {version.trigger_date_property}"
        return text
    if version.trigger_type == TriggerType.DATE_ATTRIBUTE:
        text = f"{_describe_moment(version)} the contact's {version.trigger_date_attribute}"
        return text[0].upper() + text[1:]
    return version.get_trigger_type_display()


def _describe_condition(condition: dict) -> str:
    return f"{condition.get('property')} {_comparison(condition)}"


def _describe_moment(version: JourneyVersion) -> str:
    days = version.trigger_date_offset_days or 0
    when = "on" if not days else f"{abs(days)} day{'' if abs(days) == 1 else 's'} {'before' if days < 0 else 'after'}"
    at = f"at {version.trigger_date_time:%H:%M} local time " if version.trigger_date_time else ""
    return f"{at}{when}"


def _comparison(config: dict) -> str:
    if "equals" in config:
        return f"= {config['equals']!r}"
    words = str(config.get("operator", "")).replace("_", " ")
    if "value_to" in config:
        return f"{words} {config.get('value')!r} and {config['value_to']!r}"
    return f"{words} {config['value']!r}" if "value" in config else words


class JourneyVersionInline(ReadOnlyInline):
    """The published versions, newest first: what each runs and how many contacts run on it now."""

    model = JourneyVersion
    fields = ["number", "published_at", "published_by", "contacts_on_it", "trigger", "on_reply", "what_it_runs"]
    readonly_fields = fields
    ordering = ["-number"]
    show_change_link = False
    verbose_name = "published version"

    def has_view_permission(self, request, obj=None):
        # Versions are part of their journey: whoever may see the journey sees them.
        return request.user.has_perm("campaigns.view_journey") or request.user.has_perm("campaigns.change_journey")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("journey", "published_by").annotate(
            contacts_in_flight=Count("enrollments", filter=Q(enrollments__state__in=LIVE_ENROLLMENT_STATES))
        )

    @admin.display(description="contacts on it now")
    def contacts_on_it(self, version):
        return version.contacts_in_flight

    @admin.display(description="enrolls on")
    def trigger(self, version):
        return describe_trigger(version)

    @admin.display(description="steps")
    def what_it_runs(self, version):
        return format_html("<ol>{}</ol>", format_html_join("", "<li>{}</li>", ((describe_step(s),) for s in version.steps)))


@admin.register(Journey)
class JourneyAdmin(OwnedByCreatorMixin, JourneyBuilderMixin, JourneyApprovalAdminMixin, JourneyDiagramAdminMixin,
                   JourneyTestingAdminMixin, ModelAdmin):
    list_display = ["name", "status", "live_version_number", "owner", "lifecycle_stage", "objective_line",
                    "goal_event", "trigger_type", "trigger_event", "live_enrollments", "updated_at"]
    list_select_related = ["owner", "lifecycle_stage"]
    list_filter = ["status", "trigger_type", "lifecycle_stage"]
    search_fields = ["name", "slug", "trigger_event", "description"]
    prepopulated_fields = {"slug": ["name"]}
    autocomplete_fields = ["trigger_segment"]
    # Status moves only through the actions below, which validate the steps and audit.
    readonly_fields = ["status", "versions_state", "created_by", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "description", "status", "draft_revision_seen"]}),
        ("Versions", {
            "fields": ["versions_state"],
            "description": "Contacts run on the published version they entered on. Editing the fields and draft "
                           "steps (under the form) changes nothing for them until you choose \"Publish changes\" in the "
                           "journey list; new enrollments then start on the new version, and \"Move contacts to "
                           "the latest version\" moves those already in the journey.",
        }),
        ("Trigger", {"fields": ["trigger_type", "trigger_event", "trigger_conditions", "trigger_max_age_seconds",
                                "trigger_segment"]}),
        ("Date", {
            "fields": ["trigger_date_attribute", "trigger_date_property", "trigger_date_offset_days",
                       "trigger_date_time"],
            "description": "When a date sets the moment: the contact's date attribute (the trigger \"A date "
                           "attribute\"), or a date in the trigger event's properties (an event trigger, whose "
                           "contact then waits for the moment before the first step).",
        }),
        ("Ownership and goal", {
            "fields": ["owner", "objective", "lifecycle_stage", "goal_event"],
            "description": "Who answers for the journey, what it is for, whom it is for and what counts as its "
                           "success: all four are needed to activate it.",
        }),
        ("Re-entry", {"fields": ["reentry", "reentry_after_seconds"]}),
        ("Replies", {"fields": ["on_reply"]}),
        ("Record", {"fields": ["created_by", "created_at", "updated_at"]}),
    ]
    # The draft steps are edited in the builder, below the form (campaigns.builder_admin).
    inlines = [JourneyVersionInline]
    actions = ["activate", "start_testing", "pause", "resume", "publish_changes", "move_to_latest_version", "clone"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            live_enrollment_count=Count("enrollments", filter=Q(enrollments__state__in=LIVE_ENROLLMENT_STATES)),
            live_version_number=F("live_version__number"),
        )

    @admin.display(description="live version", ordering="live_version_number")
    def live_version_number(self, obj):
        return obj.live_version_number or "not published"

    @admin.display(description="published version")
    def versions_state(self, obj):
        if obj is None or obj.pk is None or obj.live_version_id is None:
            return "Not published yet: activating the journey publishes version 1."
        changes = ("The draft below has unpublished changes." if actions.has_unpublished_changes(obj, page_draft(obj))
                   else "The draft below is the same as this version.")
        return f"New enrollments start on version {obj.live_version.number}. {changes}"

    @admin.display(description="in the journey now", ordering="live_enrollment_count")
    def live_enrollments(self, obj):
        return obj.live_enrollment_count

    @admin.display(description="objective")
    def objective_line(self, obj):
        return Truncator(obj.objective).chars(80)

    def _apply(self, request, queryset, action, verb):
        for journey in queryset:
            try:
                action(journey, actor=request.user)
            except ValidationError as exc:
                messages.error(request, f"{journey.name} was not {verb}: {' '.join(exc.messages)}")
            else:
                messages.success(request, f"{journey.name} {verb}.")

    @admin.action(description="Activate", permissions=["change"])
    def activate(self, request, queryset):
        self._apply(request, queryset, actions.activate_journey, "activated")

    @admin.action(description="Pause", permissions=["change"])
    def pause(self, request, queryset):
        self._apply(request, queryset, actions.pause_journey, "paused")

    @admin.action(description="Resume", permissions=["change"])
    def resume(self, request, queryset):
        self._apply(request, queryset, actions.resume_journey, "resumed")

    @admin.action(description="Publish changes", permissions=["change"])
    def publish_changes(self, request, queryset):
        for journey in queryset:
            try:
                version = actions.publish_journey(journey, actor=request.user)
            except ValidationError as exc:
                messages.error(request, f"{journey.name}: changes not published. {' '.join(exc.messages)}")
                continue
            staying = journey.enrollments.filter(state__in=LIVE_ENROLLMENT_STATES).exclude(journey_version=version)
            messages.success(
                request,
                f"{journey.name}: version {version.number} published; new enrollments start on it. "
                f"{staying.count()} contact(s) in the journey stay on their version until you move them "
                f"(\"Move contacts to the latest version\").",
            )

    @admin.action(description="Move contacts to the latest version", permissions=["change"])
    def move_to_latest_version(self, request, queryset):
        for journey in queryset:
            try:
                moved = actions.move_to_latest_version(journey, actor=request.user)
            except ValidationError as exc:
                messages.error(request, f"{journey.name}: {' '.join(exc.messages)}")
            else:
                messages.success(request, f"{journey.name}: {moved} contact(s) moved to version "
                                          f"{journey.live_version.number}.")


@admin.register(JourneyStep)
class JourneyStepAdmin(ModelAdmin):
    """Steps are edited in their journey's builder; this list finds them across journeys, and a
    step's page is its builder form."""

    list_display = ["journey", "position", "key", "kind", "template", "next_step", "else_step"]
    list_filter = ["kind", "journey"]
    search_fields = ["key", "journey__name", "journey__slug"]
    list_select_related = ["journey", "template", "next_step__journey", "else_step__journey"]

    fields = ["journey", "key", "kind", "in_words", "edit_in_builder"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False  # through "Add step" on the journey's page

    @admin.display(description="the step")
    def in_words(self, step):
        return describe_step({"key": step.key, "kind": step.kind, "config": step.config,
                              "template_key": step.template.key if step.template_id else "",
                              "template_version_number": "(latest)", "channel_plan": step.channel_plan,
                              "urgency": step.urgency, "next": step.next_step.key if step.next_step_id else None,
                              "else": step.else_step.key if step.else_step_id else None, "end": step.ends})

    @admin.display(description="edit")
    def edit_in_builder(self, step):
        url = reverse("admin:campaigns_journey_step_change", args=[step.journey_id, step.pk])
        return format_html('<a class="underline" href="{}">Edit this step in its journey\'s builder</a>', url)


class JourneyStepVisitInline(ReadOnlyInline):
    """Every step the enrollment ran, and the message each send step made."""

    model = JourneyStepVisit
    fields = ["visit_number", "step_key", "step_kind", "version_number", "outcome", "message", "visited_at"]
    readonly_fields = ["version_number"]
    ordering = ["visit_number"]
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(version_number=F("journey_version__number"))

    @admin.display(description="journey version")
    def version_number(self, visit):
        return visit.version_number


class EnrollmentActionForm(ActionForm):
    """The action bar with a box for the reason a pause or resume is made for."""

    reason = forms.CharField(
        label="", required=False, max_length=200,
        widget=forms.TextInput(attrs={
            "placeholder": "Reason (pause, resume)", "aria-label": "Reason for pausing or resuming",
            "class": "bg-white/20 font-medium px-2 py-1 rounded-default text-current placeholder:text-white/70 "
                     "lg:w-72",
        }),
    )


# How many refused enrollments a message names before it just counts the rest.
NAMED_IN_MESSAGE = 5


@admin.register(Enrollment)
class EnrollmentAdmin(EnrollmentsAtStepAdminMixin, QuarantineAdminMixin, ReadOnlyAdminMixin, ModelAdmin):
    """Enrollments move through the orchestration tick; pause the journey to hold all of them, or
    pause and resume selected ones here (with a reason; audited)."""

    list_display = ["contact", "test_contact", "journey", "version_number", "state", "pause", "current_step_key",
                    "waiting_for", "next_run_at", "steps_taken", "entered_at", "ended_at", "end_reason",
                    "quarantine_reason"]
    list_filter = ["state", QuarantinedFilter, "journey", "end_reason",
                   ("contact__is_test", admin.BooleanFieldListFilter)]
    actions = ["retry_quarantined", "pause_selected", "resume_selected", "skip_wait"]
    # Enrollment.context is shown as labelled values (context_shown), never as JSON.
    readonly_fields = ["context_shown"]
    fieldsets = [
        (None, {"fields": ["journey", "journey_version", "contact", "state", "current_step_key", "next_run_at",
                           "waiting_for", "woken_at", "steps_taken", "entered_at", "ended_at", "end_reason"]}),
        ("What it keeps", {"fields": ["context_shown", "trigger_key", "trigger_event"]}),
        ("Paused", {"fields": ["paused_at", "paused_by_label", "pause_reason", "paused_for_conversation_id"]}),
        ("Processing", {"fields": ["claimed_at", "loop_ticks", "quarantined_at", "quarantine_reason"]}),
    ]
    action_form = EnrollmentActionForm
    # A retried looping enrollment gets MAX_LOOPING_TICKS fresh ticks.
    quarantine_retry_fields = {"loop_ticks": 0}
    search_fields = ["contact__email", "contact__phone", "contact__external_id", "journey__name"]
    list_select_related = ["contact", "journey"]
    date_hierarchy = "entered_at"
    inlines = [JourneyStepVisitInline]

    def get_queryset(self, request):
        # The number only: a version's steps are not needed to list its enrollments.
        return super().get_queryset(request).annotate(version_number=F("journey_version__number"))

    @admin.display(description="version", ordering="version_number")
    def version_number(self, enrollment):
        return enrollment.version_number

    @admin.display(description="paused")
    def pause(self, enrollment):
        if enrollment.state != EnrollmentState.PAUSED or enrollment.paused_at is None:
            return ""
        by = (f"conversation {enrollment.paused_for_conversation_id}" if enrollment.paused_for_conversation_id
              else enrollment.paused_by_label)
        when = date_format(localtime(enrollment.paused_at), "DATETIME_FORMAT")
        return f"{when} by {by}: {enrollment.pause_reason}"

    def has_pause_permission(self, request):
        return request.user.has_perm("campaigns.pause_enrollment")

    @admin.display(description="test", boolean=True, ordering="contact__is_test")
    def test_contact(self, enrollment):
        return enrollment.contact.is_test

    @admin.display(description="what it keeps")
    def context_shown(self, enrollment):
        sections = context_sections(enrollment.context)
        if not sections:
            return "Nothing yet."
        return format_html_join("", '<div class="enrollment-context"><h3 class="font-semibold">{}</h3>'
                                    '<table><tbody>{}</tbody></table></div>',
                                ((section.title, format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", (
                                    (row.label, _message_link(row)) for row in section.rows)))
                                 for section in sections))

    def has_skip_wait_permission(self, request):
        return request.user.has_perm("campaigns.change_journey")

    @admin.action(description="Skip the wait of selected test contacts' enrollments", permissions=["skip_wait"])
    def skip_wait(self, request, queryset):
        skipped, refusals = 0, []
        for enrollment in queryset.select_related("contact", "journey"):
            try:
                journey_testing.skip_wait(enrollment, actor=request.user)
            except ValidationError as exc:
                refusals.append(" ".join(exc.messages))
            else:
                skipped += 1
        if skipped:
            self.message_user(request, f"{skipped} wait(s) skipped: the next tick runs those steps.", messages.SUCCESS)
        for refusal in refusals[:NAMED_IN_MESSAGE]:
            self.message_user(request, refusal, messages.WARNING)

    @admin.action(description="Pause selected enrollments (type the reason)", permissions=["pause"])
    def pause_selected(self, request, queryset):
        try:
            paused, refused = actions.pause_enrollments(queryset.values_list("pk", flat=True), actor=request.user,
                                                        reason=request.POST.get("reason", ""))
        except ValidationError as exc:
            self.message_user(request, f"Nothing was paused. {' '.join(exc.messages)}", messages.ERROR)
            return
        if paused:
            self.message_user(request, f"{len(paused)} enrollment(s) paused: each stays at its step until resumed "
                                       f"here; a conversation closing does not resume them.", messages.SUCCESS)
        if refused:
            self.message_user(request, f"{len(refused)} not paused, being no longer active: "
                                       f"{_named(refused)}.", messages.WARNING)

    @admin.action(description="Resume selected enrollments", permissions=["pause"])
    def resume_selected(self, request, queryset):
        resumed, refused = actions.resume_enrollments(queryset.values_list("pk", flat=True), actor=request.user,
                                                      reason=request.POST.get("reason", ""))
        if resumed:
            self.message_user(request, f"{len(resumed)} enrollment(s) resumed: each runs its step at the next tick "
                                       f"if its time has come.", messages.SUCCESS)
        if refused:
            self.message_user(request, f"{len(refused)} not resumed, not being paused: {_named(refused)}.",
                              messages.WARNING)


def _message_link(row):
    if row.message_id is None:
        return row.value
    return format_html('<a href="{}">{}</a>', reverse("admin:channels_message_change", args=[row.message_id]),
                       row.value)


def _named(enrollments) -> str:
    named = "; ".join(str(e) for e in enrollments[:NAMED_IN_MESSAGE])
    more = len(enrollments) - NAMED_IN_MESSAGE
    return named + (f" and {more} more" if more > 0 else "")


@admin.register(CampaignRecipient)
class CampaignRecipientAdmin(QuarantineAdminMixin, ReadOnlyAdminMixin, ModelAdmin):
    """Who a campaign reached, with the variant or holdout drawn and the message sent or why not.
    A recipient the fan-out could not send is quarantined; "Retry" puts it back in its way."""

    list_display = ["campaign", "contact", "variant", "outcome", "message", "skip_reason", "quarantine_reason",
                    "created_at"]
    list_filter = ["outcome", QuarantinedFilter, "campaign", "variant"]
    actions = ["retry_quarantined"]
    # Claimed again by the next tick (recipient_due holds unclaimed rows only).
    quarantine_retry_fields = {"claimed_at": None}
    search_fields = ["contact__email", "contact__phone", "contact__external_id", "campaign__name"]
    list_select_related = ["campaign", "contact", "message__contact", "variant__campaign"]

