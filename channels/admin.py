import uuid

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from jinja2 import UndefinedError
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from unfold.decorators import action as unfold_action
from unfold.widgets import (
    UnfoldAdminIntegerFieldWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextareaWidget,
    UnfoldAdminTextInputWidget,
    UnfoldForeignKeyRawIdWidget,
)

from compliance import gate
from compliance.admin import AuditedRuleAdmin
from contacts.admin import add_contact_display
from contacts.models import Contact, validate_timezone
from omni import audit
from omni.choices import PHONE_CHANNELS, Channel, Purpose
from omni.lib.admin import (
    ModelAdmin,
    ReadOnlyAdminMixin,
    ReadOnlyInline,
    TabularInline,
    adopt_saved,
    is_administrator,
)
from omni.lib.quarantine import QuarantineAdminMixin, QuarantinedFilter
from omni.lib.text import hash_address
from templates.rendering import RenderError

from . import conversations, whatsapp
from .assignment import set_available
from .business_hours import Schedule
from .inbound_settings import INBOUND_CHANNELS
from .plans import FALLBACK_CONDITIONS, MAX_FALLBACK_SECONDS, channel_plan_problems
from .delivery import settle_delivery
from .provider_reports import record_inbound_message
from .support_access import assignable_agents, conversations_for
from .routing import provider_name
from .models import (
    ArbitrationRule,
    DefaultChannelPlan,
    END_OF_DAY,
    AgentStatus,
    AutoResponse,
    BlockedSender,
    BusinessHours,
    Conversation,
    ConversationStatus,
    ConversationTag,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    EscalationRule,
    EscalationTrigger,
    Holiday,
    InboundMessage,
    Message,
    OpeningHours,
    OutboxMessage,
    SavedReply,
    ServiceLevel,
    SupportQueue,
)
from .support_automation import AUTOMATED_TEXT_VARIABLES, check_text_variables, phrases_of

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
    list_display = ["id", "contact", "is_test", "purpose", "urgency", "status", "status_reason", "current_channel",
                    "source", "created_at", "quarantine_reason"]
    list_filter = ["status", QuarantinedFilter, "purpose", "source", "urgency", "is_test"]
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
    list_display = ["id", "message", "test_send", "channel", "provider", "to_address", "status", "attempts",
                    "error_code", "queued_at", "sent_at", "quarantine_reason"]
    list_filter = ["status", UnresolvedFilter, QuarantinedFilter, "channel", "provider", "error_permanent",
                   ("message__is_test", admin.BooleanFieldListFilter)]
    actions = ["retry_quarantined", "mark_sent", "mark_failed"]
    search_fields = ["to_address", "provider_message_id", "error_code", *CONTACT_SEARCH_FIELDS]
    # Message.__str__ names its contact.
    list_select_related = ["message__contact"]
    date_hierarchy = "queued_at"
    inlines = [DeliveryEventInline]

    @admin.display(description="test", boolean=True, ordering="message__is_test")
    def test_send(self, obj):
        return obj.message.is_test

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


def sandbox_inbound_channels() -> list[str]:
    """The channels customers can write in on here, whose provider is the sandbox."""
    # Text channels first: customers mostly text.
    return [channel for channel in (Channel.SMS, Channel.WHATSAPP, Channel.RCS, Channel.EMAIL)
            if channel in INBOUND_CHANNELS and provider_name(channel) == "sandbox"]


class WriteInForm(forms.Form):
    """A customer writing in, simulated in the sandbox: from a contact, or from any address."""

    channel = forms.ChoiceField(widget=UnfoldAdminSelectWidget)
    contact = forms.ModelChoiceField(
        Contact.objects.reachable(), required=False,
        widget=UnfoldForeignKeyRawIdWidget(InboundMessage._meta.get_field("contact").remote_field, admin.site),
        help_text="Writes from the contact's number or email address.")
    address = forms.CharField(
        required=False, max_length=254, widget=UnfoldAdminTextInputWidget,
        help_text="Or from this phone number (E.164, e.g. +14155550199) or email address; an address no contact "
                  "has makes a contact marked unknown sender.")
    body = forms.CharField(max_length=1600, widget=UnfoldAdminTextareaWidget(attrs={"rows": 4}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["channel"].choices = [(channel, Channel(channel).label) for channel in sandbox_inbound_channels()]

    def clean(self):
        cleaned = super().clean()
        channel, contact, address = cleaned.get("channel"), cleaned.get("contact"), cleaned.get("address", "").strip()
        if not channel:
            return cleaned
        if contact is not None:
            address = contact.address_for(channel)
            if not address:
                raise forms.ValidationError(f"{contact} has no address for {Channel(channel).label}.")
        elif not address:
            raise forms.ValidationError("Choose a contact or give the address the customer writes from.")
        try:
            cleaned["from_address"] = conversations.clean_address(channel, address)
        except conversations.ConversationError as error:
            raise forms.ValidationError(str(error)) from None
        return cleaned


class BlockedFilter(admin.SimpleListFilter):
    title = "from a blocked sender"
    parameter_name = "blocked"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(blocked=self.value() == "yes")
        return queryset


@admin.register(InboundMessage)
class InboundMessageAdmin(QuarantineAdminMixin, ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["received_at", "channel", "from_address", "body_preview", "keyword", "needs_agent", "blocked",
                    "contact", "conversation", "handled_at", "quarantine_reason"]
    list_filter = ["needs_agent", BlockedFilter, QuarantinedFilter, "channel", "keyword", "provider"]
    search_fields = ["from_address", "to_address", "body", "provider_message_id", *CONTACT_SEARCH_FIELDS]
    # Conversation.__str__ names its contact.
    list_select_related = ["contact", "conversation__contact"]
    date_hierarchy = "received_at"
    # Quarantined by support automation's tick stage (channels/support_automation.py).
    actions = ["retry_quarantined"]
    actions_list = ["write_in"]

    @admin.display(description="body")
    def body_preview(self, obj):
        return preview(obj.body)

    def has_write_in_permission(self, request):
        return bool(sandbox_inbound_channels()) and request.user.has_perms(
            ["channels.view_inboundmessage", "channels.change_conversation"])

    @unfold_action(description="A customer writes in (sandbox)", url_path="write-in", permissions=["write_in"])
    def write_in(self, request):
        """The sandbox's stand-in for a customer texting or emailing: the message goes through
        record_inbound_message as a provider's webhook would hand it over."""
        form = WriteInForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            channel = form.cleaned_data["channel"]
            inbound, _ = record_inbound_message(
                "sandbox", f"sandbox-in-{uuid.uuid4().hex}", channel, form.cleaned_data["from_address"],
                to_address=settings.TWILIO_FROM_NUMBER if channel in PHONE_CHANNELS else "",
                body=form.cleaned_data["body"], raw={"simulated": True, "by": request.user.get_username()})
            inbound.refresh_from_db()
            if inbound.conversation_id and conversations_for(request.user).filter(pk=inbound.conversation_id).exists():
                self.message_user(request, "The customer's message is in the conversation.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:channels_conversation_change",
                                                    args=[inbound.conversation_id]))
            if inbound.conversation_id:
                self.message_user(request, "The message was received. Its conversation is in none of your queues "
                                           "(a new one goes to the default queue when the tick runs).",
                                  messages.INFO)
                return HttpResponseRedirect(reverse("admin:channels_inboundmessage_change", args=[inbound.pk]))
            self.message_user(request, "The message was received; it opened no conversation "
                                       f"({_why_no_conversation(inbound)}).", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:channels_inboundmessage_change", args=[inbound.pk]))
        context = {**self.admin_site.each_context(request), "title": "A customer writes in (sandbox)",
                   "form": form, "opts": self.model._meta, "media": self.media + form.media}
        return TemplateResponse(request, "admin/channels/inboundmessage/write_in.html", context)


def _why_no_conversation(inbound: InboundMessage) -> str:
    if inbound.blocked:
        return "the sender is blocked"
    if inbound.keyword:
        return f"a {inbound.keyword} keyword opens none"
    return "it answered the satisfaction question" if inbound.conversation_id else "no contact could be made for it"


class InboundMessageInline(ReadOnlyInline):
    model = InboundMessage
    fields = ["received_at", "from_address", "body", "keyword", "needs_agent"]
    ordering = ["received_at"]


class ConversationForm(forms.ModelForm):
    class Meta:
        model = Conversation
        fields = ["status", "assignee", "follow_up_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "status" in self.fields and self.instance.pk:
            # Only the moves the status table allows (channels.conversations.STATUS_TRANSITIONS).
            current = self.instance.status
            allowed = {current, *conversations.STATUS_TRANSITIONS[current]}
            self.fields["status"].choices = [(value, label) for value, label in ConversationStatus.choices
                                             if value in allowed]


@admin.register(Conversation)
class ConversationAdmin(ModelAdmin):
    """Support agents work conversations: status, who handles it and when to look again, each
    change through channels.conversations (audited there); the rest is kept by Omni."""

    form = ConversationForm
    list_display = ["contact", "channel", "status", "assignee", "queue", "tag_names", "first_response_due_at",
                    "follow_up_at", "opened_at", "last_activity_at"]
    list_filter = ["status", "channel", "queue", "assignee", "tags", "resolved_by"]
    search_fields = ["queue__name", *CONTACT_SEARCH_FIELDS]
    list_select_related = ["contact", "assignee", "queue"]
    fieldsets = [
        (None, {"fields": ["contact", "channel", "status", "assignee", "queue", "tag_names", "follow_up_at"]}),
        ("Times", {"fields": ["opened_at", "first_response_due_at", "first_response_at", "resolution_due_at",
                              "waiting_since", "last_inbound_at", "last_activity_at", "closed_at"]}),
        ("Outcome", {"fields": ["resolved_by", "closed_by", "first_response_seconds",
                                "first_response_business_seconds", "resolution_seconds",
                                "resolution_business_seconds", "satisfaction_asked_at", "satisfaction"]}),
    ]
    readonly_fields = ["contact", "channel", "queue", "tag_names", "opened_at", "first_response_due_at",
                       "first_response_at", "resolution_due_at", "waiting_since", "last_inbound_at",
                       "last_activity_at", "closed_at", "resolved_by", "closed_by", "first_response_seconds",
                       "first_response_business_seconds", "resolution_seconds", "resolution_business_seconds",
                       "satisfaction_asked_at", "satisfaction"]
    inlines = [InboundMessageInline]
    actions = ["close_selected", "assign_to_me", "unassign"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status == ConversationStatus.CLOSED:
            return [*self.readonly_fields, "status", "assignee"]
        return self.readonly_fields

    @admin.display(description="tags")
    def tag_names(self, obj):
        return ", ".join(tag.name for tag in obj.tags.all()) or "—"

    def get_queryset(self, request):
        return conversations_for(request.user, super().get_queryset(request)).prefetch_related("tags")

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
        """No raw save: each change goes through its action, which writes and audits it."""
        stored = Conversation.objects.get(pk=obj.pk)
        if "assignee" in form.changed_data:
            conversations.assign([stored], obj.assignee, actor=request.user)
        if "follow_up_at" in form.changed_data:
            conversations.set_follow_up(stored, obj.follow_up_at, actor=request.user)
        if "status" in form.changed_data:
            moves = {ConversationStatus.OPEN: conversations.set_open, ConversationStatus.WAITING: conversations.set_waiting}
            if obj.status == ConversationStatus.CLOSED:
                moved = conversations.close([stored], actor=request.user) == 1
            else:
                moved = moves[obj.status](stored, actor=request.user)
            if not moved:
                self.message_user(request, f"The conversation is {Conversation.objects.get(pk=obj.pk).status} now "
                                           f"and cannot become {obj.status}.", messages.WARNING)

    @admin.action(description="Close selected conversations", permissions=["change"])
    def close_selected(self, request, queryset):
        closed = conversations.close(queryset, actor=request.user)
        self.message_user(request, f"Closed {closed} conversation(s).")

    @admin.action(description="Assign selected conversations to me", permissions=["change"])
    def assign_to_me(self, request, queryset):
        assigned = conversations.assign(queryset, request.user, actor=request.user)
        self.message_user(request, f"Assigned {assigned} conversation(s) to you.")

    @admin.action(description="Unassign selected conversations", permissions=["change"])
    def unassign(self, request, queryset):
        unassigned = conversations.assign(queryset, None, actor=request.user)
        self.message_user(request, f"Unassigned {unassigned} conversation(s).")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        # A plain list of those who may work conversations rather than an autocomplete: the
        # autocomplete would need every agent to hold the permission to view users.
        if db_field.name == "assignee":
            kwargs["queryset"] = assignable_agents()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ActiveBlockFilter(admin.SimpleListFilter):
    title = "in force"
    parameter_name = "active"

    def lookups(self, request, model_admin):
        return [("yes", "Blocked now"), ("no", "Lifted")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(unblocked_at__isnull=self.value() == "yes")
        return queryset


class BlockSenderForm(forms.ModelForm):
    class Meta:
        model = BlockedSender
        fields = ["channel", "address", "reason", "note"]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("channel") and cleaned.get("address"):
            try:
                cleaned["address"] = conversations.clean_address(cleaned["channel"], cleaned["address"])
            except conversations.ConversationError as error:
                self.add_error("address", str(error))
                return cleaned
            existing = conversations.blocked_senders(cleaned["channel"], hash_address(cleaned["address"])).first()
            if existing is not None:
                self.add_error("address", f"{cleaned['address']} is blocked on {existing.get_channel_display()} "
                                          f"already, since {existing.blocked_at:%Y-%m-%d %H:%M}.")
        return cleaned


@admin.register(BlockedSender)
class BlockedSenderAdmin(ModelAdmin):
    """Senders whose messages open nothing and get no automated answer: blocked from here (Add),
    lifted with the action (after a confirmation); every block is kept as history, never edited."""

    form = BlockSenderForm
    list_display = ["address", "channel", "reason", "blocked_by", "blocked_at", "unblocked_by", "unblocked_at"]
    list_filter = [ActiveBlockFilter, "channel", "reason"]
    search_fields = ["address", "note"]
    list_select_related = ["blocked_by", "unblocked_by"]
    readonly_fields = ["blocked_by", "blocked_at", "unblocked_by", "unblocked_at"]
    date_hierarchy = "blocked_at"
    actions = ["unblock_selected"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["channel", "address", "reason", "note"]
        return ["channel", "address", "reason", "note", *self.readonly_fields]

    def has_change_permission(self, request, obj=None):
        return False  # history: a block is lifted by the action, never edited

    def has_delete_permission(self, request, obj=None):
        return False

    def has_unblock_permission(self, request):
        return request.user.has_perm("channels.change_blockedsender")

    def save_model(self, request, obj, form, change):
        block = conversations.block_sender(obj.channel, obj.address, reason=obj.reason, note=obj.note,
                                           actor=request.user)
        adopt_saved(obj, block)

    @admin.action(description="Unblock selected senders", permissions=["unblock"])
    def unblock_selected(self, request, queryset):
        blocks = list(queryset.filter(unblocked_at__isnull=True))
        if request.POST.get("confirmed") != "yes":
            context = {**self.admin_site.each_context(request), "title": "Unblock these senders?",
                       "blocks": blocks, "opts": self.model._meta,
                       "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME}
            return TemplateResponse(request, "admin/channels/blockedsender/unblock_confirmation.html", context)
        if not self.has_unblock_permission(request):
            raise PermissionDenied
        lifted = sum(conversations.unblock_sender(block, actor=request.user) for block in blocks)
        self.message_user(request, f"Unblocked {lifted} sender(s); their next messages open conversations again.")


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
    reach = gate.reachability_by_purpose({purpose: ([contact], None) for purpose in Purpose.values}, now, facts)
    return {purpose: reach[purpose][contact.pk] for purpose in Purpose.values}


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


# --- support settings: hours, service levels, queues, agents, tags, rules, saved replies ----------

def _text_problem(source: str, extra: tuple[str, ...]) -> str | None:
    """Why an automated text cannot be sent as written, in words, or None."""
    try:
        check_text_variables(source, extra)
    except RenderError as error:
        cause = error.__cause__
        if isinstance(cause, UndefinedError):
            known = "".join(f"{{{{ {name} }}}}, " for name in extra)
            return (f"Unknown variable: {cause.message}. This text may use {known}{{{{ first_name }}}}, "
                    f"{{{{ last_name }}}} and the contact's others ({{{{ contact.email }}}}, "
                    f"{{{{ contact.attributes.NAME }}}}...).")
        return f"Not a valid template: {str(cause or error).rstrip('.')}."
    return None


class AutomatedTextsForm(forms.ModelForm):
    """Checks the texts Omni sends by itself: each variable must be one it can fill."""

    # {field name: the variables it may use besides the contact's}
    text_fields: dict[str, tuple[str, ...]] = {}

    def clean(self):
        cleaned = super().clean()
        for name, extra in self.text_fields.items():
            if cleaned.get(name) and (problem := _text_problem(cleaned[name], extra)):
                self.add_error(name, problem)
        return cleaned


class OpeningHoursForm(forms.ModelForm):
    class Meta:
        model = OpeningHours
        fields = ["weekday", "opens", "closes"]

    def clean(self):
        cleaned = super().clean()
        opens, closes = cleaned.get("opens"), cleaned.get("closes")
        if opens is not None and closes is not None and closes <= opens:
            self.add_error("closes", "Closes must be later than opens (23:59 closes at the end of the day; "
                                     "a night shift is two rows, one each side of midnight).")
        return cleaned


class OpeningHoursFormSet(BaseInlineFormSet):
    def clean(self):
        super().clean()
        kept = [form.cleaned_data for form in self.forms
                if form.cleaned_data and not form.cleaned_data.get("DELETE") and not form.errors]
        if any(form.errors for form in self.forms):
            return
        if not kept:
            raise ValidationError("Give at least one opening: hours that never open have no due times "
                                  "(a channel answered around the clock needs no business hours at all).")
        zone = self.instance.timezone if zone_exists(self.instance.timezone) else "UTC"
        try:
            Schedule(zone, tuple((row["weekday"], row["opens"], None if row["closes"] == END_OF_DAY else row["closes"])
                                 for row in kept))
        except ValueError as error:
            raise ValidationError(f"These openings do not fit together: {error}.") from error


def zone_exists(name: str) -> bool:
    try:
        validate_timezone(name)
    except ValidationError:
        return False
    return bool(name)


class OpeningHoursInline(TabularInline):
    model = OpeningHours
    form = OpeningHoursForm
    formset = OpeningHoursFormSet
    extra = 0


class HolidayInline(TabularInline):
    model = Holiday
    fields = ["date", "name"]
    extra = 0


@admin.register(BusinessHours)
class BusinessHoursAdmin(AuditedRuleAdmin):
    """When people answer: a service level counts its due times in these hours only."""

    audit_noun = "business_hours"
    list_display = ["name", "timezone", "week"]
    search_fields = ["name"]
    inlines = [OpeningHoursInline, HolidayInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("openings")

    @admin.display(description="opening hours")
    def week(self, obj):
        return "; ".join(str(opening) for opening in obj.openings.all()) or "never open"


class ServiceLevelForm(AutomatedTextsForm):
    text_fields = {"after_hours_reply": AUTOMATED_TEXT_VARIABLES, "satisfaction_question": ()}

    class Meta:
        model = ServiceLevel
        fields = ["channel", "business_hours", "first_response_minutes", "resolution_minutes", "after_hours_reply",
                  "satisfaction_question"]
        help_texts = {"after_hours_reply": "Sent once per conversation and local day to a customer who writes "
                                           "outside business hours; {{ response_due }} says when a person "
                                           "answers. Empty: none."}

    def clean(self):
        cleaned = super().clean()
        if (cleaned.get("after_hours_reply") or "").strip() and not cleaned.get("business_hours"):
            self.add_error("after_hours_reply", "An after-hours reply needs business hours: without them it is "
                                                "never after hours, and the reply would never go out.")
        return cleaned


@admin.register(ServiceLevel)
class ServiceLevelAdmin(AuditedRuleAdmin):
    audit_noun = "service_level"
    form = ServiceLevelForm
    list_display = ["channel", "business_hours", "first_response_minutes", "resolution_minutes", "replies_after_hours",
                    "asks_satisfaction"]
    list_select_related = ["business_hours"]

    @admin.display(boolean=True, description="after-hours reply")
    def replies_after_hours(self, obj):
        return bool(obj.after_hours_reply.strip())

    @admin.display(boolean=True, description="satisfaction question")
    def asks_satisfaction(self, obj):
        return bool(obj.satisfaction_question.strip())


def staff_users():
    """Who can work conversations: active staff (a plain list rather than an autocomplete, which
    would need every editor to hold the permission to view users)."""
    return get_user_model().objects.filter(is_staff=True, is_active=True).order_by("username")


class SupportQueueForm(forms.ModelForm):
    class Meta:
        model = SupportQueue
        fields = ["name", "assignment", "max_open_per_agent", "agents", "is_default"]

    def clean_max_open_per_agent(self):
        value = self.cleaned_data["max_open_per_agent"]
        if value < 1:
            raise ValidationError("At least 1: with 0 nobody gets anything (choose “No automatic assignment” "
                                  "for a queue handed out by hand).")
        return value

    def clean_is_default(self):
        if self.cleaned_data["is_default"]:
            other = SupportQueue.objects.filter(is_default=True).exclude(pk=self.instance.pk).first()
            if other is not None:
                raise ValidationError(f"“{other}” is the default queue already: untick it there first.")
        return self.cleaned_data["is_default"]


@admin.register(SupportQueue)
class SupportQueueAdmin(AuditedRuleAdmin):
    """Queues and who works them; new conversations no escalation rule routes wait in the default one."""

    audit_noun = "support_queue"
    form = SupportQueueForm
    list_display = ["name", "assignment", "max_open_per_agent", "is_default", "agent_count", "unassigned"]
    list_filter = ["assignment"]
    search_fields = ["name"]
    filter_horizontal = ["agents"]

    def get_queryset(self, request):
        # Subqueries, not joins: a join of agents and conversations would multiply their rows.
        members = (SupportQueue.agents.through.objects.filter(supportqueue_id=OuterRef("pk")).order_by()
                   .values("supportqueue_id").annotate(n=Count("pk")).values("n"))
        waiting = (Conversation.objects.filter(queue_id=OuterRef("pk"), status=ConversationStatus.OPEN,
                                               assignee__isnull=True).order_by()
                   .values("queue_id").annotate(n=Count("pk")).values("n"))
        return super().get_queryset(request).annotate(
            agent_count=Coalesce(Subquery(members), 0), unassigned=Coalesce(Subquery(waiting), 0))

    @admin.display(description="agents", ordering="agent_count")
    def agent_count(self, obj):
        return obj.agent_count

    @admin.display(description="open, unassigned", ordering="unassigned")
    def unassigned(self, obj):
        return obj.unassigned

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "agents":
            kwargs["queryset"] = staff_users()
        return super().formfield_for_manytomany(db_field, request, **kwargs)


@admin.register(AgentStatus)
class AgentStatusAdmin(ModelAdmin):
    """Who takes new conversations now: automatic assignment gives them only to available agents."""

    list_display = ["agent", "available", "changed_at"]
    list_filter = ["available"]
    search_fields = ["agent__username", "agent__first_name", "agent__last_name"]
    list_select_related = ["agent"]
    actions = ["mark_available", "mark_away"]

    def get_fields(self, request, obj=None):
        return ["agent", "available"] if obj is None else ["agent", "available", "changed_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["agent", "changed_at"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "agent":
            kwargs["queryset"] = self._markable(request, staff_users(), "pk")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None):
        # An agent marks themselves; administrators mark anyone.
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or obj.agent_id == request.user.pk or is_administrator(request.user))

    @staticmethod
    def _markable(request, queryset, agent_field: str = "agent"):
        return queryset if is_administrator(request.user) else queryset.filter(**{agent_field: request.user.pk})

    def save_model(self, request, obj, form, change):
        adopt_saved(obj, set_available(obj.agent, obj.available, actor=request.user))

    def has_delete_permission(self, request, obj=None):
        return False  # mark the agent away instead: the change is audited

    @admin.action(description="Mark available", permissions=["change"])
    def mark_available(self, request, queryset):
        self._mark(request, queryset, True)

    @admin.action(description="Mark away", permissions=["change"])
    def mark_away(self, request, queryset):
        self._mark(request, queryset, False)

    def _mark(self, request, queryset, available):
        changing = [status.agent for status in self._markable(request, queryset).select_related("agent")
                    if status.available != available]
        for agent in changing:
            set_available(agent, available, actor=request.user)
        changed = len(changing)
        self.message_user(request, f"{changed} agent(s) marked {'available' if available else 'away'}.",
                          messages.SUCCESS if changed else messages.WARNING)


@admin.register(ConversationTag)
class ConversationTagAdmin(AuditedRuleAdmin):
    audit_noun = "conversation_tag"
    list_display = ["name"]
    search_fields = ["name"]


class EscalationRuleForm(AutomatedTextsForm):
    text_fields = {"acknowledgement": AUTOMATED_TEXT_VARIABLES}

    class Meta:
        model = EscalationRule
        fields = ["name", "active", "trigger", "phrases", "threshold", "queue", "acknowledgement", "position"]

    def clean(self):
        cleaned = super().clean()
        trigger, threshold = cleaned.get("trigger"), cleaned.get("threshold")
        if trigger == EscalationTrigger.PHRASE and not phrases_of(cleaned.get("phrases", "")):
            self.add_error("phrases", "Give at least one phrase, one per line: this rule escalates a message "
                                      "that contains one.")
        if trigger == EscalationTrigger.AUTOMATED_REPLIES and threshold is not None and threshold < 1:
            self.add_error("threshold", "At least 1: with 0 every message would escalate.")
        if trigger == EscalationTrigger.REPEATED_MESSAGE and threshold is not None and threshold < 2:
            self.add_error("threshold", "At least 2: a message sent once is not repeated.")
        return cleaned


@admin.register(EscalationRule)
class EscalationRuleAdmin(AuditedRuleAdmin):
    """When a conversation needs a person. Rules run in position order; the first match wins."""

    audit_noun = "escalation_rule"
    form = EscalationRuleForm
    list_display = ["name", "active", "trigger", "queue", "position"]
    list_filter = ["active", "trigger", "queue"]
    search_fields = ["name", "phrases", "acknowledgement"]
    list_select_related = ["queue"]
    ordering = ["position", "id"]


class AutoResponseForm(AutomatedTextsForm):
    text_fields = {"body": AUTOMATED_TEXT_VARIABLES}

    class Meta:
        model = AutoResponse
        fields = ["name", "active", "phrases", "body", "channel", "position"]

    NO_PHRASES = "Give at least one phrase, one per line: the response answers a message that contains one."

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["phrases"].error_messages["required"] = self.NO_PHRASES

    def clean_phrases(self):
        if not phrases_of(self.cleaned_data["phrases"]):
            raise ValidationError(self.NO_PHRASES)
        return self.cleaned_data["phrases"]


@admin.register(AutoResponse)
class AutoResponseAdmin(AuditedRuleAdmin):
    """Automated first responses: sent before any agent answered, once per response and conversation."""

    audit_noun = "auto_response"
    form = AutoResponseForm
    list_display = ["name", "active", "channel", "position", "body_preview"]
    list_filter = ["active", "channel"]
    search_fields = ["name", "phrases", "body"]
    ordering = ["position", "id"]

    @admin.display(description="body")
    def body_preview(self, obj):
        return preview(obj.body)


class SavedReplyForm(AutomatedTextsForm):
    text_fields = {"body": ()}

    class Meta:
        model = SavedReply
        fields = ["title", "body", "channel"]


@admin.register(SavedReply)
class SavedReplyAdmin(AuditedRuleAdmin):
    audit_noun = "saved_reply"
    form = SavedReplyForm
    list_display = ["title", "channel", "body_preview"]
    list_filter = ["channel"]
    search_fields = ["title", "body"]

    @admin.display(description="body")
    def body_preview(self, obj):
        return preview(obj.body)


# --- Default channel plans ------------------------------------------------------------------

# A plan tries each channel at most once.
PLAN_STEPS = len(Channel.values)


def _plan_step_fields(number: int) -> dict:
    return {
        f"channel_{number}": forms.ChoiceField(
            label=f"{number}. channel", required=number == 1, choices=[("", "—"), *Channel.choices],
            widget=UnfoldAdminSelectWidget),
        f"fallback_after_{number}": forms.IntegerField(
            label="move on after (seconds)", required=False, min_value=1, max_value=MAX_FALLBACK_SECONDS,
            widget=UnfoldAdminIntegerFieldWidget,
            help_text="Blank: only when this channel fails." if number == 1 else ""),
        f"fallback_unless_{number}": forms.ChoiceField(
            label="unless by then", required=False,
            choices=[("", "—"), *((condition, condition) for condition in FALLBACK_CONDITIONS)],
            widget=UnfoldAdminSelectWidget),
    }


class DefaultChannelPlanForm(forms.ModelForm):
    """The plan as up to one row per channel, in order: a channel, when to move on to the next
    one, and what keeps the message on this one. Written to `channel_plan` in routing's form."""

    class Meta:
        model = DefaultChannelPlan
        fields = ["purpose", "urgency"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for number, entry in enumerate(self.instance.channel_plan or [], start=1):
            self.initial.update({f"channel_{number}": entry.get("channel", ""),
                                 f"fallback_after_{number}": entry.get("fallback_after_seconds"),
                                 f"fallback_unless_{number}": entry.get("fallback_unless", "")})

    def clean(self):
        cleaned = super().clean()
        plan, gap = [], None
        for number in range(1, PLAN_STEPS + 1):
            channel = cleaned.get(f"channel_{number}")
            after, unless = cleaned.get(f"fallback_after_{number}"), cleaned.get(f"fallback_unless_{number}")
            if not channel:
                gap = gap or number
                if after or unless:
                    self.add_error(f"channel_{number}", "Choose a channel for this step, or clear its settings.")
                continue
            if gap:
                self.add_error(f"channel_{number}", f"Choose channel {gap} first: plan steps come in order.")
            if channel in [entry["channel"] for entry in plan]:
                self.add_error(f"channel_{number}", f"{channel} is already in the plan.")
            entry = {"channel": channel}
            if after:
                entry["fallback_after_seconds"] = after
            if unless:
                entry["fallback_unless"] = unless
            plan.append(entry)
        if plan and ("fallback_after_seconds" in plan[-1] or "fallback_unless" in plan[-1]):
            self.add_error(f"fallback_after_{len(plan)}", "The last channel has no next one to move on to.")
        for problem in channel_plan_problems(plan) if plan else ():
            self.add_error(None, problem)
        self.instance.channel_plan = plan
        return cleaned

    def _update_errors(self, errors):
        # The model's own check names `channel_plan`, a field this form shows as plan steps: what
        # it finds goes to the top of the form instead.
        if hasattr(errors, "error_dict") and "channel_plan" in errors.error_dict:
            errors.error_dict.setdefault(NON_FIELD_ERRORS, []).extend(errors.error_dict.pop("channel_plan"))
        super()._update_errors(errors)


for _number in range(1, PLAN_STEPS + 1):
    DefaultChannelPlanForm.base_fields.update(_plan_step_fields(_number))
    DefaultChannelPlanForm.declared_fields.update(_plan_step_fields(_number))


@admin.register(DefaultChannelPlan)
class DefaultChannelPlanAdmin(AuditedRuleAdmin):
    audit_noun = "default_channel_plan"
    form = DefaultChannelPlanForm
    list_display = ["purpose", "urgency", "plan", "updated_at"]
    list_filter = ["purpose", "urgency"]
    readonly_fields = ["plan"]

    def get_fieldsets(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            return [(None, {"fields": ["purpose", "urgency", "plan"]})]
        return [(None, {"fields": [("purpose", "urgency")]}),
                *((f"Plan step {n}", {"fields": [(f"channel_{n}", f"fallback_after_{n}", f"fallback_unless_{n}")]})
                  for n in range(1, PLAN_STEPS + 1))]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            return ["purpose", "urgency", "plan"]
        return []

    @admin.display(description="plan")
    def plan(self, obj):
        return describe_plan(obj.channel_plan)

    def save_model(self, request, obj, form, change):
        obj.save()
        # The entry keeps the whole plan, not only the names of the form fields that changed.
        audit.record(f"{self.audit_noun}.{'changed' if change else 'created'}", obj=obj, actor=request.user,
                     data={"rule": str(obj), "channel_plan": obj.channel_plan, "changed": form.changed_data})


def describe_plan(plan) -> str:
    """A channel plan in words: "sms (after 300 s unless delivered), then email"."""
    parts = []
    for entry in plan or []:
        text = entry.get("channel", "?")
        if "fallback_after_seconds" in entry:
            unless = f" unless {entry['fallback_unless']}" if entry.get("fallback_unless") else ""
            text += f" (after {entry['fallback_after_seconds']} s{unless})"
        parts.append(text)
    return ", then ".join(parts) or "—"


# --- Arbitration rules ------------------------------------------------------------------------

WINDOW_UNITS = (("minutes", "minutes"), ("hours", "hours"), ("days", "days"))
WINDOW_UNIT_SECONDS = {"minutes": 60, "hours": 3600, "days": 86400}


def window_in_words(seconds: int) -> str:
    """"2 hours", "7 days"; "off" for zero."""
    if not seconds:
        return "off"
    for unit in ("days", "hours", "minutes"):
        if seconds % WINDOW_UNIT_SECONDS[unit] == 0:
            count = seconds // WINDOW_UNIT_SECONDS[unit]
            return f"{count} {unit if count != 1 else unit[:-1]}"
    return f"{seconds} seconds"


class WindowWidget(forms.MultiWidget):
    def __init__(self, attrs=None):
        super().__init__([UnfoldAdminIntegerFieldWidget(attrs={"min": 0, "aria-label": "how many"}),
                          UnfoldAdminSelectWidget(choices=WINDOW_UNITS, attrs={"aria-label": "unit"})], attrs)

    def decompress(self, value):
        if not value:
            return [0, "hours"]
        for unit in ("days", "hours", "minutes"):
            if value % WINDOW_UNIT_SECONDS[unit] == 0:
                return [value // WINDOW_UNIT_SECONDS[unit], unit]
        return [round(value / 60), "minutes"]


class WindowField(forms.MultiValueField):
    """A window typed as a number and a unit (zero: off), kept as seconds."""

    widget = WindowWidget

    def __init__(self, **kwargs):
        super().__init__([forms.IntegerField(min_value=0, max_value=365 * 24 * 60),
                          forms.ChoiceField(choices=WINDOW_UNITS)], **kwargs)

    def compress(self, values):
        if not values or values[0] in (None, ""):
            return 0
        return values[0] * WINDOW_UNIT_SECONDS[values[1] or "hours"]


class ArbitrationRuleForm(forms.ModelForm):
    intent_window_seconds = WindowField(
        label="intent window",
        help_text="A message is dropped when the contact was given a message with the same intent key within "
                  "this long, from any journey, campaign or API call. 0: never checked.")
    collision_window_seconds = WindowField(
        label="collision window",
        help_text="A message of this purpose gives way to a more important message to the same contact (a "
                  "higher purpose, transactional first; then a higher priority) going within this long, "
                  "whatever its intent. 0: it never gives way.")

    class Meta:
        model = ArbitrationRule
        fields = ["purpose", "intent_window_seconds", "one_per_channel", "collision_window_seconds", "action"]


@admin.register(ArbitrationRule)
class ArbitrationRuleAdmin(AuditedRuleAdmin):
    """How each purpose's messages give way to others for the same contact, whatever their source.
    Each message that gives way keeps a decision naming the rule and the message it gave way to."""

    audit_noun = "arbitration_rule"
    form = ArbitrationRuleForm
    list_display = ["__str__", "intent_window", "one_per_channel", "collision_window", "action", "version",
                    "updated_at"]
    list_filter = ["action", "one_per_channel"]

    @admin.display(description="intent window")
    def intent_window(self, obj):
        return window_in_words(obj.intent_window_seconds)

    @admin.display(description="collision window")
    def collision_window(self, obj):
        return window_in_words(obj.collision_window_seconds)
