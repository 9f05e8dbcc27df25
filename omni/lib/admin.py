"""Admin helpers every app's admin uses (omni's base: imports no app)."""
from django.contrib import admin


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


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
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
