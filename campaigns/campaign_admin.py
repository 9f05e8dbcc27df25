"""The campaign page and list in the admin, for marketers and their approvers.

The form has no JSON: the channel plan as rows (campaigns.step_forms.ChannelPlanFields, as a
journey's send step), durations as a number and a unit, auto-pause thresholds as percentages,
the A/B test's variants as an inline. Once the campaign leaves its draft the form is read-only.
A save from a page read before the campaign last changed (an edit, an approval) is refused,
variants and all, keeping what was typed (omni.lib.admin.RefusesStalePage).
Above the form (campaigns/templatetags/campaign_page.py): what stops it starting, its approval,
its progress, its buttons, and the A/B and health sections.

The buttons are POST-only views here, each permission-checked and calling one plain function
(campaign_start_requests, campaign_start, campaign_approval, campaign_sending), which audits; a
refusal comes back as a message on the page. Start only asks for the start, which a worker runs
(campaign_start_requests): the page shows it starting, then started. Who may press what:
- change_campaign (marketers): start, pause, resume, cancel, clone, test send, follow-up,
  request approval;
- approve_campaign with view_campaign (marketing approvers): approve.
"""
from datetime import datetime, timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import capfirst

from contacts.data_types import definitions
from omni.choices import Channel
from omni.lib.admin import AwaitingApprovalFilter, ModelAdmin, OwnedByCreatorMixin, RefusesStalePage, TabularInline
from omni.lib.approval import ApprovalRefused, when, who

from . import campaign_approval, campaign_progress, campaign_sending, campaign_start, campaign_start_requests
from .campaign_state import CampaignLocked, CampaignMoveRefused, locked_words, save_draft
from .diagram import duration_words
from .models import Campaign, CampaignStatus, CampaignVariant, FollowUpWhen
from .step_forms import ChannelPlanFields, DatalistInput, DurationField, UNITS, style

# The model's durations, typed as a number and a unit.
DURATION_FIELDS = ("expires_after", "test_period", "goal_window")
# The auto-pause thresholds, kept as fractions and typed as percentages.
PERCENT_FIELDS = ("max_bounce_rate", "max_complaint_rate", "max_opt_out_rate", "max_failure_rate",
                  "min_engagement_rate")
# Shares of the audience, typed as whole percentages.
SHARES = [("holdout_percent", "Holdout (%)", "The share of the audience held out as a control group."),
          ("test_percent", "Test share (%)", "With two or more variants: the share of the audience split between "
                                             "them; the rest get the winner after the test period.")]
FOLLOW_UP_FIELDS = ("follow_up_link", "follow_up_when", "follow_up_after_words")
# A draft's revision, as its page read it: every change of a draft sets one of these times (an
# edit or a move updated_at, each approval step its own), so a page that read others is out of date.
REVISION_FIELDS = ("updated_at", "approval_requested_at", "approved_at", "approval_reset_at")


def _locked(campaign) -> bool:
    return campaign is not None and campaign.pk is not None and campaign.status != CampaignStatus.DRAFT


def _shown_instead(entry):
    """On the locked page, a duration or a percentage is shown in words by a method of its own."""
    if isinstance(entry, (list, tuple)):
        return tuple(_shown_instead(name) for name in entry)
    return f"{entry}_shown" if entry in DURATION_FIELDS + PERCENT_FIELDS else entry


def _percent_shown(name: str):
    @admin.display(description=capfirst(f"{Campaign._meta.get_field(name).verbose_name} (%)"))
    def shown(self, campaign):
        value = getattr(campaign, name)
        return "the default in the settings" if value is None else f"{value * 100:g}%"
    return shown


def _duration_shown(name: str):
    @admin.display(description=capfirst(Campaign._meta.get_field(name).verbose_name))
    def shown(self, campaign):
        value = getattr(campaign, name)
        return duration_words(int(value.total_seconds())) if value else "—"
    return shown


def channel_plan_words(plan) -> str:
    """A campaign's plan in words: the channels in order and how each gives way to the next."""
    if not plan:
        return "The default plan for its purpose and urgency."
    words = []
    for entry in plan:
        text = Channel(entry["channel"]).label if entry.get("channel") in Channel.values else str(entry.get("channel"))
        if entry.get("fallback_after_seconds"):
            unless = "opened" if entry.get("fallback_unless") == "engaged" else "delivered"
            text += f" (then the next if not {unless} within {duration_words(entry['fallback_after_seconds'])})"
        words.append(text)
    return ", then ".join(words)


def campaign_revision(campaign: Campaign) -> str:
    return "|".join(_instant(getattr(campaign, name)) for name in REVISION_FIELDS)


def _instant(moment) -> str:
    return moment.isoformat() if moment else ""


def changed_since_words(campaign: Campaign, seen: str) -> str:
    """Why a page that read revision `seen` may not save: what changed the campaign since, by
    whom and when (as far as known)."""
    before = dict(zip(REVISION_FIELDS, seen.split("|")))
    changes = []
    if before.get("updated_at") != _instant(campaign.updated_at):
        editor = _editor_since(campaign, before.get("updated_at"))
        changes.append(f"edited{f' by {who(editor)}' if editor else ''} at {when(campaign.updated_at)}")
    for name, did, by in [("approval_requested_at", "approval requested", campaign.approval_requested_by),
                          ("approved_at", "approved", campaign.approved_by),
                          ("approval_reset_at", "approval reset", None)]:
        moment = getattr(campaign, name)
        if moment and before.get(name) != _instant(moment):
            changes.append(f"{did}{f' by {who(by)}' if by else ''} at {when(moment)}")
    return (f"{campaign} was changed since you opened this page{': ' + '; '.join(changes) if changes else ''}. "
            f"Nothing was saved, and what you typed is still below: open the page again to see the campaign as "
            f"it is now, then make your change again.")


def _editor_since(campaign: Campaign, seen_at: str | None):
    """Who saved the campaign's page last, after `seen_at`: the admin's history names them (no
    audit entry does: an edit of a draft is not audited)."""
    try:
        since = datetime.fromisoformat(seen_at)
    except (TypeError, ValueError):
        return None
    entry = (LogEntry.objects.filter(content_type__app_label="campaigns", content_type__model="campaign",
                                     object_id=str(campaign.pk), action_flag=CHANGE, action_time__gte=since)
             .select_related("user").order_by("-action_time").first())
    return entry.user if entry else None


class CampaignForm(RefusesStalePage, ChannelPlanFields, forms.ModelForm):
    """The campaign's own fields, the channel plan as rows, durations and percentages typed as such."""

    revision_field = "revision_seen"
    revision_seen = forms.CharField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = Campaign
        exclude = ["channel_plan", "follow_up_of", "follow_up_when", "follow_up_after"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.update(self.plan_initial(self.instance.channel_plan if self.instance.pk else []))
        self.fields["plan"].help_text = ("The default channel plan for the campaign's purpose and urgency, kept to "
                                         "the channels its templates have, or these channels in order.")
        for name in DURATION_FIELDS:
            if name in self.fields:
                model_field = Campaign._meta.get_field(name)
                self.fields[name] = DurationField(label=capfirst(model_field.verbose_name), required=False,
                                                  help_text=model_field.help_text)
                value = getattr(self.instance, name)
                self.initial[name] = int(value.total_seconds()) if value else None
        for name in PERCENT_FIELDS:
            if name in self.fields:
                self.fields[name] = forms.DecimalField(
                    label=capfirst(f"{Campaign._meta.get_field(name).verbose_name} (%)"), required=False, min_value=0,
                    max_value=100, decimal_places=2,
                    help_text="Blank: the default in the settings (OMNI_AUTO_PAUSE).")
                value = getattr(self.instance, name)
                self.initial[name] = round(value * 100, 2) if value is not None else None
        if "goal_event" in self.fields:
            # The declared events, while a name not declared yet may still be typed.
            self.fields["goal_event"].widget = DatalistInput("campaign-goal-event", definitions().properties)
        for name, label, help_text in SHARES:
            if name in self.fields:
                self.fields[name].validators.append(_at_most_100)
                self.fields[name].widget.attrs.update({"min": 0, "max": 100})
                self.fields[name].label, self.fields[name].help_text = label, help_text
        style(self)

    def clean(self):
        # Typed units into the model's before anything may refuse the form: a refused form is
        # still put into the row and validated as the model's values (a 500 otherwise).
        for name in DURATION_FIELDS:
            if name in self.cleaned_data:
                self.cleaned_data[name] = timedelta(seconds=self.cleaned_data[name]) if self.cleaned_data[name] else None
        for name in PERCENT_FIELDS:
            if self.cleaned_data.get(name) is not None:
                self.cleaned_data[name] = float(self.cleaned_data[name]) / 100
        cleaned = super().clean()
        variant_templates = [variant.template for variant in self.instance.variants.select_related("template")] \
            if self.instance.pk else []
        self.instance.channel_plan = self.check_channel_plan(cleaned.get("template"), *variant_templates)
        return cleaned

    def revision(self, row) -> str:
        return campaign_revision(row)

    def stale_words(self, row, seen) -> str:
        return changed_since_words(row, seen)


class LockedCampaignForm(forms.ModelForm):
    class Meta:
        model = Campaign
        fields = []


def _at_most_100(value):
    if value is not None and value > 100:
        raise ValidationError("At most 100%.")


class CampaignVariantInline(TabularInline):
    """The A/B test's variants. Part of their campaign: whoever may edit the campaign edits them
    while it is a draft; the pinned version is set when it starts."""

    model = CampaignVariant
    fields = ["name", "template", "weight", "pinned_version"]
    readonly_fields = ["pinned_version"]
    extra = 0
    verbose_name = "A/B test variant"
    verbose_name_plural = "A/B test variants (two or more make a test; none: the template above goes to everyone)"

    @admin.display(description="pinned version")
    def pinned_version(self, variant):
        if variant.template_version_id is None:
            return "pinned when the campaign starts"
        return f"{variant.template.key} v{variant.template_version.number}"

    def _editable(self, request, obj):
        return (request.user.has_perm("campaigns.change_campaign")
                and (obj is None or obj.status == CampaignStatus.DRAFT))

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("campaigns.view_campaign") or request.user.has_perm("campaigns.change_campaign")

    def has_add_permission(self, request, obj=None):
        return self._editable(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._editable(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._editable(request, obj)


class FollowUpForm(forms.Form):
    when = forms.ChoiceField(label="send it to the recipients who", choices=FollowUpWhen.choices)
    after = DurationField(label="after", required=True, help_text="How long after they were sent the earlier campaign.")
    name = forms.CharField(required=False, max_length=200, help_text="Blank: the earlier campaign's name, followed up.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["after"].widget.widgets[1].choices = [unit for unit in UNITS if unit[0] != "minutes"]
        style(self)


@admin.register(Campaign)
class CampaignAdmin(OwnedByCreatorMixin, ModelAdmin):
    form = CampaignForm
    change_form_template = "admin/campaigns/campaign/change_form.html"
    list_display = ["name", "status", "owner", "segment", "scheduled_at", "approval", "progress"]
    list_filter = ["status", AwaitingApprovalFilter, "purpose", "urgency", "owner"]
    search_fields = ["name", "intent_key", "template__key", "segment__name"]
    list_select_related = ["owner", "segment", "approved_by", "approval_requested_by"]
    autocomplete_fields = ["template", "segment"]
    inlines = [CampaignVariantInline]
    # Status, approval and sending move through the buttons above the form; nobody types them in.
    record_fields = ["created_by", "start_requested_by", "start_requested_at", "started_at", "finished_at",
                     "paused_reason", "auto_paused_at", "test_ends_at", "winner", "winner_chosen_at", "created_at",
                     "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "status", "template", "segment", ("purpose", "urgency"), "intent_key",
                           "revision_seen"]}),
        ("Channels", {"fields": ["plan", *ChannelPlanFields.plan_row_names()]}),
        ("Schedule", {"fields": ["scheduled_at", ("send_in_local_time", "local_time_passed"), "throttle_per_minute",
                                 "expires_after"]}),
        ("Holdout and A/B test", {
            "fields": ["holdout_percent", "test_percent", "test_period", "test_metric", "test_fallback"],
            "description": "Add the variants under the form. With two or more, the test share is split between "
                           "them by weight; after the test period the variant that wins on the metric (at 95% "
                           "confidence, with enough sends that each variant expects at least five successes "
                           "and five misses) goes to the rest, else what you chose here.",
        }),
        ("Ownership and goal", {
            "fields": ["owner", "objective", "lifecycle_stage", "goal_event", "goal_window"],
            "description": "Who answers for the campaign, what it is for, whom it is for and what counts as its "
                           "success: all are needed to start it.",
        }),
        ("Auto-pause", {
            "fields": [*PERCENT_FIELDS, "auto_pause_min_sample"],
            "description": "The campaign pauses itself when, after the minimum sample, a rate goes above its "
                           "limit or engagement below its floor.",
        }),
        ("Follow-up of", {"fields": list(FOLLOW_UP_FIELDS)}),
        ("Record", {"fields": record_fields}),
    ]

    def get_changelist(self, request, **kwargs):
        base = super().get_changelist(request, **kwargs)

        class CampaignChangeList(base):
            def get_queryset(self, request, exclude_parameters=None):
                return campaign_progress.with_decided_counts(super().get_queryset(request, exclude_parameters))

        return CampaignChangeList

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or obj.follow_up_of_id is None:
            fieldsets = [fieldset for fieldset in fieldsets if fieldset[0] != "Follow-up of"]
        if obj is None:
            fieldsets = [fieldset for fieldset in fieldsets if fieldset[0] != "Record"]
        if self._read_only(request, obj):
            fieldsets = [(title, {**options, "fields": [_shown_instead(entry) for entry in options["fields"]
                                                        if entry != "revision_seen"]})
                         for title, options in fieldsets if title != "Channels"]
            fieldsets.insert(1, ("Channels", {"fields": ["channel_plan_words"]}))
        return fieldsets

    def get_form(self, request, obj=None, **kwargs):
        if self._read_only(request, obj):
            # Nothing to type: not even the plan rows, which a plain ModelForm does not have.
            kwargs["form"] = LockedCampaignForm
        return super().get_form(request, obj, **kwargs)

    def _read_only(self, request, obj) -> bool:
        """The page shows the campaign in words: once it left its draft, and to whoever may only view it."""
        return _locked(obj) or (obj is not None and not self.has_change_permission(request, obj))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if _locked(obj):
            context.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_readonly_fields(self, request, obj=None):
        if self._read_only(request, obj):
            # Locked once it leaves its draft: what it sends is what was approved and started.
            return [name for _, options in self.get_fieldsets(request, obj) for entry in options["fields"]
                    for name in (entry if isinstance(entry, (list, tuple)) else [entry])]
        return ["status", *self.record_fields, *FOLLOW_UP_FIELDS]

    # --- what the list and the read-only page show ---------------------------------------------

    @admin.display(description="approval")
    def approval(self, campaign):
        if campaign.approved_at:
            return f"approved by {campaign.approved_by}"
        if campaign.approval_requested_at:
            return f"awaiting approval (asked by {campaign.approval_requested_by})"
        return "—"

    @admin.display(description="progress")
    def progress(self, campaign):
        total, decided = getattr(campaign, "recipients_total", 0), getattr(campaign, "recipients_decided", 0)
        if not total:
            if campaign.status == CampaignStatus.STARTING:
                return "starting: taking the audience snapshot"
            return "not started" if campaign.status == CampaignStatus.DRAFT else "no recipients"
        percent = 100 * decided // total
        return format_html(
            '<span class="omni-progress-mini"><span class="omni-progress-bar" role="progressbar" aria-valuemin="0" '
            'aria-valuemax="{}" aria-valuenow="{}" aria-label="Recipients decided"><span class="omni-progress-segment '
            'omni-progress-done" style="width: {}%"></span></span>{} of {} ({}%)</span>',
            total, decided, percent, decided, total, percent)

    @admin.display(description="follow-up of")
    def follow_up_link(self, campaign):
        earlier = campaign.follow_up_of
        if earlier is None:
            return "—"
        return format_html('<a class="underline" href="{}">{}</a>',
                           reverse("admin:campaigns_campaign_change", args=[earlier.pk]), earlier.name)

    @admin.display(description="after")
    def follow_up_after_words(self, campaign):
        after = campaign.follow_up_after
        if not after:
            return "—"
        days = after.total_seconds() / 86400
        return f"{days:g} day{'s' if days != 1 else ''}"

    @admin.display(description="channels")
    def channel_plan_words(self, campaign):
        return channel_plan_words(campaign.channel_plan)

    # The locked page's durations and percentages (_shown_instead).
    expires_after_shown = _duration_shown("expires_after")
    test_period_shown = _duration_shown("test_period")
    goal_window_shown = _duration_shown("goal_window")
    max_bounce_rate_shown = _percent_shown("max_bounce_rate")
    max_complaint_rate_shown = _percent_shown("max_complaint_rate")
    max_opt_out_rate_shown = _percent_shown("max_opt_out_rate")
    max_failure_rate_shown = _percent_shown("max_failure_rate")
    min_engagement_rate_shown = _percent_shown("min_engagement_rate")

    class Media:
        css = {"all": ["omni/progress_bar.css"]}

    # --- saving ----------------------------------------------------------------------------------

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            if request.method == "POST" and object_id:
                # A started campaign's page has nothing to save (its form and variants are read-only).
                campaign = self.get_object(request, unquote(object_id))
                if _locked(campaign):
                    raise CampaignLocked(locked_words(campaign, campaign.status))
            return super().changeform_view(request, object_id, form_url, extra_context)
        except CampaignLocked as locked:
            # Raised inside the save's transaction too (save_model), which rolled back: nothing was written.
            messages.error(request, str(locked))
            return HttpResponseRedirect(request.path)

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        # Only what the form edits (and the plan it derives), and only if it is still a draft:
        # a start may have committed since the form was read, and a full save would write its
        # status and start back as they were.
        edited = [field.name for field in Campaign._meta.concrete_fields if field.name in form.fields]
        edited += ["channel_plan"] if "plan" in form.fields else []
        # A save that changes nothing writes nothing, so a colleague's open page stays current
        # (save_related writes if a variant changed).
        obj.unchanged_by_form = all(getattr(form.stored, attname) == getattr(obj, attname)
                                    for attname in (Campaign._meta.get_field(name).attname for name in edited))
        if not obj.unchanged_by_form:
            save_draft(obj, edited)

    def save_related(self, request, form, formsets, change):
        if change and form.instance.unchanged_by_form and any(formset.has_changed() for formset in formsets):
            save_draft(form.instance, [])  # the variants are saved under the draft's lock, as with the form
        super().save_related(request, form, formsets, change)
        if change:
            # The variants are saved by now: an edit that changed what was asked for or approved
            # resets that approval (audited).
            if campaign_approval.reset_if_changed(form.instance, actor=request.user):
                messages.warning(request, "The campaign changed, so its approval request or approval was reset: "
                                          "request approval again.")

    # --- the buttons -----------------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        buttons = [
            ("start", self.start_view), ("pause", self.pause_view), ("resume", self.resume_view),
            ("cancel", self.cancel_view), ("clone", self.clone_view), ("test-send", self.test_send_view),
            ("follow-up", self.follow_up_view), ("approval/request", self.request_approval_view),
            ("approval/approve", self.approve_view),
        ]
        return [
            *(path(f"<int:campaign_id>/{name}/", view(method),
                   name=f"campaigns_campaign_{name.replace('/', '_').replace('-', '_')}")
              for name, method in buttons),
            path("<path:object_id>/progress/", view(self.progress_view), name="campaigns_campaign_progress"),
            *super().get_urls(),
        ]

    def _campaign(self, request, campaign_id, *, permission: str = "change") -> Campaign:
        campaign = get_object_or_404(Campaign, pk=campaign_id)
        allowed = (self.has_change_permission(request, campaign) if permission == "change"
                   else self.has_view_permission(request, campaign)
                   and request.user.has_perm(Campaign.APPROVE_PERMISSION))
        if not allowed:
            raise PermissionDenied
        return campaign

    def _back(self, campaign):
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))

    def _button(self, request, campaign_id, act, *, permission="change"):
        """A POST-only button: `act(campaign)` does it and returns the success message; refusals
        come back as error messages."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        campaign = self._campaign(request, campaign_id, permission=permission)
        try:
            done = act(campaign)
        except campaign_start.CampaignNotReady as not_ready:
            messages.error(request, f"{campaign.name} was not started: " + " ".join(not_ready.problems))
        except ApprovalRefused as refused:
            messages.error(request, " ".join(refused.messages))
        except CampaignMoveRefused as refused:
            messages.error(request, str(refused))
        except ValidationError as refused:
            messages.error(request, " ".join(refused.messages))
        else:
            if isinstance(done, HttpResponseRedirect):
                return done
            messages.success(request, done)
        return self._back(campaign)

    def start_view(self, request, campaign_id):
        def start(campaign):
            campaign_start_requests.request_start(campaign, actor=request.user)
            return (f"{campaign.name} is starting: the audience snapshot is being taken; this page shows when it has "
                    f"started.")
        return self._button(request, campaign_id, start)

    def pause_view(self, request, campaign_id):
        def pause(campaign):
            campaign_sending.pause_campaign(campaign, actor=request.user, reason=request.POST.get("reason", ""))
            return f"{campaign.name} paused: nothing more is sent until you resume it."
        return self._button(request, campaign_id, pause)

    def resume_view(self, request, campaign_id):
        def resume(campaign):
            campaign_sending.resume_campaign(campaign, actor=request.user)
            if campaign.status == CampaignStatus.SCHEDULED:
                return f"{campaign.name} resumed: it is scheduled again and sends from its first send time."
            return f"{campaign.name} resumed: sending goes on at the next tick."
        return self._button(request, campaign_id, resume)

    def cancel_view(self, request, campaign_id):
        if request.method == "GET":
            campaign = self._campaign(request, campaign_id)
            return TemplateResponse(request, "admin/campaigns/campaign/cancel_confirmation.html", {
                **self.admin_site.each_context(request), "opts": self.opts, "campaign": campaign,
                "original": campaign, "title": f"Cancel {campaign.name}?",
            })

        def cancel(campaign):
            stopped = campaign_sending.cancel_campaign(campaign, actor=request.user)
            return (f"{campaign.name} cancelled: {stopped} recipient(s) not sent yet or message(s) not yet queued "
                    f"were stopped.")
        return self._button(request, campaign_id, cancel)

    def clone_view(self, request, campaign_id):
        def clone(campaign):
            copy = campaign_start.clone_campaign(campaign, actor=request.user)
            messages.success(request, f"{campaign.name} cloned: this is the new draft, {copy.name}.")
            return self._back(copy)
        return self._button(request, campaign_id, clone)

    def test_send_view(self, request, campaign_id):
        def test_send(campaign):
            sent = campaign_start.send_test(campaign, actor=request.user)
            if not sent:
                return "No test message was sent: there are no test contacts to send to."
            return f"{len(sent)} test message(s) sent to the test contacts, marked as tests."
        return self._button(request, campaign_id, test_send)

    def follow_up_view(self, request, campaign_id):
        campaign = self._campaign(request, campaign_id)
        form = FollowUpForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            def follow_up(campaign):
                data = form.cleaned_data
                created = campaign_start.create_follow_up(
                    campaign, actor=request.user, when=data["when"], after=timedelta(seconds=data["after"]),
                    name=data["name"])
                messages.success(request, f"Follow-up {created.name} created as a draft: its audience is drawn from "
                                          f"{campaign.name}'s recipients when it starts.")
                return self._back(created)
            return self._button(request, campaign_id, follow_up)
        return TemplateResponse(request, "admin/campaigns/campaign/follow_up.html", {
            **self.admin_site.each_context(request), "opts": self.opts, "campaign": campaign, "original": campaign,
            "form": form, "title": f"Follow up {campaign.name}",
        })

    def request_approval_view(self, request, campaign_id):
        def ask(campaign):
            campaign_approval.request_approval(campaign, actor=request.user)
            return "Approval requested: a marketing approver can now approve this campaign. Editing it withdraws " \
                   "the request."
        return self._button(request, campaign_id, ask)

    def approve_view(self, request, campaign_id):
        def approve(campaign):
            campaign_approval.approve(campaign, actor=request.user, seen_digest=request.POST.get("digest") or "")
            return "Approved: this campaign may now be started. Any edit resets the approval."
        return self._button(request, campaign_id, approve, permission="approve")

    def progress_view(self, request, object_id):
        # Not get_object(): the page asks every few seconds and needs only the counts.
        try:
            campaign = Campaign.objects.get(pk=unquote(object_id))
        except (Campaign.DoesNotExist, ValueError, ValidationError):
            raise Http404("No such campaign.")
        if not self.has_view_permission(request, campaign):
            raise PermissionDenied
        return JsonResponse({"status": campaign.status, "status_label": campaign.get_status_display(),
                             **campaign_progress.campaign_progress(campaign).as_json()})
