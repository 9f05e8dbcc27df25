"""Erasing contacts from the admin: an action on the contact list and a button on the contact's
page, both asking for the reason on a confirmation page, both calling
contacts.erasure_requests.request_erasure (which erases at once, or queues the erasure behind a
running import). Only roles holding contacts.erase_contact see them. The queued erasures have a
read-only list of their own (ErasureRequestAdmin)."""
from django import forms
from django.contrib import admin, messages
from django.db.models import Case, Value, When
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.timezone import localtime
from unfold.decorators import action as unfold_action
from unfold.widgets import UnfoldAdminTextareaWidget

from omni.lib.admin import ModelAdmin, ReadOnlyAdminMixin

from .actions import ERASURE_REASON_MAX_CHARS, ContactAlreadyErased, InvalidField
from .erasure_requests import ALREADY_QUEUED, ERASED, pending_request_for, request_erasure
from .models import ErasureRequestStatus

ERASE_CONTACT = "contacts.erase_contact"
# Contacts one confirmation erases: each is a transaction across every app, and the page lists them.
MAX_ERASED_AT_ONCE = 100


class EraseForm(forms.Form):
    reason = forms.CharField(
        max_length=ERASURE_REASON_MAX_CHARS, widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}),
        help_text="Why the contact is erased, e.g. the request's ticket number. Kept beside the audit entry, "
                  "outside the chain.")


class ContactErasureMixin:
    actions_detail = ["erase_detail"]

    def has_erase_permission(self, request, obj=None):
        return request.user.has_perm(ERASE_CONTACT)

    def get_actions_detail(self, request, object_id):
        # An erased contact has nothing left to erase (its page at erase/ still says so).
        actions = super().get_actions_detail(request, object_id)
        if actions and self.model.objects.filter(pk=object_id, erased_at__isnull=False).exists():
            return [action for action in actions if action.action_name != "contacts_contact_erase_detail"]
        return actions

    @admin.action(description="Erase personal data of selected contacts…", permissions=["erase"])
    def erase_contacts(self, request, queryset):
        contacts = list(queryset.order_by("pk")[:MAX_ERASED_AT_ONCE + 1])
        if len(contacts) > MAX_ERASED_AT_ONCE:
            self.message_user(request, f"Erase at most {MAX_ERASED_AT_ONCE} contacts at once.", messages.ERROR)
            return None
        return self.erasure_page(request, contacts, done_url=reverse("admin:contacts_contact_changelist"),
                                 selected=True)

    @unfold_action(description="Erase personal data…", url_path="erase", permissions=["erase"])
    def erase_detail(self, request, object_id):
        contact = self.get_object(request, object_id)
        if contact is None:
            raise Http404("No contact has this id.")
        return self.erasure_page(request, [contact],
                                 done_url=reverse("admin:contacts_contact_change", args=[contact.pk]))

    def erasure_page(self, request, contacts, *, done_url: str, selected: bool = False):
        """The confirmation page (GET, or the list action's first POST); erases on its own POST."""
        confirmed = request.method == "POST" and "confirm_erasure" in request.POST
        form = EraseForm(request.POST if confirmed else None)
        if confirmed and form.is_valid():
            erased = 0
            for contact in contacts:
                try:
                    answer = request_erasure(contact, request.user, form.cleaned_data["reason"])
                except ContactAlreadyErased as exc:
                    self.message_user(request, str(exc), messages.WARNING)
                    continue
                except InvalidField as exc:
                    form.add_error("reason", exc.messages[0])
                    break
                if answer.outcome == ERASED:
                    erased += 1
                elif selected:
                    # From the contact's own page, that page says it when it opens again (ContactAdmin).
                    self.message_user(request, queued_words(answer.request, contact=contact,
                                                            already=answer.outcome == ALREADY_QUEUED),
                                      messages.WARNING)
            else:
                if erased:
                    self.message_user(request, f"Erased the personal data of {erased} contact(s). Their messages "
                                               "not sent yet were cancelled and their journeys ended.",
                                      messages.SUCCESS)
                return HttpResponseRedirect(done_url)
        context = {
            **self.admin_site.each_context(request),
            "title": "Erase personal data",
            "opts": self.model._meta,
            "contacts": contacts,
            "already_erased": [c for c in contacts if c.erased_at is not None],
            "form": form,
            "selected": selected,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "cancel_url": done_url,
        }
        return TemplateResponse(request, "admin/contacts/contact/erase_confirmation.html", context)


def queued_words(pending, *, contact=None, already: bool = False):
    """The warning that an erasure waits for an import: after the officer confirmed it (from the
    contact list, `contact` names whom it is about; `already`: it had been asked for before), and
    on the contact's page while it waits."""
    return format_html(
        "{}Not erased yet: an import that names this contact is running, so {} (asked by {} on {}). It runs by itself "
        "as soon as the import finishes. Follow it under Compliance › <a href=\"{}\">Erasure requests</a>.",
        f"{contact}: " if contact is not None else "",
        "an erasure of this contact was already queued" if already else "the erasure is queued",
        pending.actor_label or "a system", asked_on(pending),
        reverse("admin:contacts_erasurerequest_change", args=[pending.pk]))


def pending_erasure_words(contact_id: int):
    """What the contact's page says while an erasure of them waits for an import, or None."""
    pending = pending_request_for(contact_id)
    return queued_words(pending) if pending is not None else None


def asked_on(pending) -> str:
    return f"{localtime(pending.requested_at):%Y-%m-%d %H:%M}"


class ErasureRequestAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """The erasures queued behind a running import, pending ones first. Only Omni writes them
    (contacts.erasure_requests); the reason is emptied once the erasure ran."""

    list_display = ["contact", "status", "outcome", "actor_label", "requested_at", "attempts", "last_tried_at",
                    "done_at"]
    list_filter = ["status", "outcome"]
    list_select_related = ["contact"]
    search_fields = ["contact__external_id", "actor_label"]
    # Pending first, then the most recently asked.
    ordering = [Case(When(status=ErasureRequestStatus.PENDING, then=Value(0)), default=Value(1)).asc(),
                "-requested_at"]
    fields = ["contact", "status", "outcome", "actor_label", "requested_by", "requested_at", "why", "attempts",
              "last_tried_at", "done_at"]
