import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, JsonResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from import_export.admin import ImportExportModelAdmin
from import_export.formats import base_formats
from unfold.contrib.import_export.forms import ImportForm, SelectableFieldsExportForm

from omni import audit
from omni.lib.admin import ModelAdmin, ReadOnlyAdminMixin, TabularInline, save_edited_fields
from omni.lib.quarantine import QuarantineAdminMixin, QuarantinedFilter

from . import import_admin, segments
from .actions import ContactErased
from .data_types import contact_problems
from .erasure_admin import ContactErasureMixin, ErasureRequestAdmin, pending_erasure_words
from .models import (
    AttributeDefinition,
    Contact,
    ContactEvent,
    ContactImport,
    Device,
    ErasureRequest,
    EventPropertyDefinition,
    LifecycleStage,
    Segment,
)
from .resources import ContactResource

RECENT_EVENTS_SHOWN = 20
MARK_TEST_CONTACT = "contacts.mark_test_contact"


class DeviceInline(TabularInline):
    model = Device
    extra = 0
    fields = ["platform", "token", "provider_endpoint", "enabled", "disabled_reason", "app_version", "last_seen_at"]


def lifecycle_stage_choices() -> list[tuple[str, str]]:
    return [(stage.key, stage.name) for stage in LifecycleStage.objects.all()]


class ContactForm(forms.ModelForm):
    # The stages as they are when the form is built; contact_problems() checks the key again, and
    # the types of the declared attributes.
    lifecycle_stage = forms.ChoiceField(choices=lifecycle_stage_choices)

    class Meta:
        model = Contact
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        checked = {name: cleaned[name] for name in ("lifecycle_stage", "attributes") if name in cleaned}
        if len(checked) == 2:
            for field_name, problem in contact_problems(**checked).items():
                self.add_error(field_name, problem)
        return cleaned


class LifecycleStageFilter(admin.SimpleListFilter):
    title = "lifecycle stage"
    parameter_name = "lifecycle_stage"

    def lookups(self, request, model_admin):
        return lifecycle_stage_choices()

    def queryset(self, request, queryset):
        return queryset.filter(lifecycle_stage=self.value()) if self.value() else queryset


@admin.register(Contact)
class ContactAdmin(ContactErasureMixin, ModelAdmin, ImportExportModelAdmin):
    form = ContactForm
    resource_classes = [ContactResource]
    # Unfold's forms, so the import and export pages use the theme's widgets (the export one that
    # keeps choosing columns, as django-import-export's default does).
    import_form_class = ImportForm
    export_form_class = SelectableFieldsExportForm
    list_display = ["__str__", "email", "phone", "external_id", "lifecycle_stage", "locale", "messaging_paused",
                    "is_test", "created_at", "timeline_link"]
    list_filter = [LifecycleStageFilter, "locale", "messaging_paused", "unknown_sender", "is_test"]
    search_fields = ["email", "phone", "external_id", "first_name", "last_name"]
    date_hierarchy = "created_at"
    # unknown_sender: set when someone no contact had wrote in (channels); merging comes later.
    readonly_fields = ["created_at", "updated_at", "erased_at", "unknown_sender", "timeline_link", "recent_events"]
    fieldsets = [
        (None, {"fields": ["external_id", ("first_name", "last_name"), "email", "phone", "unknown_sender"]}),
        ("Profile", {"fields": ["lifecycle_stage", ("locale", "timezone", "country", "region"), "attributes"]}),
        ("Messaging", {"fields": ["messaging_paused", "preferred_channel", "is_test"]}),
        ("History", {"fields": ["timeline_link", "recent_events", ("created_at", "updated_at", "erased_at")]}),
    ]
    # contacts depends on no other app, so the apps built on it add their own inlines here
    # (compliance adds consents) instead of this module importing them.
    inlines = [DeviceInline]
    actions = ["pause_messaging", "resume_messaging", "erase_contacts"]

    def get_readonly_fields(self, request, obj=None):
        # Only staff allowed to mark test contacts change the flag: a journey in testing sends
        # to test contacts, so marking a customer as one would send them drafts.
        readonly = super().get_readonly_fields(request, obj)
        if not request.user.has_perm(MARK_TEST_CONTACT):
            readonly = [*readonly, "is_test"]
        return readonly

    def has_delete_permission(self, request, obj=None):
        # What was sent to a contact and their consent history outlive them: removing a person
        # is erasure (personal data out, history kept), never a delete.
        return False

    def has_change_permission(self, request, obj=None):
        # An erased contact's page only shows what is left: filling its profile in would undo the erasure.
        if obj is not None and obj.erased_at is not None:
            return False
        return super().has_change_permission(request, obj)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "GET" and str(object_id or "").isdigit():
            # An erasure waiting for an import is said plainly at the top of the contact's page.
            pending = pending_erasure_words(int(object_id))
            if pending:
                self.message_user(request, pending, messages.WARNING)
        try:
            if request.method == "POST" and object_id:
                contact = self.get_object(request, unquote(object_id))
                if contact is not None and contact.erased_at is not None:
                    raise ContactErased(contact.external_id)
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ContactErased:
            # Raised inside the save's transaction too (save_model), which rolled back: nothing was written.
            self.message_user(request, "This contact's personal data was erased on request, so it cannot be "
                                       "changed: nothing was saved.", messages.ERROR)
            return HttpResponseRedirect(request.path)

    def save_model(self, request, obj, form, change):
        # The form reports an unchanged JSON field as changed, so compare stored values instead.
        before = Contact.objects.select_for_update().filter(pk=obj.pk).first() if change else None
        if before is not None and before.erased_at is not None:
            raise ContactErased(before.external_id)  # erased since the page was read
        fields = [name for name in form.changed_data if before is None or getattr(before, name) != getattr(obj, name)]
        if change:
            save_edited_fields(obj, form)
        else:
            super().save_model(request, obj, form, change)
        if fields or not change:
            # Field names only: the audit log says what changed and who did it, not the personal data.
            audit.record("contact.updated" if change else "contact.created", contact=obj, obj=obj,
                         actor=request.user, reason="admin", data={"fields": fields})

    @admin.action(description="Pause automated messaging for selected contacts", permissions=["change"])
    def pause_messaging(self, request, queryset):
        self._set_paused(request, queryset, True)

    @admin.action(description="Resume automated messaging for selected contacts", permissions=["change"])
    def resume_messaging(self, request, queryset):
        self._set_paused(request, queryset, False)

    def _set_paused(self, request, queryset, paused: bool):
        changed = list(queryset.exclude(messaging_paused=paused))
        queryset.filter(pk__in=[c.pk for c in changed]).update(messaging_paused=paused)
        audit.record_many([
            audit.build("contact.paused" if paused else "contact.resumed", contact=c, obj=c, actor=request.user,
                        reason="admin")
            for c in changed
        ])
        self.message_user(request, f"{'Paused' if paused else 'Resumed'} messaging for {len(changed)} contact(s).")

    @admin.display(description="timeline")
    def timeline_link(self, obj):
        if obj.pk is None:
            return "—"
        # The page lives in omni's web layer, above this app: reached by its URL name, never imported.
        return format_html('<a class="timeline-link" href="{}">Timeline</a>', reverse("omni-web:timeline", args=[obj.pk]))

    @admin.display(description=f"recent events (newest {RECENT_EVENTS_SHOWN})")
    def recent_events(self, obj):
        if obj.pk is None:
            return "—"
        events = obj.events.order_by("-occurred_at")[:RECENT_EVENTS_SHOWN]
        rows = format_html_join(
            "",
            '<tr><td>{}</td><td><a href="{}">{}</a></td><td>{}</td><td>{}</td></tr>',
            (
                (
                    f"{event.occurred_at:%Y-%m-%d %H:%M:%S}",
                    reverse("admin:contacts_contactevent_change", args=[event.pk]),
                    event.name,
                    event.source,
                    "processed" if event.processed_at else "pending",
                )
                for event in events
            ),
        )
        if not rows:
            return "No events yet."
        return format_html(
            "<table><thead><tr><th>occurred</th><th>event</th><th>source</th><th>state</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            rows,
        )

    # The import has pages of its own (contacts/import_admin.py): every row checked, errors shown
    # row by row, the valid rows or none imported. Uploading needs contacts.add_contactimport.
    def has_import_permission(self, request):
        return request.user.has_perm("contacts.add_contactimport")

    def import_action(self, request, *args, **kwargs):
        return import_admin.upload_view(self, request)

    def get_import_formats(self):
        # Rows of cells: CSV, and XLSX (read by openpyxl) turned into CSV.
        return [base_formats.CSV, base_formats.XLSX]

    # Export copies personal data out of Omni: it needs the right to change contacts.

    def has_export_permission(self, request):
        return request.user.has_perm("contacts.change_contact")


def add_contact_inline(inline_class):
    """Show another app's rows (consents, messages...) on the contact page."""
    if inline_class not in ContactAdmin.inlines:
        ContactAdmin.inlines = [*ContactAdmin.inlines, inline_class]


def add_contact_display(name: str, display) -> None:
    """Show what another app computes about the contact (whether it can be messaged now...) in
    the contact page's Messaging section. `display(model_admin, contact)` returns the HTML."""
    if name in ContactAdmin.readonly_fields:
        return
    setattr(ContactAdmin, name, display)
    ContactAdmin.readonly_fields = [*ContactAdmin.readonly_fields, name]
    ContactAdmin.fieldsets = [
        (title, {**options, "fields": [*options["fields"], name]}) if title == "Messaging" else (title, options)
        for title, options in ContactAdmin.fieldsets
    ]


class SegmentDefinitionWidget(forms.Widget):
    """The definition as a form of filters (contacts/static/contacts/segment_form.js), kept in a
    hidden input as JSON the marketer never sees."""

    template_name = "contacts/segment_definition_widget.html"

    class Media:
        js = ["contacts/segment_form.js"]
        css = {"all": ["contacts/segment_form.css"]}

    def __init__(self, count_url="", attrs=None):
        super().__init__(attrs)
        self.count_url = count_url

    def format_value(self, value):
        if value in (None, ""):
            return json.dumps({"match": "all", "filters": []})
        return value if isinstance(value, str) else json.dumps(value)

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        context["catalog"] = segments.form_catalog()
        context["catalog_id"] = f"{context['widget']['attrs']['id']}-catalog"
        context["count_url"] = self.count_url
        return context


class SegmentForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = ["name", "description", "definition", "refresh_seconds"]

    def clean_definition(self):
        definition = self.cleaned_data["definition"] or {"match": "all", "filters": []}
        problems = segments.definition_problems(definition)
        if problems:
            raise forms.ValidationError(problems)
        return definition


@admin.register(Segment)
class SegmentAdmin(ModelAdmin):
    form = SegmentForm
    list_display = ["name", "description", "refresh_seconds", "refreshed_at", "updated_at"]
    search_fields = ["name", "description"]
    readonly_fields = ["refreshed_at", "members_filled_at", "created_at", "updated_at"]
    fields = ["name", "description", "definition", "refresh_seconds", "refreshed_at", "members_filled_at",
              "created_at", "updated_at"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        form.base_fields["definition"].widget = SegmentDefinitionWidget(reverse("admin:contacts_segment_count"))
        form.base_fields["definition"].label = "Who is in it"
        return form

    def get_urls(self):
        count = path("count/", self.admin_site.admin_view(self.count_view), name="contacts_segment_count")
        return [count, *super().get_urls()]

    def count_view(self, request):
        """The live count under the form: the unsaved definition in, its count, a sample of
        members and its problems out, under a statement timeout."""
        if request.method != "POST":
            return JsonResponse({"problems": ["Send the definition with POST."]}, status=405)
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            definition = json.loads(request.body or b"{}").get("definition")
        except (ValueError, AttributeError):
            return JsonResponse({"problems": ["The request is not JSON with a definition."]}, status=400)
        found = segments.preview(definition, timeout_ms=settings.SEGMENT_COUNT_TIMEOUT_MS)
        return JsonResponse({
            "problems": found.problems,
            "too_slow": found.too_slow,
            "count": found.count,
            "sample": [{"name": str(c), "url": reverse("admin:contacts_contact_change", args=[c.pk])}
                       for c in found.sample],
        })

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit.record("segment.changed" if change else "segment.created", obj=obj, actor=request.user,
                     reason="admin", data={"fields": form.changed_data})

    def delete_model(self, request, obj):
        audit.record("segment.deleted", obj=obj, actor=request.user, reason="admin", data={"name": obj.name})
        super().delete_model(request, obj)


admin.site.register(ContactImport, import_admin.ContactImportAdmin)
admin.site.register(ErasureRequest, ErasureRequestAdmin)


@admin.register(Device)
class DeviceAdmin(ModelAdmin):
    list_display = ["contact", "platform", "enabled", "app_version", "last_seen_at"]
    list_filter = ["platform", "enabled"]
    search_fields = ["token", "provider_endpoint", "contact__email", "contact__external_id"]
    list_select_related = ["contact"]
    autocomplete_fields = ["contact"]
    readonly_fields = ["created_at"]


@admin.register(ContactEvent)
class ContactEventAdmin(QuarantineAdminMixin, ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["name", "contact", "source", "sent_by", "occurred_at", "received_at", "processed_at",
                    "quarantine_reason"]
    list_filter = ["source", ("processed_at", admin.EmptyFieldListFilter), QuarantinedFilter, "occurred_at"]
    actions = ["retry_quarantined"]
    search_fields = ["name", "idempotency_key", "contact__email", "contact__phone", "contact__external_id"]
    list_select_related = ["contact"]
    date_hierarchy = "occurred_at"


class AuditedDefinitionAdmin(ModelAdmin):
    """Types and stages change what the API accepts: each change is written to the audit log."""

    audit_noun = ""

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit.record(f"{self.audit_noun}.{'changed' if change else 'created'}", obj=obj, actor=request.user,
                     reason="admin", data={"definition": str(obj), "fields": sorted(form.changed_data)})

    def delete_model(self, request, obj):
        audit.record(f"{self.audit_noun}.deleted", obj=obj, actor=request.user, reason="admin",
                     data={"definition": str(obj)})
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(AttributeDefinition)
class AttributeDefinitionAdmin(AuditedDefinitionAdmin):
    audit_noun = "attribute_definition"
    list_display = ["name", "data_type", "description", "updated_at"]
    list_filter = ["data_type"]
    search_fields = ["name", "description"]
    fields = ["name", "data_type", "description"]


@admin.register(EventPropertyDefinition)
class EventPropertyDefinitionAdmin(AuditedDefinitionAdmin):
    audit_noun = "event_property_definition"
    list_display = ["event", "name", "data_type", "description", "updated_at"]
    list_filter = ["data_type", "event"]
    search_fields = ["event", "name", "description"]
    fields = ["event", "name", "data_type", "description"]


@admin.register(LifecycleStage)
class LifecycleStageAdmin(AuditedDefinitionAdmin):
    audit_noun = "lifecycle_stage"
    list_display = ["name", "key", "order"]
    list_editable = ["order"]
    ordering = ["order", "key"]
    search_fields = ["key", "name"]
    fields = ["key", "name", "order"]

    def get_readonly_fields(self, request, obj=None):
        # Contacts and rules hold the key: once saved it stays.
        return ["key"] if obj is not None else []

    def get_deleted_objects(self, objs, request):
        # A stage in use is listed as protected: the admin then shows why and deletes nothing.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        for stage in objs:
            uses = stage.uses()
            if uses:
                protected = [*protected, f"{stage}: used by {' and '.join(uses)}; move them to another stage first"]
        return deleted, counts, perms_needed, protected
