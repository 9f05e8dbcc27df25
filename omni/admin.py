"""The admin site (omni's web layer): its branding, the API keys page and the audit log with its export.

Helpers every app's admin uses live in omni/lib/admin.py, below the apps.
"""
import json

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import admin as auth_admin
from django.contrib.auth.models import Group, User
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Q
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django_celery_beat import admin as beat_admin
from django_otp.plugins.otp_totp import admin as otp_totp_admin
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm
from unfold.widgets import UnfoldAdminSelectWidget, UnfoldAdminTextInputWidget

from contacts.models import Contact
from omni import audit

from .api import forget_verified_keys
from .lib.admin import (AdministratorsOnlyMixin, ModelAdmin, ReadOnlyAdminMixin, TabularInline, adopt_saved, link_by_id,
                        save_edited_fields)
from .models import ApiKey, ApiScope, AuditEntry, AuditPersonalData, WebhookCall, WebhookEndpoint
from .web import exports

admin.site.site_header = "Omni"
admin.site.site_title = "Omni admin"
admin.site.index_title = "Home"


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiScope.choices, widget=forms.CheckboxSelectMultiple, help_text="What this key may do."
    )

    class Meta:
        model = ApiKey
        fields = ["name", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(AdministratorsOnlyMixin, ModelAdmin):
    form = ApiKeyForm
    list_display = ["name", "prefix", "scope_list", "created_by", "created_at", "last_used_at", "is_revoked"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_keys"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "scopes"]
        return ["name", "scopes", *self.readonly_fields]

    @admin.display(description="scopes")
    def scope_list(self, obj):
        return ", ".join(obj.scopes)

    @admin.display(description="revoked", boolean=True, ordering="revoked_at")
    def is_revoked(self, obj):
        return obj.revoked_at is not None

    def has_delete_permission(self, request, obj=None):
        # Revoke instead: a deleted key would take with it the record of who created it and
        # when it was last used.
        return False

    def save_model(self, request, obj, form, change):
        if change:
            save_edited_fields(obj, form)  # a revocation that committed meanwhile stays
            audit.record("apikey.changed", obj=obj, actor=request.user,
                         data={"name": obj.name, "scopes": obj.scopes, "changed": form.changed_data})
            forget_verified_keys()  # a scope taken off is refused at once here, elsewhere within the cache time
            return
        key, raw_key = ApiKey.generate(form.cleaned_data["name"], form.cleaned_data["scopes"], created_by=request.user)
        adopt_saved(obj, key)
        audit.record("apikey.created", obj=key, actor=request.user, data={"name": key.name, "scopes": key.scopes})
        # The raw key exists only in this message: the database keeps its hash.
        messages.success(
            request, f"New API key for “{key.name}”: {raw_key} — copy it now, it will not be shown again."
        )

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_keys(self, request, queryset):
        now = timezone.now()
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True):
            # Conditional update: a key revoked by someone else meanwhile is not revoked twice.
            if ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=now):
                audit.record("apikey.revoked", obj=key, actor=request.user, data={"name": key.name})
                revoked += 1
        forget_verified_keys()  # other web processes forget it within OMNI_API_KEY_CACHE_SECONDS
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)


# --- Outbound webhooks -----------------------------------------------------------------------

@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ModelAdmin):
    """Administrators manage endpoints, marketers see them (by their groups' permissions). The
    secret is shown once, after create or rotation; the page shows it masked."""

    list_display = ["name", "url", "active", "timeout_seconds", "updated_at"]
    list_filter = ["active"]
    search_fields = ["name", "url"]
    readonly_fields = ["masked_secret", "created_at", "updated_at"]
    actions = ["rotate_secrets"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "url", "active", "timeout_seconds"]
        return ["name", "url", "active", "timeout_seconds", *self.readonly_fields]

    @admin.display(description="signing secret")
    def masked_secret(self, obj):
        return obj.masked_secret

    def has_delete_permission(self, request, obj=None):
        # Make it inactive instead: its call log keeps pointing at it.
        return False

    def save_model(self, request, obj, form, change):
        if change:
            save_edited_fields(obj, form)  # a secret rotated meanwhile stays
        else:
            super().save_model(request, obj, form, change)
        data = {"name": obj.name, "url": obj.url, "active": obj.active, "timeout_seconds": obj.timeout_seconds}
        if change:
            audit.record("webhook_endpoint.changed", obj=obj, actor=request.user,
                         data={**data, "changed": form.changed_data})
            return
        audit.record("webhook_endpoint.created", obj=obj, actor=request.user, data=data)
        messages.success(request, _secret_notice(obj))

    @admin.action(description="Rotate the signing secret", permissions=["change"])
    def rotate_secrets(self, request, queryset):
        for endpoint in queryset:
            endpoint.rotate_secret()
            audit.record("webhook_endpoint.secret_rotated", obj=endpoint, actor=request.user,
                         data={"name": endpoint.name})
            messages.success(request, _secret_notice(endpoint))


def _secret_notice(endpoint) -> str:
    # The only place the secret is shown whole: the page shows it masked.
    return (f"Signing secret of “{endpoint.name}”: {endpoint.secret} — copy it into the receiver now; "
            f"it will not be shown again (rotate it to get a new one).")


@admin.register(WebhookCall)
class WebhookCallAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["requested_at", "endpoint", "idempotency_key", "attempt", "status_code", "duration_ms",
                    "outcome", "error"]
    list_filter = ["outcome", "endpoint", "requested_at"]
    list_select_related = ["endpoint"]
    search_fields = ["idempotency_key"]
    date_hierarchy = "requested_at"
    show_full_result_count = False  # the log grows large


# --- Audit log and its export --------------------------------------------------------------

@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdminMixin, ModelAdmin):
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
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term:
            contacts = Contact.objects.filter(
                Q(email__iexact=term) | Q(phone=term) | Q(external_id=term)
            ).values_list("pk", flat=True)[:50]
            # From `queryset`, which the list filters have narrowed already: a contact's entries
            # of other actions or days are not what the page (or its export) was asked for.
            found |= queryset.filter(contact_id__in=list(contacts))
        return found, may_have_duplicates

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
        """A streamed CSV (omni/web/exports.py: PostgreSQL's COPY where it runs), audited when it
        starts with the scope and when it ends with the rows."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        download = exports.export_audit_entries(queryset, actor=request.user, scope=scope)
        response = StreamingHttpResponse(download.stream, content_type=download.content_type)
        response["Content-Disposition"] = f'attachment; filename="{download.filename}"'
        return response


# --- django_celery_beat's pages, on the theme -----------------------------------------------
# Registered again on Omni's base as Unfold's documentation shows for django-celery-beat: its
# own admins are stock Django classes (omni's app comes after django_celery_beat in
# INSTALLED_APPS, so its registrations exist to be replaced here).

for _model in (PeriodicTask, IntervalSchedule, CrontabSchedule, SolarSchedule, ClockedSchedule):
    admin.site.unregister(_model)


class UnfoldTaskSelectWidget(UnfoldAdminSelectWidget, beat_admin.TaskSelectWidget):
    pass


class UnfoldPeriodicTaskForm(beat_admin.PeriodicTaskForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["task"].widget = UnfoldAdminTextInputWidget()
        self.fields["regtask"].widget = UnfoldTaskSelectWidget()


class PeriodicTaskInline(beat_admin.PeriodicTaskInline, TabularInline):
    pass


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(AdministratorsOnlyMixin, beat_admin.PeriodicTaskAdmin, ModelAdmin):
    form = UnfoldPeriodicTaskForm


@admin.register(ClockedSchedule)
class ClockedScheduleAdmin(AdministratorsOnlyMixin, beat_admin.ClockedScheduleAdmin, ModelAdmin):
    inlines = [PeriodicTaskInline]


@admin.register(CrontabSchedule)
class CrontabScheduleAdmin(AdministratorsOnlyMixin, beat_admin.CrontabScheduleAdmin, ModelAdmin):
    inlines = [PeriodicTaskInline]


@admin.register(SolarSchedule)
class SolarScheduleAdmin(AdministratorsOnlyMixin, beat_admin.SolarScheduleAdmin, ModelAdmin):
    inlines = [PeriodicTaskInline]


@admin.register(IntervalSchedule)
class IntervalScheduleAdmin(AdministratorsOnlyMixin, beat_admin.IntervalScheduleAdmin, ModelAdmin):
    inlines = [PeriodicTaskInline]


# --- Users and groups, on the theme (as Unfold's documentation shows), administrators only ----

admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class UserAdmin(AdministratorsOnlyMixin, auth_admin.UserAdmin, ModelAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm


@admin.register(Group)
class GroupAdmin(AdministratorsOnlyMixin, auth_admin.GroupAdmin, ModelAdmin):
    pass


# --- django-otp's authenticator devices, on the theme ------------------------------------------
# Staff set up their own authenticator at /admin/2fa/setup/; administrators see and remove them here.
admin.site.unregister(TOTPDevice)


@admin.register(TOTPDevice)
class TOTPDeviceAdmin(AdministratorsOnlyMixin, otp_totp_admin.TOTPDeviceAdmin, ModelAdmin):
    pass
