import json

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Max
from django.utils.html import format_html

from omni import audit
from omni.choices import Channel
from omni.lib.admin import ModelAdmin, ReadOnlyAdminMixin, ReadOnlyInline, StackedInline

from .actions import publish_template
from .models import OptOutDisclosure, Template, TemplateVariant, TemplateVersion
from .sms_segments import fixed_segments


class ShowsSmsSegments:
    """What an SMS variant's text costs, as saved, read-only beside it."""

    @admin.display(description="SMS segments")
    def sms_segments(self, obj):
        if obj is None or obj.pk is None or obj.channel != Channel.SMS:
            return None
        return fixed_segments(obj.text_body)[1]


class TemplateVariantInline(ShowsSmsSegments, StackedInline):
    model = TemplateVariant
    extra = 0
    fields = [
        ("channel", "locale"), "subject", "preheader", "text_body", "sms_segments", "html_body", "title",
        ("provider_template_id", "provider_variables"),
    ]
    readonly_fields = ["sms_segments"]


class TemplateVersionInline(ReadOnlyInline):
    model = TemplateVersion
    fields = ["number", "purpose", "published_at", "published_by"]
    ordering = ["-number"]
    verbose_name_plural = "published versions (journeys and campaigns send the newest)"


@admin.register(Template)
class TemplateAdmin(ModelAdmin):
    list_display = ["key", "name", "purpose", "allow_fallback", "latest_version_number", "updated_at"]
    list_filter = ["purpose", "allow_fallback"]
    search_fields = ["key", "name", "description"]
    prepopulated_fields = {"key": ["name"]}
    readonly_fields = ["created_at", "updated_at"]
    inlines = [TemplateVariantInline, TemplateVersionInline]
    actions = ["publish_new_version"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(latest_version_number=Max("versions__number"))

    @admin.display(description="latest version", ordering="latest_version_number")
    def latest_version_number(self, obj):
        return obj.latest_version_number or "not published"

    @admin.action(description="Publish new version", permissions=["change"])
    def publish_new_version(self, request, queryset):
        for template in queryset:
            try:
                version = publish_template(template, actor=request.user)
            except ValidationError as exc:
                messages.error(request, f"{template.key} was not published: {' '.join(exc.messages)}")
            else:
                messages.success(request, f"Published {template.key} version {version.number}.")


@admin.register(TemplateVersion)
class TemplateVersionAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["template", "number", "purpose", "allow_fallback", "published_at", "published_by"]
    list_filter = ["purpose", "template"]
    search_fields = ["template__key", "template__name"]
    list_select_related = ["template", "published_by"]
    date_hierarchy = "published_at"
    fields = ["template", "number", "purpose", "allow_fallback", "default_locale", "published_at", "published_by",
              "content"]
    readonly_fields = ["content"]

    @admin.display(description="variants")
    def content(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.variants, indent=2, ensure_ascii=False))


@admin.register(TemplateVariant)
class TemplateVariantAdmin(ShowsSmsSegments, ModelAdmin):
    """Variants are edited on their template's page; this list finds them across templates."""

    list_display = ["template", "channel", "locale", "subject"]
    list_filter = ["channel", "locale"]
    search_fields = ["template__key", "template__name", "subject", "text_body"]
    list_select_related = ["template"]
    autocomplete_fields = ["template"]
    readonly_fields = ["sms_segments"]


@admin.register(OptOutDisclosure)
class OptOutDisclosureAdmin(ModelAdmin):
    """The opt-out line per locale that publishing requires in marketing SMS and WhatsApp variants."""

    list_display = ["locale", "text", "updated_at"]
    search_fields = ["locale", "text"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit.record(f"opt_out_disclosure.{'changed' if change else 'created'}", obj=obj, actor=request.user,
                     data={"locale": obj.locale, "text": obj.text})

    def delete_model(self, request, obj):
        audit.record("opt_out_disclosure.deleted", obj=obj, actor=request.user,
                     data={"locale": obj.locale, "text": obj.text})
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)
