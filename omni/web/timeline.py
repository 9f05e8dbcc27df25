"""One contact's history on one page: messages with their deliveries and provider events,
replies, events, consent changes, journeys and the gate's decisions, merged by time.

Pages are keyset-paginated. Every kind is its own source, read through an index that leads
with the contact and then the kind's time; a page takes at most PAGE_SIZE rows from each source
past the cursor and merges them by (time, kind, id). The cursor is the last entry's
(time, kind, id), so entries sharing a time are neither skipped nor repeated across pages.
"""
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from campaigns.models import LIVE_ENROLLMENT_STATES, Enrollment, JourneyStepVisit
from channels.models import (Conversation, ConversationStatus, Delivery, DeliveryEvent, EventType, InboundMessage,
                             Message)
from channels.support_access import conversations_for
from compliance.models import ConsentChange, Decision
from contacts.models import ContactEvent
from omni.choices import Channel, Purpose

PAGE_SIZE = 50

NEWEST, OLDEST = "newest", "oldest"


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    model: type
    time_field: str
    # Whether the kind has a channel to filter on (a field, or for messages their deliveries').
    has_channel: bool
    # The permission a user needs to see entries of this kind.
    permission: str


# In merge order: at equal times, the earlier kind here comes first (oldest first).
KINDS = [
    Kind("event", "Events", ContactEvent, "occurred_at", False, "contacts.view_contactevent"),
    Kind("consent", "Consent changes", ConsentChange, "occurred_at", True, "compliance.view_consentchange"),
    Kind("enrollment", "Journey enrollments", Enrollment, "entered_at", False, "campaigns.view_enrollment"),
    Kind("visit", "Journey steps", JourneyStepVisit, "visited_at", False, "campaigns.view_journeystepvisit"),
    Kind("decision", "Gate decisions", Decision, "decided_at", True, "compliance.view_decision"),
    Kind("message", "Messages", Message, "created_at", True, "channels.view_message"),
    Kind("inbound", "Replies", InboundMessage, "received_at", True, "channels.view_inboundmessage"),
    Kind("exit", "Journey exits", Enrollment, "ended_at", False, "campaigns.view_enrollment"),
]
KINDS_BY_NAME = {kind.name: kind for kind in KINDS}
RANK = {kind.name: rank for rank, kind in enumerate(KINDS)}

# What well-known provider error codes mean (Twilio's error dictionary, SES bounce sub-types);
# the provider's own text is shown beside it.
ERROR_MEANINGS = {
    "21211": "Twilio: the 'To' number is not a valid phone number",
    "21408": "Twilio: sending to this region is not enabled on the account",
    "21610": "Twilio: the recipient replied STOP (unsubscribed on the carrier)",
    "21612": "Twilio: this number cannot be reached from the sending number",
    "21614": "Twilio: the 'To' number is not a mobile number",
    "30001": "Twilio: queue overflow, too many messages queued",
    "30002": "Twilio: the account is suspended",
    "30003": "Twilio: unreachable destination handset (off, or out of coverage)",
    "30004": "Twilio: message blocked by the recipient or carrier",
    "30005": "Twilio: unknown destination handset (the number does not exist)",
    "30006": "Twilio: landline or unreachable carrier",
    "30007": "Twilio: filtered by the carrier as spam",
    "30008": "Twilio: unknown error from the carrier",
    "30034": "Twilio: the sending number is not registered for A2P 10DLC",
    "63016": "Twilio WhatsApp: outside the 24-hour window, only an approved template may be sent",
    "General": "SES: the recipient's server rejected the message",
    "NoEmail": "SES: the address does not exist",
    "Suppressed": "SES: the address is on SES's suppression list after earlier bounces",
    "OnAccountSuppressionList": "SES: the address is on this account's suppression list",
    "MailboxFull": "SES: the mailbox is full (a soft bounce; retrying later may work)",
    "MessageTooLarge": "SES: the message is too large for the recipient's server",
    "ContentRejected": "SES: the recipient's server rejected the content",
    "AttachmentRejected": "SES: the recipient's server rejected an attachment",
    "abuse": "SES complaint: the recipient marked the email as spam",
}


def error_meaning(text: str) -> tuple[str, str]:
    """The provider's error code found in a delivery's error code or an event's detail, and what it
    means ("", "" when none is known). Reads "30003: unreachable", "undelivered: error 30003" and
    SES's "hard: NoEmail"."""
    for token in str(text or "").replace(":", " ").replace(",", " ").split():
        if token in ERROR_MEANINGS:
            return token, ERROR_MEANINGS[token]
    return "", ""


@dataclass
class Entry:
    kind: str
    at: datetime
    id: object
    row: object
    details: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        return (self.at, RANK[self.kind], str(self.id) if self.kind == "decision" else self.id)

    @property
    def label(self) -> str:
        return KINDS_BY_NAME[self.kind].label


@dataclass
class Page:
    entries: list
    next_cursor: str | None
    visible: list  # kinds the user may see
    hidden: list  # kinds the user may not see (Kind)


def visible_kinds(user) -> tuple[list[Kind], list[Kind]]:
    """The kinds `user` may read, and those hidden from them."""
    shown, hidden = [], []
    for kind in KINDS:
        (shown if user.has_perm(kind.permission) else hidden).append(kind)
    return shown, hidden


def encode_cursor(entry: Entry) -> str:
    return f"{entry.at.isoformat()}|{entry.kind}|{entry.id}"


def decode_cursor(cursor: str | None) -> tuple | None:
    """(time, kind, id) from a cursor, or None for the first page (or one that does not read)."""
    if not cursor:
        return None
    try:
        at, kind, raw_id = cursor.split("|")
        when = parse_datetime(at)
        if when is None or kind not in KINDS_BY_NAME:
            return None
        return when, kind, (str(uuid.UUID(raw_id)) if kind == "decision" else int(raw_id))
    except ValueError:
        return None


def _source(kind: Kind, contact_id: int, channel: str):
    """The rows of one kind for the contact, through its contact-then-time index."""
    if kind.name == "visit":
        # Visits have no contact of their own: they are read through the contact's enrollments.
        rows = JourneyStepVisit.objects.filter(enrollment__contact_id=contact_id).select_related(
            "enrollment__journey", "journey_version")
    elif kind.name == "decision":
        rows = Decision.objects.filter(contact_id=contact_id)
    elif kind.name in ("enrollment", "exit"):
        rows = Enrollment.objects.filter(contact_id=contact_id).select_related("journey", "journey_version")
        if kind.name == "exit":
            rows = rows.filter(ended_at__isnull=False)
    elif kind.name == "message":
        rows = Message.objects.filter(contact_id=contact_id).select_related(
            "template_version__template", "agent", "api_key", "journey_visit__journey", "campaign_recipient__campaign")
        if channel:
            rows = rows.filter(Exists(Delivery.objects.filter(message=OuterRef("pk"), channel=channel)))
    else:
        rows = kind.model.objects.filter(contact_id=contact_id)
        if kind.name == "consent":
            rows = rows.select_related("actor")
    if channel and kind.has_channel and kind.name != "message":
        rows = rows.filter(channel=channel)
    return rows


def rows_of(kind_name: str, contact_id: int, channel: str = ""):
    """All rows of one kind for the contact (unordered): what the timeline pages through, and
    what the contact's report (omni/web/exports.py) writes whole."""
    return _source(KINDS_BY_NAME[kind_name], contact_id, channel)


def _past_cursor(kind: Kind, cursor: tuple | None, newest_first: bool) -> Q:
    """Rows of `kind` strictly after the cursor in page order: by (time, kind rank, id)."""
    if cursor is None:
        return Q()
    at, cursor_kind, cursor_id = cursor
    before = "lt" if newest_first else "gt"
    strictly = Q(**{f"{kind.time_field}__{before}": at})
    same_time = Q(**{kind.time_field: at})
    rank, cursor_rank = RANK[kind.name], RANK[cursor_kind]
    if rank == cursor_rank:
        return strictly | (same_time & Q(**{f"pk__{before}": cursor_id}))
    # At the cursor's time, a kind that comes after the cursor's kind in page order still has all
    # its rows to show; one that comes before has shown them already.
    if (rank < cursor_rank) == newest_first:
        return strictly | same_time
    return strictly


def read_page(contact, user, *, order: str = NEWEST, channel: str = "", kinds=(), cursor: str | None = None,
              size: int = PAGE_SIZE) -> Page:
    """One page of `contact`'s timeline as `user` may see it: at most `size` entries after
    `cursor`, newest (or oldest) first, only `kinds` (all visible kinds when empty) and only
    entries on `channel` when given (kinds without a channel drop out then)."""
    newest_first = order != OLDEST
    shown, hidden = visible_kinds(user)
    wanted = [k for k in shown if (not kinds or k.name in kinds) and (not channel or k.has_channel)]
    position = decode_cursor(cursor)
    direction = "-" if newest_first else ""
    entries = []
    for kind in wanted:
        rows = (_source(kind, contact.pk, channel).filter(_past_cursor(kind, position, newest_first))
                .order_by(f"{direction}{kind.time_field}", f"{direction}pk")[:size + 1])
        entries += [Entry(kind.name, getattr(row, kind.time_field), row.pk, row) for row in rows]
    entries.sort(key=lambda entry: entry.key, reverse=newest_first)
    page = entries[:size]
    _add_details(page, user)
    # Each source gave one row more than a page: more than a page in all means more to come.
    next_cursor = encode_cursor(page[-1]) if len(entries) > size else None
    return Page(page, next_cursor, shown, hidden)


def _add_details(entries: list[Entry], user) -> None:
    """Deliveries with their provider events under each message; the source of each message."""
    messages = {e.id: e for e in entries if e.kind == "message"}
    if not messages:
        return
    deliveries = []
    if user.has_perm("channels.view_delivery"):
        deliveries = list(Delivery.objects.filter(message_id__in=messages).order_by("plan_step", "queued_at", "pk"))
    events = {}
    if deliveries and user.has_perm("channels.view_deliveryevent"):
        for event in DeliveryEvent.objects.filter(delivery__in=deliveries).order_by("occurred_at", "pk"):
            event.code, event.meaning = error_meaning(event.detail)
            events.setdefault(event.delivery_id, []).append(event)
    for entry in messages.values():
        entry.details["deliveries"] = []
        entry.details["source"] = message_source(entry.row)
    for delivery in deliveries:
        delivery.timeline_events = events.get(delivery.pk, [])
        delivery.code, delivery.meaning = error_meaning(delivery.error_code or delivery.error_message)
        messages[delivery.message_id].details["deliveries"].append(delivery)


def message_source(message) -> str:
    """Where a message came from, in words: the journey step, campaign, agent or API key."""
    visit = _related(message, "journey_visit")
    if visit is not None:
        return f"journey {visit.journey.name}, step {visit.step_key}"
    recipient = _related(message, "campaign_recipient")
    if recipient is not None:
        variant = f", variant {recipient.variant}" if recipient.variant else ""
        return f"campaign {recipient.campaign.name}{variant}"
    if message.agent_id:
        return f"agent {message.agent.get_username()}"
    if message.api_key_id:
        return f"API key {message.api_key}"
    return message.get_source_display()


def _related(message, name: str):
    try:
        return getattr(message, name)
    except ObjectDoesNotExist:  # a reverse one-to-one with no row
        return None


@dataclass
class Summary:
    last_delivered: object
    last_clicked: object
    enrollments: list
    conversations: list
    reachability: dict  # {purpose: {channel: Verdict}}


def summary(contact, user, now=None) -> Summary:
    """What sits beside the timeline: the last delivered and clicked messages, live enrollments,
    open conversations and whether each channel can be used now (and why not)."""
    from channels.admin import reachability_now

    now = now or timezone.now()
    last_delivered = last_clicked = None
    if user.has_perm("channels.view_delivery"):
        last_delivered = (Delivery.objects.filter(contact=contact, delivered_at__isnull=False)
                          .order_by("-delivered_at", "-pk").first())
        last_clicked = (DeliveryEvent.objects.filter(delivery__contact=contact, event_type=EventType.CLICKED)
                        .select_related("delivery").order_by("-occurred_at", "-pk").first())
    enrollments = []
    if user.has_perm("campaigns.view_enrollment"):
        enrollments = list(Enrollment.objects.filter(contact=contact, state__in=LIVE_ENROLLMENT_STATES)
                           .select_related("journey").order_by("next_run_at", "pk"))
    conversations = []
    if user.has_perm("channels.view_conversation"):
        conversations = list(conversations_for(user, Conversation.objects.filter(contact=contact))
                             .exclude(status=ConversationStatus.CLOSED)
                             .select_related("assignee").order_by("-last_activity_at"))
    return Summary(last_delivered, last_clicked, enrollments, conversations, reachability_now(contact, now))


CHANNEL_CHOICES = Channel.choices
PURPOSE_CHOICES = Purpose.choices


def reach_rows(summary: Summary) -> list[tuple[str, list]]:
    """The side panel's table: per channel, the verdict for each purpose in PURPOSE_CHOICES' order."""
    return [(label, [summary.reachability[purpose][channel_value] for purpose in Purpose.values])
            for channel_value, label in Channel.choices]
