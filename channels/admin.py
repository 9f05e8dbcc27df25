from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.http import Http404
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from compliance import gate
from contacts.admin import add_contact_display
from omni import audit
from omni.choices import Channel, Purpose
from omni.lib.admin import ModelAdmin, ReadOnlyAdminMixin, ReadOnlyInline
from omni.lib.quarantine import QuarantineAdminMixin, QuarantinedFilter

from . import whatsapp
from .delivery import settle_delivery
from .support_access import conversations_for
from .routing import provider_name
from .models import (
    Conversation,
    ConversationStatus,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    InboundMessage,
    Message,
    OutboxMessage,
)

CONTACT_SEARCH_FIELDS = ["contact__email", "contact__phone", "contact__external_id"]


def preview(text: str, length: int = 80) -> str:
    return Truncator(" ".join((text or "").split())).chars(length)


class UnresolvedFilter(admin.SimpleListFilter):
    """Uncertain deliveries nothing settled in time (channels.delivery.flag_unresolved_deliveries):
    a person finds out from the provider whether they went out and marks them sent or failed."""

    title = "needs a person"
    parameter_name = "unresolved"

    def lookups(self, request, model_admin):
        return [("yes", "Uncertain, not settled in time")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(status=DeliveryStatus.UNCERTAIN, unresolved_at__isnull=False)
        return queryset


class DeliveryInline(ReadOnlyInline):
    model = Delivery
    fields = ["channel", "provider", "to_address", "status", "attempts", "error_code", "queued_at", "sent_at",
              "delivered_at", "engaged_at", "failed_at"]
    ordering = ["queued_at"]


class DeliveryEventInline(ReadOnlyInline):
    model = DeliveryEvent
    fields = ["event_type", "detail", "permanent", "recipient", "occurred_at", "received_at"]
    ordering = ["occurred_at"]


@admin.register(Message)
class MessageAdmin(QuarantineAdminMixin, ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["id", "contact", "purpose", "urgency", "status", "status_reason", "current_channel", "source",
                    "created_at", "quarantine_reason"]
    list_filter = ["status", QuarantinedFilter, "purpose", "source", "urgency"]
    actions = ["retry_quarantined"]
    search_fields = ["intent_key", "idempotency_key", *CONTACT_SEARCH_FIELDS]
    list_select_related = ["contact"]
    date_hierarchy = "created_at"
    inlines = [DeliveryInline]

    @admin.display(description="channel")
    def current_channel(self, obj):
        return obj.current_channel or "—"


@admin.register(Delivery)
class DeliveryAdmin(QuarantineAdminMixin, ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["id", "message", "channel", "provider", "to_address", "status", "attempts", "error_code",
                    "queued_at", "sent_at", "quarantine_reason"]
    list_filter = ["status", UnresolvedFilter, QuarantinedFilter, "channel", "provider", "error_permanent"]
    actions = ["retry_quarantined", "mark_sent", "mark_failed"]
    search_fields = ["to_address", "provider_message_id", "error_code", *CONTACT_SEARCH_FIELDS]
    # Message.__str__ names its contact.
    list_select_related = ["message__contact"]
    date_hierarchy = "queued_at"
    inlines = [DeliveryEventInline]

    @admin.action(description="Mark uncertain deliveries as sent", permissions=["settle"])
    def mark_sent(self, request, queryset):
        self._settle(request, queryset, DeliveryStatus.SENT)

    @admin.action(description="Mark uncertain deliveries as failed (fall back)", permissions=["settle"])
    def mark_failed(self, request, queryset):
        self._settle(request, queryset, DeliveryStatus.FAILED)

    def _settle(self, request, queryset, to):
        uncertain = queryset.filter(status=DeliveryStatus.UNCERTAIN).select_related("message", "contact")
        settled = sum(settle_delivery(delivery, to, reason="operator", actor=request.user) for delivery in uncertain)
        skipped = queryset.count() - settled
        self.message_user(request, f"{settled} delivery(ies) marked {to}" + (
            f"; {skipped} skipped (only uncertain deliveries are settled by hand)." if skipped else "."),
            messages.SUCCESS if settled else messages.WARNING)

    def has_settle_permission(self, request):
        return request.user.has_perm("channels.change_delivery")


@admin.register(DeliveryEvent)
class DeliveryEventAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["occurred_at", "event_type", "provider", "delivery", "recipient", "detail", "permanent"]
    list_filter = ["event_type", "provider", "permanent"]
    search_fields = ["provider_message_id", "provider_event_id", "recipient", "detail"]
    list_select_related = ["delivery"]
    date_hierarchy = "occurred_at"


@admin.register(InboundMessage)
class InboundMessageAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["received_at", "channel", "from_address", "body_preview", "keyword", "needs_agent", "contact",
                    "conversation"]
    list_filter = ["needs_agent", "channel", "keyword", "provider"]
    search_fields = ["from_address", "to_address", "body", "provider_message_id", *CONTACT_SEARCH_FIELDS]
    # Conversation.__str__ names its contact.
    list_select_related = ["contact", "conversation__contact"]
    date_hierarchy = "received_at"

    @admin.display(description="body")
    def body_preview(self, obj):
        return preview(obj.body)


class InboundMessageInline(ReadOnlyInline):
    model = InboundMessage
    fields = ["received_at", "from_address", "body", "keyword", "needs_agent"]
    ordering = ["received_at"]


@admin.register(Conversation)
class ConversationAdmin(ModelAdmin):
    """Support agents work conversations: they set the status and who handles it, nothing else."""

    list_display = ["contact", "channel", "status", "assignee", "queue", "opened_at", "last_activity_at"]
    list_filter = ["status", "channel", "queue", "assignee"]
    search_fields = ["queue__name", *CONTACT_SEARCH_FIELDS]
    list_select_related = ["contact", "assignee"]
    fields = ["contact", "channel", "status", "assignee", "queue", "opened_at", "first_response_due_at",
              "first_response_at", "closed_at", "last_activity_at"]
    readonly_fields = ["contact", "channel", "queue", "opened_at", "first_response_due_at", "first_response_at",
                       "closed_at", "last_activity_at"]
    inlines = [InboundMessageInline]

    def get_queryset(self, request):
        return conversations_for(request.user, super().get_queryset(request))

    def get_object(self, request, object_id, from_field=None):
        # One out of the user's reach answers 404, as on the inbox, rather than the admin's
        # redirect home.
        found = super().get_object(request, object_id, from_field)
        if found is None:
            raise Http404("No such conversation, or not one of yours.")
        return found

    def has_add_permission(self, request):
        return False  # a conversation starts when a contact writes in

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if "status" in form.changed_data:
            obj.closed_at = timezone.now() if obj.status == ConversationStatus.CLOSED else None
        super().save_model(request, obj, form, change)
        if form.changed_data:
            audit.record(
                "conversation.changed", contact=obj.contact, obj=obj, actor=request.user, channel=obj.channel,
                reason=obj.status, data={"assignee_id": obj.assignee_id, "changed": form.changed_data},
                personal={"assignee": obj.assignee.get_username()} if obj.assignee else None,
            )

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        # A plain list of staff rather than an autocomplete: the autocomplete would need every
        # agent to hold the permission to view users.
        if db_field.name == "assignee":
            kwargs["queryset"] = get_user_model().objects.filter(is_staff=True, is_active=True).order_by("username")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """The sandbox outbox: what Omni would have sent, newest first."""

    list_display = ["created_at", "channel", "to_address", "content_preview", "simulated_outcome", "delivery"]
    list_filter = ["channel", "simulated_outcome"]
    search_fields = ["to_address", "subject", "text_body", "provider_message_id"]
    list_select_related = ["delivery"]
    ordering = ["-created_at", "-id"]
    date_hierarchy = "created_at"

    @admin.display(description="subject / body")
    def content_preview(self, obj):
        return preview(obj.subject or obj.text_body)


# --- on the contact page ----------------------------------------------------------------------

def reachability_now(contact, now=None) -> dict:
    """{purpose: {channel: Verdict}} for one contact now, with the WhatsApp window and the
    provider each channel would use passed to the gate; reads only, never locks."""
    now = now or timezone.now()
    sessions = whatsapp.session_ends([contact.pk], now)
    facts = {(contact.pk, channel): {"provider": provider_name(channel)} for channel in Channel.values}
    facts[(contact.pk, Channel.WHATSAPP)]["whatsapp_session"] = contact.pk in sessions
    return {purpose: gate.reachability([contact], purpose, now, facts)[contact.pk] for purpose in Purpose.values}


def _reach_cell(verdict) -> str:
    if verdict.allowed:
        text = "yes"
        if verdict.facts.channel_facts.get("whatsapp_session") is False:
            text = "yes, with an approved template (no session in 24 h)"
        return text
    if verdict.outcome == gate.DEFER:
        return f"later: {verdict.reason} until {verdict.until:%Y-%m-%d %H:%M %Z}"
    return f"no: {verdict.reason}"


@admin.display(description="can be messaged now")
def contact_reachability(model_admin, obj):
    if obj.pk is None:
        return "—"
    reach = reachability_now(obj)
    header = format_html_join("", "<th>{}</th>", ((label,) for _, label in Purpose.choices))
    rows = format_html_join(
        "", '<tr class="reach-{}"><th>{}</th>{}</tr>',
        ((channel, label, format_html_join("", "<td>{}</td>", ((_reach_cell(reach[purpose][channel]),)
                                                              for purpose in Purpose.values)))
         for channel, label in Channel.choices))
    return format_html('<table class="reachability"><thead><tr><th>channel</th>{}</tr></thead><tbody>{}</tbody>'
                       "</table>", header, rows)


add_contact_display("reachability", contact_reachability)
