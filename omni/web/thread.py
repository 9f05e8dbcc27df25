"""One conversation as agents read it: what the customer wrote, replies with their delivery
status, automated messages, keyword confirmations and notes, oldest first.

The page shows the last THREAD_LIMIT entries (each source reads at most that many, newest
first, and the merge keeps the newest): a fixed number of queries whatever the thread holds.
The contact's timeline has the whole history.
"""
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Prefetch

from channels import replies
from channels.models import (FAILED_DELIVERY_STATUSES, ConversationNote, Delivery, InboundMessage, Message,
                             MessageSource, MessageStatus)
from compliance.models import Decision, DecisionOutcome

from .timeline import error_meaning

THREAD_LIMIT = 200

INBOUND, REPLY, AUTOMATED, KEYWORD_CONFIRMATION, NOTE = "inbound", "reply", "automated", "keyword", "note"
# Statuses of a message that will not go out as it stands (a failed one can be sent again; a
# deferred one goes out later on its own).
NOT_SENT = (MessageStatus.SUPPRESSED, MessageStatus.CANCELLED, MessageStatus.EXPIRED)
# In the thread's order at equal times: what came in before what answered it.
RANK = {INBOUND: 0, KEYWORD_CONFIRMATION: 1, AUTOMATED: 2, REPLY: 3, NOTE: 4}


@dataclass
class Entry:
    kind: str
    at: datetime
    row: object
    text: str = ""
    deliveries: list = field(default_factory=list)
    refusal: str = ""  # why a message was not sent, in words
    sent_again: bool = False  # a failed reply an agent already sent again (resend takes it once)

    @property
    def key(self):
        return (self.at, RANK[self.kind], self.row.pk)

    @property
    def outbound(self) -> bool:
        return self.kind != INBOUND and self.kind != NOTE

    @property
    def not_sent(self) -> bool:
        return self.outbound and self.row.status in NOT_SENT

    @property
    def failed(self) -> bool:
        """Whether the message failed, or its newest delivery did (undelivered, bounced): the
        status shown is then a failure, whoever sent it."""
        if not self.outbound:
            return False
        return self.row.status == MessageStatus.FAILED or bool(
            self.deliveries and self.deliveries[-1].status in FAILED_DELIVERY_STATUSES)

    @property
    def may_send_again(self) -> bool:
        # channels.replies.resend takes an agent's failed reply only, and once.
        return self.kind == REPLY and self.row.status == MessageStatus.FAILED and not self.sent_again

    @property
    def deferred(self) -> bool:
        return self.outbound and self.row.status == MessageStatus.DEFERRED

    @property
    def delivery_status(self) -> str:
        """The newest delivery's status in words, or the message's own while none exists."""
        if self.deliveries:
            return self.deliveries[-1].get_status_display()
        return self.row.get_status_display()


@dataclass
class Thread:
    entries: list[Entry]
    truncated: bool


def kind_of(message) -> str:
    if message.source == MessageSource.AGENT:
        return REPLY
    if (message.idempotency_key or "").startswith("keyword:"):
        return KEYWORD_CONFIRMATION
    return AUTOMATED


def message_text(message, deliveries) -> str:
    """What a message says: its own content, else what its delivery carried, else its template."""
    if message.content:
        return next((v.get("text_body") or v.get("subject") or "" for v in message.content), "")
    for delivery in reversed(deliveries):
        if delivery.text_body:
            return delivery.text_body
    if message.template_version_id:
        version = message.template_version
        return f"Template {version.template.name} v{version.number}"
    return ""


def read(conversation, *, with_notes: bool = True) -> Thread:
    """The last THREAD_LIMIT entries of `conversation`, oldest first (four queries, five when
    a message was held or refused); without its notes when `with_notes` is false (a reader who may
    not read them)."""
    inbound = list(InboundMessage.objects.filter(conversation=conversation)
                   .order_by("-received_at", "-pk")[:THREAD_LIMIT + 1])
    messages = list(Message.objects.filter(conversation=conversation)
                    .select_related("agent", "template_version__template")
                    .prefetch_related(Prefetch("deliveries", Delivery.objects.order_by("plan_step", "queued_at", "pk")))
                    .order_by("-created_at", "-pk")[:THREAD_LIMIT + 1])
    notes = list(ConversationNote.objects.filter(conversation=conversation).select_related("author")
                 .order_by("-created_at", "-pk")[:THREAD_LIMIT + 1]) if with_notes else []
    entries = [Entry(INBOUND, row.received_at, row, row.body) for row in inbound]
    for message in messages:
        deliveries = list(message.deliveries.all())
        for delivery in deliveries:
            delivery.code, delivery.meaning = error_meaning(delivery.error_code or delivery.error_message)
        entries.append(Entry(kind_of(message), message.created_at, message, message_text(message, deliveries),
                             deliveries))
    entries += [Entry(NOTE, note.created_at, note, note.body) for note in notes]
    # A resend is newer than its original, so it is read whenever the original is.
    resent = {message.resent_from_id for message in messages if message.resent_from_id}
    for entry in entries:
        entry.sent_again = entry.kind == REPLY and entry.row.pk in resent
    entries.sort(key=lambda entry: entry.key)
    truncated = len(entries) > THREAD_LIMIT
    entries = entries[-THREAD_LIMIT:]
    add_refusals([entry for entry in entries if entry.not_sent or entry.deferred])
    return Thread(entries, truncated)


def add_refusals(entries: list[Entry]) -> None:
    """Why each of these messages was held or refused, in words (one query for all of them)."""
    if not entries:
        return
    latest = {}
    for decision in (Decision.objects.filter(message_id__in=[entry.row.pk for entry in entries])
                     .exclude(outcome=DecisionOutcome.ALLOW).order_by("decided_at", "pk")):
        latest[decision.message_id] = decision
    for entry in entries:
        entry.refusal = replies.refusal_from(entry.row, latest.get(entry.row.pk), entry.deliveries)
