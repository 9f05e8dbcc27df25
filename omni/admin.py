"""The admin site (omni's web layer): its branding and the API keys page.

Helpers every app's admin uses live in omni/lib/admin.py, below the apps.
"""
from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from omni import audit

from .api import forget_verified_keys
from .lib.admin import adopt_saved
from .models import ApiKey, ApiScope

admin.site.site_header = "Omni"
admin.site.site_title = "Omni admin"
admin.site.index_title = "Contacts, consent, templates, journeys and deliveries"


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiScope.choices, widget=forms.CheckboxSelectMultiple, help_text="What this key may do."
    )

    class Meta:
        model = ApiKey
        fields = ["name", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
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
            super().save_model(request, obj, form, change)
            audit.record("apikey.changed", obj=obj, actor=request.user,
                         data={"name": obj.name, "scopes": obj.scopes, "changed": form.changed_data})
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
