from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q

from omni.lib.admin import ReadOnlyAdminMixin, ReadOnlyInline

from . import actions
from .models import (
    LIVE_ENROLLMENT_STATES,
    Campaign,
    CampaignRecipient,
    Enrollment,
    Journey,
    JourneyStep,
    JourneyStepVisit,
)


class JourneyStepInline(admin.StackedInline):
    model = JourneyStep
    extra = 0
    ordering = ["position"]
    autocomplete_fields = ["template"]
    fields = [
        ("position", "key", "kind"),
        "config",
        ("template", "purpose", "urgency"),
        "channel_plan",
        "intent_key",
        ("next_step", "else_step"),
    ]

    def get_formset(self, request, obj=None, **kwargs):
        self._journey = obj
        return super().get_formset(request, obj, **kwargs)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        # A step can only lead to a step of its own journey (saved ones: add a step, save,
        # then point at it).
        if db_field.name in ("next_step", "else_step"):
            journey = getattr(self, "_journey", None)
            kwargs["queryset"] = (
                JourneyStep.objects.filter(journey=journey).order_by("position")
                if journey is not None and journey.pk else JourneyStep.objects.none()
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(Journey)
class JourneyAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "trigger_type", "trigger_event", "live_enrollments", "updated_at"]
    list_filter = ["status", "trigger_type"]
    search_fields = ["name", "slug", "trigger_event", "description"]
    prepopulated_fields = {"slug": ["name"]}
    autocomplete_fields = ["trigger_segment"]
    # Status moves only through the actions below, which validate the steps and audit.
    readonly_fields = ["status", "created_by", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "description", "status"]}),
        ("Trigger", {"fields": ["trigger_type", "trigger_event", "trigger_conditions", "trigger_segment"]}),
        ("Goal and re-entry", {"fields": ["goal_event", "reentry", "reentry_after_seconds"]}),
        ("Record", {"fields": ["created_by", "created_at", "updated_at"]}),
    ]
    inlines = [JourneyStepInline]
    actions = ["activate", "pause", "resume"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            live_enrollment_count=Count("enrollments", filter=Q(enrollments__state__in=LIVE_ENROLLMENT_STATES))
        )

    @admin.display(description="in the journey now", ordering="live_enrollment_count")
    def live_enrollments(self, obj):
        return obj.live_enrollment_count

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

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


@admin.register(JourneyStep)
class JourneyStepAdmin(admin.ModelAdmin):
    """Steps are edited on their journey's page; this list finds them across journeys."""

    list_display = ["journey", "position", "key", "kind", "template", "next_step", "else_step"]
    list_filter = ["kind", "journey"]
    search_fields = ["key", "journey__name", "journey__slug"]
    list_select_related = ["journey", "template", "next_step", "else_step"]
    autocomplete_fields = ["journey", "template", "next_step", "else_step"]


class JourneyStepVisitInline(ReadOnlyInline):
    """Every step the enrollment ran, and the message each send step made."""

    model = JourneyStepVisit
    fields = ["visit_number", "step_key", "step_kind", "journey_version", "outcome", "message", "visited_at"]
    ordering = ["visit_number"]
    show_change_link = False


@admin.register(Enrollment)
class EnrollmentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Enrollments move only through the orchestration tick; pause the journey to hold them."""

    list_display = ["contact", "journey", "state", "current_step", "next_run_at", "steps_taken", "entered_at",
                    "ended_at", "end_reason"]
    list_filter = ["state", "journey", "end_reason"]
    search_fields = ["contact__email", "contact__phone", "contact__external_id", "journey__name"]
    # JourneyStep.__str__ names its journey.
    list_select_related = ["contact", "journey", "current_step__journey"]
    date_hierarchy = "entered_at"
    inlines = [JourneyStepVisitInline]


@admin.register(CampaignRecipient)
class CampaignRecipientAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Who a campaign reached, with the variant or holdout drawn and the message sent or why not."""

    list_display = ["campaign", "contact", "variant", "outcome", "message", "skip_reason", "created_at"]
    list_filter = ["outcome", "campaign", "variant"]
    search_fields = ["contact__email", "contact__phone", "contact__external_id", "campaign__name"]
    list_select_related = ["campaign", "contact", "message__contact"]


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "template", "segment", "purpose", "scheduled_at", "approved_by", "created_at"]
    list_filter = ["status", "purpose", "urgency"]
    search_fields = ["name", "intent_key", "template__key", "segment__name"]
    list_select_related = ["template", "segment", "approved_by"]
    autocomplete_fields = ["template", "segment"]
    # Approval and sending have their own permission and steps; nobody types them in.
    readonly_fields = ["status", "created_by", "approved_by", "approved_at", "started_at", "finished_at",
                      "paused_reason", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "status", "template", "segment", ("purpose", "urgency"), "channel_plan",
                           "intent_key"]}),
        ("Schedule", {"fields": ["scheduled_at", "send_in_local_time", "throttle_per_minute"]}),
        ("Experiment", {"fields": ["holdout_percent", "variants"]}),
        ("Record", {"fields": ["created_by", "approved_by", "approved_at", "started_at", "finished_at",
                               "paused_reason", "created_at", "updated_at"]}),
    ]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
