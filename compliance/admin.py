import csv
import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.db.models import Q
from django.utils.html import format_html_join

from contacts.admin import add_contact_inline
from contacts.models import Contact
from contacts.phones import normalize_phone
from omni import audit
from omni.lib.admin import ReadOnlyAdminMixin, ReadOnlyInline, adopt_saved, link_by_id
from omni.choices import Channel
from omni.models import AuditEntry, AuditPersonalData

from . import actions
from .models import (
    Consent,
    ConsentChange,
    Decision,
    FrequencyCap,
    KeywordList,
    QuietHours,
    SendingPause,
    Suppression,
)

CONTACT_SEARCH_FIELDS = ["contact__email", "contact__phone", "contact__external_id"]


class ConsentInline(ReadOnlyInline):
    model = Consent
    fields = ["channel", "purpose", "status", "lawful_basis", "updated_at"]
    ordering = ["channel", "purpose"]
    verbose_name_plural = "consents (read-only: each is the latest entry of its consent history)"


add_contact_inline(ConsentInline)


@admin.register(Consent)
class ConsentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
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
class ConsentChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
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
class SuppressionAdmin(admin.ModelAdmin):
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


class AuditedRuleAdmin(admin.ModelAdmin):
    """Sending rules change who gets what: every change to one is written to the audit log."""

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
    list_display = ["name", "channel", "purpose", "country", "start", "end", "applies_to_transactional", "active"]
    list_filter = ["active", "channel", "purpose", "country"]
    search_fields = ["name"]


@admin.register(FrequencyCap)
class FrequencyCapAdmin(AuditedRuleAdmin):
    audit_noun = "frequency_cap"
    list_display = ["name", "channel", "purpose", "limit", "window_seconds", "action", "applies_to_transactional",
                    "active"]
    list_filter = ["active", "channel", "purpose", "action"]
    search_fields = ["name"]


@admin.register(KeywordList)
class KeywordListAdmin(AuditedRuleAdmin):
    """STOP, STOPALL, START and HELP words per language, and Omni's reply to each (the START
    reply also confirms an SMS opt-in). STOP, START and HELP work even if removed here."""

    audit_noun = "keyword_list"
    list_display = ["language", "kind", "words", "reply", "updated_at"]
    list_filter = ["kind", "language"]
    search_fields = ["words", "reply"]


@admin.register(SendingPause)
class SendingPauseAdmin(admin.ModelAdmin):
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


# --- Audit log and its export --------------------------------------------------------------

# A cell starting with one of these is run as a formula by Excel, LibreOffice and Google
# Sheets; a leading apostrophe makes it plain text (OWASP "CSV injection"). Tab and carriage
# return are on OWASP's list too.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

EXPORT_COLUMNS = [
    ("id", "id"),
    ("seq", "seq"),
    ("occurred_at", "occurred_at"),
    ("action", "action"),
    ("actor_id", "actor_id"),
    ("actor", "actor_label"),
    ("contact_id", "contact_id"),
    ("channel", "channel"),
    ("object_type", "object_type"),
    ("object_id", "object_id"),
    ("reason", "reason"),
    ("data", "data"),
    ("hash", "hash"),
]
EXPORT_CHUNK_SIZE = 2000  # rows fetched per round trip; keeps memory flat on long exports


def neutralize_formula(value) -> str:
    """The cell text for value, safe to open in a spreadsheet."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True, default=str)
    elif hasattr(value, "isoformat"):
        text = value.isoformat()
    else:
        text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


class _Echo:
    """A file-like object whose write() hands the line back, so csv.writer can stream."""

    def write(self, value):
        return value


def audit_csv_lines(queryset):
    writer = csv.writer(_Echo())
    yield writer.writerow([header for header, _ in EXPORT_COLUMNS] + ["contact_external_id"])
    rows = queryset.order_by("occurred_at", "id").values_list(*(source for _, source in EXPORT_COLUMNS))
    contact_at = [source for _, source in EXPORT_COLUMNS].index("contact_id")
    chunk = []
    for row in rows.iterator(chunk_size=EXPORT_CHUNK_SIZE):
        chunk.append(row)
        if len(chunk) == EXPORT_CHUNK_SIZE:
            yield from _csv_chunk(writer, chunk, contact_at)
            chunk = []
    yield from _csv_chunk(writer, chunk, contact_at)


def _csv_chunk(writer, rows, contact_at):
    # Entries keep plain contact ids; the external ids are looked up once per chunk.
    external_ids = dict(
        Contact.objects.filter(pk__in={row[contact_at] for row in rows} - {None}).values_list("pk", "external_id")
    )
    for row in rows:
        yield writer.writerow([neutralize_formula(value) for value in row]
                              + [neutralize_formula(external_ids.get(row[contact_at]))])


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["occurred_at", "action", "actor_label", "contact_link", "channel", "reason", "object_type",
                    "object_id", "seq"]
    list_filter = ["action", "channel", "occurred_at", ("seq", admin.EmptyFieldListFilter)]
    search_fields = ["reason", "object_type", "object_id", "action", "actor_label"]
    readonly_fields = ["personal_data"]
    date_hierarchy = "occurred_at"
    actions = ["export_csv"]
    show_full_result_count = False  # the log grows large; counting it on every page is slow

    def has_export_permission(self, request):
        return request.user.has_perm("omni.export_auditentry")

    def get_search_results(self, request, queryset, search_term):
        """Also find the entries of the contacts whose email, phone or external id is searched for."""
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term:
            contacts = Contact.objects.filter(
                Q(email__iexact=term) | Q(phone=term) | Q(external_id=term)
            ).values_list("pk", flat=True)[:50]
            queryset |= self.model.objects.filter(contact_id__in=list(contacts))
        return queryset, may_have_duplicates

    @admin.display(description="contact", ordering="contact_id")
    def contact_link(self, obj):
        return link_by_id("admin:contacts_contact_change", obj.contact_id, "Contact")

    @admin.display(description="personal data (outside the chain)")
    def personal_data(self, obj):
        personal = AuditPersonalData.objects.filter(entry_id=obj.pk).first()
        if personal is None:
            return "—"
        if personal.erased_at:
            return f"erased {personal.erased_at:%Y-%m-%d %H:%M}"
        return json.dumps(personal.data, sort_keys=True, default=str)

    def get_urls(self):
        export = path("export/", self.admin_site.admin_view(self.export_view), name="omni_auditentry_export")
        return [export, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_export": self.has_export_permission(request)}
        return super().changelist_view(request, extra_context=extra_context)

    @admin.action(description="Export CSV", permissions=["export"])
    def export_csv(self, request, queryset):
        return self.export_response(request, queryset, scope={"selection": "chosen rows"})

    def export_view(self, request):
        """The "Export CSV" button: everything the changelist shows with its current filters."""
        if not (self.has_view_permission(request) and self.has_export_permission(request)):
            raise PermissionDenied
        try:
            queryset = self.get_changelist_instance(request).get_queryset(request)
        except IncorrectLookupParameters:
            messages.error(request, "Those filters are not valid; nothing was exported.")
            return HttpResponseRedirect(reverse("admin:omni_auditentry_changelist"))
        return self.export_response(request, queryset, scope={"filters": request.GET.urlencode()})

    def export_response(self, request, queryset, scope):
        if not self.has_export_permission(request):
            raise PermissionDenied
        rows = queryset.count()
        entry = audit.record("audit.exported", actor=request.user, reason="admin-csv", data={"rows": rows, **scope})
        # Only what existed when the export was asked for, without the export's own entry.
        queryset = queryset.filter(pk__lt=entry.pk)
        response = StreamingHttpResponse(audit_csv_lines(queryset), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="omni-audit-{timezone.now():%Y%m%d-%H%M%S}.csv"'
        return response


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every verdict of the pre-send gate, with the inputs it used: why a message went out or did not."""

    list_display = ["decided_at", "outcome", "reason", "channel", "purpose", "message_link", "contact_link",
                    "consent_status", "consent_change_id"]
    list_filter = ["outcome", "channel", "purpose", "reason"]
    search_fields = ["=message_id", "=contact_id", "reason"]
    date_hierarchy = "decided_at"
    show_full_result_count = False

    @admin.display(description="contact", ordering="contact_id")
    def contact_link(self, obj):
        return link_by_id("admin:contacts_contact_change", obj.contact_id, "Contact")

    @admin.display(description="message", ordering="message_id")
    def message_link(self, obj):
        return link_by_id("admin:channels_message_change", obj.message_id, "Message")
