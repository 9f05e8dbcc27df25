"""Admin helpers every app's admin uses (omni's base: imports no app).

Every ModelAdmin and inline inherits from `OmniAdmin` through the three classes below, which sit
on django-unfold's (the admin's theme): a page built on Django's own classes would render with
the stock widgets inside Unfold's frame. omni/tests/test_admin.py fails on one that does not.
"""
from django import forms
from django.contrib import admin
from unfold import admin as unfold_admin


class OmniAdmin:
    """What every admin page of Omni shares (the marker the base test looks for)."""


class ModelAdmin(OmniAdmin, unfold_admin.ModelAdmin):
    pass


class TabularInline(OmniAdmin, unfold_admin.TabularInline):
    pass


class StackedInline(OmniAdmin, unfold_admin.StackedInline):
    pass


def save_edited_fields(obj, form) -> None:
    """Save the fields of an existing row that `form` edits (and its auto_now times), no others:
    what actions change under their own locks (a status, a revocation, an erasure) may have
    committed since the page was read, and a full save would write it back as the page read it."""
    obj.save(update_fields=[field.name for field in obj._meta.concrete_fields
                            if field.name in form.fields or getattr(field, "auto_now", False)])


class RefusesStalePage:
    """A change form that refuses a save from a page read before its row last changed: two people
    editing one row do not silently write over each other.

    The page carries the row's revision as it read it (`revision(row)`) in a hidden field, named
    `revision_field` and declared by the form (it must be in the admin's fieldsets to be sent
    back). clean() reads the row again, locked until the save commits, and when its revision moved
    on refuses the save with `stale_words(row, seen)`: a form error, so nothing is written and the
    page comes back with what was typed. A post without the field (not made from the page) is
    refused the same way: it read no revision. The row as read is kept as `stored`."""

    revision_field = ""

    def revision(self, row) -> str:
        raise NotImplementedError

    def stale_words(self, row, seen: str) -> str:
        raise NotImplementedError

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields[self.revision_field].initial = self.revision(self.instance)

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk:
            row = type(self.instance)._default_manager.select_for_update(no_key=True).get(pk=self.instance.pk)
            self.stored = row  # as saved now, and locked until this save commits
            seen = cleaned.get(self.revision_field)
            seen = "" if seen is None else str(seen)
            if seen != str(self.revision(row)):
                raise forms.ValidationError(self.stale_words(row, seen), code="stale")
        return cleaned


class ReadOnlyAdminMixin:
    """Rows written only by Omni itself (audit, history, provider events): viewable, never edited.

    Users with the view permission see the detail page without a save button; add, change and
    delete are refused to everyone, superusers included.
    """

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(ReadOnlyAdminMixin, TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True


def adopt_saved(obj, saved):
    """Make the admin's unsaved `obj` stand for `saved`, a row an action function created.

    The admin logs the addition and redirects using the object it built from the form, so it
    has to carry the primary key and values of the row the action actually wrote.
    """
    for field in saved._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False
    obj._state.db = saved._state.db


def link_by_id(url_name: str, object_id, label: str) -> str:
    """A link to an admin change page by URL name and plain id ("—" without an id).

    Rows that keep plain ids (audit entries, decisions) link to objects of apps they may not
    import; a URL name needs no import.
    """
    from django.urls import reverse
    from django.utils.html import format_html

    if object_id is None:
        return "—"
    return format_html('<a href="{}">{} {}</a>', reverse(url_name, args=[object_id]), label, object_id)


ADMINISTRATORS_GROUP = "Administrators"


def is_administrator(user) -> bool:
    """Superusers and members of the Administrators group (omni/migrations/0011): they alone keep
    the settings (API keys, periodic tasks, users and groups). Asked once per request's user."""
    if not (user.is_active and user.is_staff):
        return False
    if user.is_superuser:
        return True
    if not hasattr(user, "_omni_is_administrator"):
        user._omni_is_administrator = user.groups.filter(name=ADMINISTRATORS_GROUP).exists()
    return user._omni_is_administrator


class AdministratorsOnlyMixin:
    """Settings pages: refused (403) to everyone but administrators, whatever permissions a
    group hands out, and so absent from their sidebar too."""

    def has_module_permission(self, request):
        return is_administrator(request.user) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return is_administrator(request.user) and super().has_view_permission(request, obj)

    def has_add_permission(self, request, *args, **kwargs):
        return is_administrator(request.user) and super().has_add_permission(request, *args, **kwargs)

    def has_change_permission(self, request, obj=None):
        return is_administrator(request.user) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return is_administrator(request.user) and super().has_delete_permission(request, obj)


class AwaitingApprovalFilter(admin.SimpleListFilter):
    """Rows of an Approvable model whose approval was asked for and not yet given
    (omni/lib/approval.py); ?approval=awaiting."""

    title = "approval"
    parameter_name = "approval"

    def lookups(self, request, model_admin):
        return [("awaiting", "Awaiting approval"), ("approved", "Approved")]

    def queryset(self, request, queryset):
        if self.value() == "awaiting":
            return queryset.filter(approval_requested_at__isnull=False, approved_at__isnull=True)
        if self.value() == "approved":
            return queryset.filter(approved_at__isnull=False)
        return queryset


class OwnedByCreatorMixin:
    """A row with `created_by` and `owner` (a journey, a campaign): whoever creates it is its
    creator, and its owner unless they pick someone else in the form."""

    def get_changeform_initial_data(self, request):
        return {"owner": request.user.pk, **super().get_changeform_initial_data(request)}

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
