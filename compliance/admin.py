from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from contacts.admin import add_contact_inline
from contacts.models import LifecycleStage
from contacts.phones import normalize_phone
from omni import audit
from omni.lib.admin import ModelAdmin, ReadOnlyAdminMixin, ReadOnlyInline, adopt_saved, link_by_id
from omni.choices import Channel

from . import actions, gate
from .models import (
    Consent,
    ConsentChange,
    Decision,
    FrequencyCap,
    KeywordList,
    QuietHours,
    SendingPause,
    SendLedger,
    Suppression,
)
from .replay_admin import ReplayPreviewMixin

CONTACT_SEARCH_FIELDS = ["contact__email", "contact__phone", "contact__external_id"]


class ConsentInline(ReadOnlyInline):
    model = Consent
    fields = ["channel", "purpose", "status", "lawful_basis", "updated_at"]
    ordering = ["channel", "purpose"]
    verbose_name_plural = "consents (read-only: each is the latest entry of its consent history)"


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


class SuppressionForm(forms.ModelForm):
    class Meta:
        model = Suppression
        fields = ["address", "channel", "purpose", "reason", "detail", "contact", "expires_at"]
        help_texts = {"address": "An email address, a phone number (stored as E.164) or a push token."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["address"].required = True

    def clean(self):
        cleaned = super().clean()
        address = (cleaned.get("address") or "").strip()
        channel = cleaned.get("channel")
        if not address or channel == Channel.PUSH:
            return cleaned
        # The gate looks suppressions up by the hash of the address exactly as contacts store
        # it, so a number typed as "(415) 555-0100" must become +14155550100 to ever match.
        try:
            if "@" in address:
                validate_email(address)
                cleaned["address"] = address.lower()
            else:
                contact = cleaned.get("contact")
                region = (contact.country or None) if contact else None
                cleaned["address"] = normalize_phone(address, default_region=region)
        except ValidationError as exc:
            self.add_error("address", exc)
        return cleaned


@admin.register(Suppression)
class SuppressionAdmin(ModelAdmin):
    form = SuppressionForm
    list_display = ["__str__", "channel", "purpose", "reason", "contact", "created_by", "created_at", "expires_at"]
    list_filter = ["reason", "channel", "purpose", "created_at"]
    search_fields = ["address", "address_hash", "detail", *CONTACT_SEARCH_FIELDS]
    list_select_related = ["contact", "created_by"]
    autocomplete_fields = ["contact"]
    actions = ["lift_suppressions"]

    def has_change_permission(self, request, obj=None):
        # A suppression is never edited in place: lift it and add a new one, both audited.
        # Without an object this answers for the changelist actions, which need the permission.
        if obj is not None:
            return False
        return super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False  # "Lift selected suppressions" removes them, with an audit entry.

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
        count = 0
        for suppression in queryset:
            actions.lift_suppression(suppression, actor=request.user, why="lifted in the admin")
            count += 1
        self.message_user(request, f"Lifted {count} suppression(s).", messages.SUCCESS)


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
