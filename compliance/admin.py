from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from unfold.decorators import action as unfold_action
from unfold.widgets import UnfoldAdminTextareaWidget

from contacts.admin import add_contact_inline
from contacts.models import Contact, LifecycleStage
from omni import audit
from omni.choices import ConsentStatus
from omni.lib.admin import ModelAdmin, ReadOnlyAdminMixin, ReadOnlyInline, adopt_saved, link_by_id

from . import actions, gate, replay
from .consent_forms import RecordConsentForm
from .models import (
    Consent,
    ConsentChange,
    ConsentText,
    Decision,
    FrequencyCap,
    KeywordList,
    QuietHours,
    ReplayRun,
    SendingPause,
    SendLedger,
    Suppression,
    suppressed_address,
)
from .suppression_files import (
    IMPORT_COLUMNS,
    MAX_FILE_BYTES,
    FileRefused,
    contact_with_address,
    export_rows,
    import_suppressions,
    read_suppressions,
)
from .replay_admin import ReplayPreviewMixin

CONTACT_SEARCH_FIELDS = ["contact__email", "contact__phone", "contact__external_id"]


RECORD_CONSENT = "compliance.add_consentchange"


class ConsentInline(ReadOnlyInline):
    """The contact's current consents, and below them the form that records a change.

    The form has a view of its own (ConsentChangeAdmin.record_consent_view): its button posts
    the contact page's form there, so staff who may record consent but not change the contact
    (compliance) use it from the contact's page; the contact's own fields are not saved by it.
    """

    model = Consent
    fields = ["channel", "purpose", "status", "lawful_basis", "updated_at"]
    ordering = ["channel", "purpose"]
    verbose_name_plural = "consents (each is the latest entry of its consent history)"
    template_after = "compliance/admin/record_consent_inline.html"
    record_form = None
    record_url = ""

    def get_formset(self, request, obj=None, **kwargs):
        # A fresh inline per request (ModelAdmin.get_inline_instances): the template reads these.
        if obj is not None and obj.erased_at is None and request.user.has_perm(RECORD_CONSENT):
            self.record_form = RecordConsentForm()
            self.record_url = reverse("admin:compliance_consentchange_record", args=[obj.pk])
        return super().get_formset(request, obj, **kwargs)


add_contact_inline(ConsentInline)


class PlainIdLinks:
    """Links for rows that keep plain contact and message ids (history outlives the rows)."""

    @admin.display(description="contact", ordering="contact_id")
    def contact_link(self, obj):
        return link_by_id("admin:contacts_contact_change", obj.contact_id, "Contact")

    @admin.display(description="message", ordering="message_id")
    def message_link(self, obj):
        return link_by_id("admin:channels_message_change", obj.message_id, "Message")


@admin.register(Consent)
class ConsentAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """Current consent is derived from its history (compliance.actions.record_consent_change)."""

    list_display = ["contact", "channel", "purpose", "status", "lawful_basis", "updated_at"]
    list_filter = ["channel", "purpose", "status", "lawful_basis"]
    search_fields = CONTACT_SEARCH_FIELDS
    list_select_related = ["contact"]
    readonly_fields = ["history"]

    @admin.display(description="history of this consent, newest first")
    def history(self, obj):
        changes = ConsentChange.objects.filter(contact_id=obj.contact_id, channel=obj.channel, purpose=obj.purpose)
        return format_html_join(
            "\n", "<div>{} — {} by {} ({})</div>",
            (
                (f"{c.occurred_at:%Y-%m-%d %H:%M:%S}", c.get_status_display(), c.get_source_display(),
                 c.actor_label or (c.actor and c.actor.get_username()) or "system")
                for c in changes.select_related("actor")
            ),
        )


@admin.register(ConsentChange)
class ConsentChangeAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["occurred_at", "contact", "channel", "purpose", "status", "source", "actor_label", "actor"]
    list_filter = ["channel", "purpose", "status", "source"]
    search_fields = [*CONTACT_SEARCH_FIELDS, "actor_label"]
    list_select_related = ["contact", "actor"]
    date_hierarchy = "occurred_at"

    def get_urls(self):
        record = path("record/<int:contact_id>/", self.admin_site.admin_view(self.record_consent_view),
                      name="compliance_consentchange_record")
        return [record, *super().get_urls()]

    def record_consent_view(self, request, contact_id):
        """Record a consent change for one contact: posted from the contact page's consent form
        (or this page's, which shows the form again with what was refused)."""
        if not request.user.has_perm(RECORD_CONSENT):
            raise PermissionDenied
        contact = get_object_or_404(Contact, pk=contact_id, erased_at__isnull=True)
        contact_url = reverse("admin:contacts_contact_change", args=[contact.pk])
        form = RecordConsentForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            change = form.record(contact, actor=request.user)
            waiting = " It waits for the contact's confirmation (double opt-in)." if (
                change.status == ConsentStatus.PENDING) else ""
            messages.success(request, f"Recorded: {change.get_channel_display()} {change.get_purpose_display().lower()} "
                                      f"{change.get_status_display().lower()} ({change.get_source_display()}).{waiting}")
            return HttpResponseRedirect(f"{contact_url}#consents-group")
        context = {**self.admin_site.each_context(request), "title": f"Record consent for {contact}",
                   "opts": self.opts, "contact": contact, "contact_url": contact_url, "form": form}
        return TemplateResponse(request, "compliance/admin/record_consent.html", context,
                                status=400 if request.method == "POST" else 200)


class ConsentTextForm(forms.ModelForm):
    class Meta:
        model = ConsentText
        fields = ["key", "text"]


@admin.register(ConsentText)
class ConsentTextAdmin(ModelAdmin):
    """The words shown where people consent on Omni's own pages. A text is never edited: writing
    one makes the next version of its key, and the pages show the newest."""

    form = ConsentTextForm
    list_display = ["key", "version", "excerpt", "created_by", "created_at", "new_version_link"]
    list_filter = ["key"]
    search_fields = ["text"]
    list_select_related = ["created_by"]
    readonly_fields = ["version", "created_by", "created_at", "new_version_link"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["key", "text"]
        return ["key", "version", "text", "created_by", "created_at", "new_version_link"]

    def get_changeform_initial_data(self, request):
        # "New version" starts from the newest text of its key.
        initial = super().get_changeform_initial_data(request)
        current = ConsentText.objects.current(initial.get("key", ""))
        if current is not None:
            initial["text"] = current.text
        return initial

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # consent evidence names the versions

    def save_model(self, request, obj, form, change):
        adopt_saved(obj, actions.publish_consent_text(obj.key, obj.text, actor=request.user))

    @admin.display(description="excerpt")
    def excerpt(self, obj):
        return obj.text if len(obj.text) <= 80 else f"{obj.text[:79]}…"

    @admin.display(description="")
    def new_version_link(self, obj):
        if obj.pk is None:
            return ""
        return format_html('<a class="new-version" href="{}?key={}">Write a new version</a>',
                           reverse("admin:compliance_consenttext_add"), obj.key)


class SuppressionForm(forms.ModelForm):
    class Meta:
        model = Suppression
        fields = ["address", "channel", "purpose", "reason", "detail", "contact", "expires_at"]
        help_texts = {"address": "An email address for email, a phone number (stored as E.164) for SMS, WhatsApp "
                                 "and RCS, either for all channels, a push token for push.",
                      "contact": "Empty: the contact with this address, if there is one."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["address"].required = True

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("address") or "channel" not in cleaned:
            return cleaned
        contact = cleaned.get("contact")
        try:
            cleaned["address"] = suppressed_address(cleaned["address"], cleaned["channel"],
                                                    default_region=(contact.country or None) if contact else None)
        except ValidationError as exc:
            self.add_error("address", exc)
            return cleaned
        if contact is None:
            cleaned["contact"] = contact_with_address(cleaned["address"])
        return cleaned


class LiftSuppressionsForm(forms.Form):
    why = forms.CharField(label="Why lift them", max_length=500, widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}),
                          help_text="Kept with the audit entry (outside the chain: it may name the person).")


class ImportSuppressionsForm(forms.Form):
    file = forms.FileField(help_text=f"CSV, UTF-8, header row with the columns: {', '.join(IMPORT_COLUMNS)}. "
                                     "Blank channel or purpose: all of them; blank reason: manual.")
    skip_bad_rows = forms.BooleanField(required=False, label="Import the valid rows and skip the bad ones",
                                       help_text="Unticked: one bad row and nothing is imported.")


@admin.register(Suppression)
class SuppressionAdmin(ModelAdmin):
    form = SuppressionForm
    list_display = ["__str__", "channel", "purpose", "reason", "contact", "created_by", "created_at", "expires_at"]
    list_filter = ["reason", "channel", "purpose", "created_at"]
    search_fields = ["address", "address_hash", "detail", *CONTACT_SEARCH_FIELDS]
    list_select_related = ["contact", "created_by"]
    autocomplete_fields = ["contact"]
    actions = ["lift_suppressions", "export_csv"]
    actions_list = ["import_csv"]

    def has_change_permission(self, request, obj=None):
        # A suppression is never edited in place: lift it and add a new one, both audited.
        # Without an object this answers for the changelist actions, which need the permission.
        if obj is not None:
            return False
        return super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False  # "Lift selected suppressions" removes them, with an audit entry.

    def has_export_permission(self, request):
        # The file holds addresses: personal data leaving Omni.
        return request.user.has_perms(["compliance.view_suppression", "compliance.change_suppression"])

    def has_import_csv_permission(self, request):
        return request.user.has_perm("compliance.add_suppression")

    def save_model(self, request, obj, form, change):
        suppression, created = actions.suppress(
            obj.address, channel=obj.channel, purpose=obj.purpose, reason=obj.reason, contact=obj.contact,
            detail=obj.detail, actor=request.user, expires_at=obj.expires_at,
        )
        adopt_saved(obj, suppression)
        if not created:
            messages.warning(request, "This address was already suppressed for that scope; nothing changed.")

    @admin.action(description="Lift selected suppressions", permissions=["change"])
    def lift_suppressions(self, request, queryset):
        form = LiftSuppressionsForm(request.POST if "why" in request.POST else None)
        if not form.is_valid():
            context = {**self.admin_site.each_context(request), "title": "Lift these suppressions?",
                       "opts": self.opts, "form": form, "suppressions": queryset,
                       "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME}
            return TemplateResponse(request, "compliance/admin/lift_suppressions.html", context)
        lifted = 0
        with audit.written_together():
            for suppression in queryset:
                actions.lift_suppression(suppression, actor=request.user, why=form.cleaned_data["why"])
                lifted += 1
        self.message_user(request, f"Lifted {lifted} suppression(s).", messages.SUCCESS)
        return None

    @admin.action(description="Export selected suppressions as CSV", permissions=["export"])
    def export_csv(self, request, queryset):
        rows = queryset.count()
        audit.record("suppression.exported", actor=request.user, reason="csv",
                     data={"rows": rows, "filters": {key: value for key, value in request.GET.items()}})
        response = StreamingHttpResponse(export_rows(queryset), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="suppressions-{timezone.now():%Y%m%d-%H%M}.csv"'
        return response

    @unfold_action(description="Import suppressions (CSV)", url_path="import-csv", permissions=["import_csv"])
    def import_csv(self, request):
        form = ImportSuppressionsForm(request.POST or None, request.FILES or None)
        context = {**self.admin_site.each_context(request), "title": "Import suppressions", "opts": self.opts,
                   "form": form, "columns": IMPORT_COLUMNS}
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                if upload.size > MAX_FILE_BYTES:
                    raise FileRefused(f"The file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB; split it.")
                read = read_suppressions(upload.read())
            except FileRefused as refused:
                form.add_error("file", str(refused))
                return TemplateResponse(request, "compliance/admin/import_suppressions.html", context, status=400)
            context["errors"] = read.errors
            if read.errors and not form.cleaned_data["skip_bad_rows"]:
                context["refused"] = True
                return TemplateResponse(request, "compliance/admin/import_suppressions.html", context, status=400)
            done = import_suppressions(read.rows, actor=request.user, file_name=upload.name)
            summary = (f"Imported {len(read.rows)} row(s): {done.added} added, {done.renewed} renewed, "
                       f"{done.unchanged} already suppressed.")
            if not read.errors:
                self.message_user(request, summary, messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:compliance_suppression_changelist"))
            context["imported"] = f"{summary} {len(read.errors)} problem(s) in the rows below were skipped."
        return TemplateResponse(request, "compliance/admin/import_suppressions.html", context)


class AuditedRuleAdmin(ReplayPreviewMixin, ModelAdmin):
    """Sending rules change who gets what: every change to one is written to the audit log. A
    quiet-hours rule or a cap is saved or deleted only after its policy replay was shown and
    confirmed (compliance/replay_admin.py)."""

    audit_noun = ""

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit.record(
            f"{self.audit_noun}.{'changed' if change else 'created'}", obj=obj, actor=request.user,
            channel=getattr(obj, "channel", ""),
            data={"rule": str(obj), "changed": {name: str(form.cleaned_data.get(name)) for name in form.changed_data}},
        )

    def delete_model(self, request, obj):
        audit.record(f"{self.audit_noun}.deleted", obj=obj, actor=request.user, channel=getattr(obj, "channel", ""),
                     data={"rule": str(obj)})
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(QuietHours)
class QuietHoursAdmin(AuditedRuleAdmin):
    audit_noun = "quiet_hours"
    list_display = ["name", "channel", "purpose", "country", "region", "start", "end", "applies_to_transactional",
                    "active", "version", "updated_at"]
    list_filter = ["active", "channel", "purpose", "country"]
    search_fields = ["name", "region"]
    fields = ["name", "channel", "purpose", "country", "region", "start", "end", "applies_to_transactional", "active"]


class FrequencyCapForm(forms.ModelForm):
    # The stages as they are when the form is built (a callable: read at each form, not at import).
    lifecycle_stages = forms.MultipleChoiceField(
        choices=lambda: [(stage.key, stage.name) for stage in LifecycleStage.objects.all()], required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Contacts at these lifecycle stages only. None ticked: every stage.")

    class Meta:
        model = FrequencyCap
        fields = ["name", "channel", "purpose", "limit", "window_seconds", "action", "lifecycle_stages",
                  "applies_to_transactional", "active"]


@admin.register(FrequencyCap)
class FrequencyCapAdmin(AuditedRuleAdmin):
    audit_noun = "frequency_cap"
    form = FrequencyCapForm
    list_display = ["name", "channel", "purpose", "limit", "window_seconds", "action", "stages",
                    "applies_to_transactional", "active", "version", "updated_at"]
    list_filter = ["active", "channel", "purpose", "action"]
    search_fields = ["name"]

    @admin.display(description="lifecycle stages")
    def stages(self, obj):
        return ", ".join(obj.lifecycle_stages) or "all"


@admin.register(ReplayRun)
class ReplayRunAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """Past policy replays: what was proposed, by whom, and what it would have changed, each
    opening its replay page (which is also where a finished one can still be confirmed)."""

    list_display = ["created_at", "created_by", "change", "status", "decisions", "decided_otherwise", "page"]
    list_display_links = None
    list_filter = ["status"]
    list_select_related = ["created_by"]
    date_hierarchy = "created_at"

    @admin.display(description="Change")
    def change(self, run):
        proposal = run.proposal or {}
        rule = (proposal.get("fields") or {}).get("name") or f"#{proposal.get('rule_id')}"
        kind = "Quiet hours" if proposal.get("model") == replay.QUIET_HOURS else "Frequency cap"
        return f"{kind} “{rule}”: {REPLAY_ACTION_WORDS.get(proposal.get('action'), proposal.get('action'))}"

    @admin.display(description="Decisions")
    def decisions(self, run):
        return f"{run.done:,} of {run.total:,}" if run.total else "—"

    @admin.display(description="Decided otherwise")
    def decided_otherwise(self, run):
        changed = (run.result or {}).get("changed")
        return "—" if changed is None else f"{changed:,}"

    @admin.display(description="Replay")
    def page(self, run):
        app_label, _, model_name = (run.proposal or {}).get("model", "").partition(".")
        if not model_name:
            return "—"
        return format_html('<a href="{}">Open</a>', reverse(f"admin:{app_label}_{model_name}_replay", args=[run.pk]))


REPLAY_ACTION_WORDS = {replay.ADD: "added", replay.CHANGE: "changed", replay.DELETE: "deleted"}


@admin.register(SendLedger)
class SendLedgerAdmin(PlainIdLinks, ReadOnlyAdminMixin, ModelAdmin):
    """What frequency caps count: one row per message queued on a plan step, written by routing."""

    list_display = ["at", "contact_link", "channel", "purpose", "message_link", "plan_step"]
    list_filter = ["channel", "purpose"]
    search_fields = ["=contact_id", "=message_id"]
    date_hierarchy = "at"
    show_full_result_count = False



@admin.register(KeywordList)
class KeywordListAdmin(AuditedRuleAdmin):
    """STOP, STOPALL, START and HELP words per language, and Omni's reply to each (the START
    reply also confirms an SMS opt-in). STOP, START and HELP work even if removed here."""

    audit_noun = "keyword_list"
    list_display = ["language", "kind", "words", "reply", "updated_at"]
    list_filter = ["kind", "language"]
    search_fields = ["words", "reply"]


@admin.register(SendingPause)
class SendingPauseAdmin(ModelAdmin):
    list_display = ["__str__", "channel", "provider", "paused_by", "paused_at", "resumed_at", "in_force"]
    list_filter = ["channel", ("resumed_at", admin.EmptyFieldListFilter)]
    search_fields = ["reason", "provider"]
    list_select_related = ["paused_by"]
    fields = ["channel", "provider", "reason"]
    actions = ["resume_sending"]

    @admin.display(boolean=True, description="in force")
    def in_force(self, obj):
        return obj.resumed_at is None

    def get_fields(self, request, obj=None):
        if obj is None:
            return self.fields
        return [*self.fields, "paused_by", "paused_at", "resumed_at"]

    def has_change_permission(self, request, obj=None):
        # A pause is ended with "Resume sending", never edited: its record stays as it was.
        if obj is not None:
            return False
        return super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        obj.paused_by = request.user
        obj.paused_at = timezone.now()
        super().save_model(request, obj, form, change)
        audit.record("sending.paused", obj=obj, actor=request.user, channel=obj.channel,
                     reason=obj.provider or "all-providers", data={"why": obj.reason})

    @admin.action(description="Resume sending", permissions=["change"])
    def resume_sending(self, request, queryset):
        resumed = 0
        for pause in queryset.filter(resumed_at__isnull=True):
            if SendingPause.objects.filter(pk=pause.pk, resumed_at__isnull=True).update(resumed_at=timezone.now()):
                audit.record("sending.resumed", obj=pause, actor=request.user, channel=pause.channel,
                             reason=pause.provider or "all-providers", data={"why": pause.reason})
                resumed += 1
        self.message_user(request, f"Resumed {resumed} paused channel(s).", messages.SUCCESS)


def is_test_decision(decision) -> bool:
    """Whether the decision was on a test message (channels says so in its channel facts)."""
    return bool(((decision.inputs or {}).get("channel_facts") or {}).get(gate.TEST_MESSAGE_FACT))


class TestSendFilter(admin.SimpleListFilter):
    title = "test send"
    parameter_name = "test_send"

    def lookups(self, request, model_admin):
        return [("yes", "Test sends"), ("no", "Not tests")]

    def queryset(self, request, queryset):
        test = Q(**{f"inputs__channel_facts__{gate.TEST_MESSAGE_FACT}": True})
        if self.value() == "yes":
            return queryset.filter(test)
        if self.value() == "no":
            return queryset.exclude(test)
        return queryset


@admin.register(Decision)
class DecisionAdmin(PlainIdLinks, ReadOnlyAdminMixin, ModelAdmin):
    """Every verdict of the pre-send gate, with the inputs it used: why a message went out or did not."""

    list_display = ["decided_at", "outcome", "reason", "channel", "purpose", "message_link", "contact_link",
                    "test_send", "consent_status", "consent_change_id"]
    list_filter = ["outcome", "channel", "purpose", "reason", TestSendFilter]
    search_fields = ["=message_id", "=contact_id", "reason"]
    date_hierarchy = "decided_at"
    show_full_result_count = False
    readonly_fields = ["rule_results", "what_it_read"]
    fieldsets = [
        (None, {"fields": ["decided_at", ("outcome", "reason", "defer_until"), ("channel", "plan_step", "purpose",
                                                                                 "provider"),
                           ("message_id", "delivery_id", "contact_id")]}),
        ("Each rule's result", {"fields": ["rule_results"]}),
        ("What the gate read", {"fields": ["what_it_read", ("consent_status", "consent_change_id"), "suppressions",
                                           "inputs", "digest"]}),
    ]

    @admin.display(description="test", boolean=True)
    def test_send(self, obj):
        return is_test_decision(obj)

    @admin.display(description="rules, in the order they ran")
    def rule_results(self, obj):
        ran = {}
        for result in (obj.inputs or {}).get("rules", []):
            ran.setdefault(result["rule"], []).append(result)
        rows = []
        # Arbitration (channels) took the message out before the gate was asked: no rule of the gate ran.
        for result in ran.get("arbitration", []):
            link = format_html('<a href="{}">#{} v{}</a>', reverse("admin:channels_arbitrationrule_change",
                                                                  args=[result["id"]]), result["id"], result["version"])
            rows.append(("arbitration", link, result["result"], result.get("reason", ""), _rule_detail(result)))
        for rule in () if rows else gate.BUILT_IN_RULES:
            for result in ran.get(rule) or [{"result": "pass"}]:
                rows.append((rule, "", result["result"], result.get("reason", ""), _rule_detail(result)))
        for rule, url_name in (("quiet_hours", "admin:compliance_quiethours_change"),
                               ("frequency_cap", "admin:compliance_frequencycap_change")):
            for result in ran.get(rule, []):
                link = format_html('<a href="{}">#{} v{}</a>', reverse(url_name, args=[result["id"]]), result["id"],
                                   result["version"])
                rows.append((rule, link, result["result"], result.get("reason", ""), _rule_detail(result)))
        return format_html(
            '<table class="rule-results"><thead><tr><th>rule</th><th>row</th><th>result</th><th>reason</th>'
            "<th>detail</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join("", '<tr class="rule-{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
                             ((rule, rule, link, result, reason, detail) for rule, link, result, reason, detail in rows)))

    @admin.display(description="the contact's clock and ledger")
    def what_it_read(self, obj):
        inputs = obj.inputs or {}
        parts = []
        if inputs.get("zone"):
            parts.append(f"local time {inputs.get('local_time')} in {inputs['zone']} (from the "
                         f"{inputs.get('zone_source')})")
        if "ledger" in inputs:
            parts.append(f"{len(inputs['ledger'])} send(s) in the ledger within the longest cap window")
        if inputs.get("exemption"):
            parts.append(f"exemption: {inputs['exemption']}")
        if inputs.get("arbitration"):
            winner = inputs["arbitration"].get("winner", {})
            parts.append(f"gave way to message {inputs['arbitration'].get('displaced_by')} "
                         f"({winner.get('purpose', '')} from {winner.get('source', '')}, priority "
                         f"{winner.get('priority', 0)})")
        if inputs.get("conversations"):
            parts.append("support conversations holding marketing: " + ", ".join(
                f"#{conversation_id} ({f'held until {held_until}' if held_until else 'not closed'})"
                for conversation_id, held_until in inputs["conversations"]))
        return "; ".join(parts) or "—"



def _rule_detail(result: dict) -> str:
    details = []
    if "displaced_by" in result:
        details.append(f"displaced by message {result['displaced_by']}")
    if "until" in result:
        details.append(f"until {result['until']}")
    if "zone" in result:
        details.append(f"in {result['zone']}")
    if "count" in result:
        details.append(f"{result['count']} of {result['limit']} in {result['window_seconds']}s")
    if "window_ends" in result:
        details.append(f"window ends {result['window_ends']}, after the message expires")
    return ", ".join(details)
