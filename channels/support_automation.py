"""Support automation: what Omni answers by itself when a customer writes in, and the question
it asks after a conversation closes.

The tick's "support automation" stage (handle_inbound_batch, never the webhook) claims inbound
messages not yet handled, in batches, and for each one that a customer wrote into an open
conversation:
1. the escalation rules, in position order, the first match winning: one of its phrases; as
   many automated replies in the conversation as its threshold; the same text sent as many
   times. The conversation moves to the rule's queue (its agent keeps it only if they are in
   that queue) and the customer gets the rule's acknowledgement, whose {{ response_due }} says
   when a person will answer (the channel's service level counted in its business hours);
2. otherwise an automated first response whose phrase the message has, once per response and
   conversation and only before any agent replied;
3. otherwise, outside the channel's business hours, its after-hours reply, once per conversation
   and local day.
At most one automated reply per inbound message: a message of Omni's own (source SYSTEM, in the
conversation, idempotency key "auto:<inbound id>") routed with the batch by create_and_dispatch; the
inbound message points at it and the conversation counts it. A conversation no rule routes
waits in the default queue; automatic assignment (channels.assignment) then hands out what
the batch left unassigned.

Keyword messages (STOP, HELP...), messages flagged for an agent and messages older than
ANSWER_WITHIN get no automated reply (their conversation still waits in a queue for an agent);
messages from blocked senders and satisfaction answers (they join no open conversation) get
nothing: they are only marked handled. A row that cannot be handled (a text naming a variable
the contact lacks) is quarantined with its reason; the rest of its batch goes on.

ask_satisfaction (beat, every minute) asks the channel's satisfaction question once per closed
conversation, shortly after it closed.
"""
import logging
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from omni import audit
from omni.choices import Exemption, Purpose
from omni.lib import bulk
from omni.lib.claims import claim, claim_ids, excluding
from omni.lib.quarantine import quarantine_failures, run_isolating_failures
from templates.rendering import RenderError, contact_variables, render_variant

from . import assignment, conversations, state
from .inbound_settings import schedules_of
from .models import (
    AutoResponse,
    BlockedSender,
    Conversation,
    ConversationStatus,
    EscalationRule,
    EscalationTrigger,
    InboundMessage,
    Message,
    MessageSource,
    ServiceLevel,
    SupportQueue,
)
from .routing import create_and_dispatch

log = logging.getLogger(__name__)

INBOUND_BATCH = 200
# Closed conversations asked the satisfaction question per transaction.
SATISFACTION_BATCH = 500
# An automated answer later than this helps nobody; and a backlog (messages stored before this
# stage ran, a tick stopped for a day) must not be answered all at once.
ANSWER_WITHIN = timedelta(hours=24)
# The satisfaction question goes out this soon after the close or not at all.
ASK_SATISFACTION_WITHIN = timedelta(hours=24)
# {{ response_due }} without a service level for the channel.
NO_SERVICE_LEVEL_DUE = "as soon as we can"


@dataclass
class AutomatedReply:
    inbound: InboundMessage
    text: str
    intent_key: str


def handle_inbound_batch(now, report, handled: set | None = None) -> int:
    """The tick's stage: claim and handle a batch of inbound messages (see the module's
    docstring). Returns how many rows it claimed; one query when there are none."""
    with transaction.atomic():
        rows = claim(
            excluding(InboundMessage.objects.filter(handled_at__isnull=True, quarantined_at__isnull=True), handled)
            .select_related("contact").order_by("received_at", "id"),
            INBOUND_BATCH,
        )
        if not rows:
            return 0
        touched = set()
        failures = run_isolating_failures(rows, lambda batch: touched.update(_handle(batch, now, report)))
        report.quarantined += quarantine_failures(InboundMessage, failures, now, stage="support automation")
        report.inbound_handled += len(rows) - len(failures)
    # Outside the claim: assignment locks queues before conversations (channels.assignment),
    # this transaction held conversations first. What this misses, assign_waiting hands out.
    if touched:
        report.assigned += assignment.assign_new(touched, now=now)
    return len(rows)


def _handle(rows: list[InboundMessage], now, report) -> set[int]:
    """Handle claimed rows in the caller's transaction; returns the ids of their conversations
    that wait for an agent in a queue."""
    # Every message in a conversation puts it in a queue (the default one unless a rule routes
    # it); only those automation may answer are looked at further.
    routed = [row for row in rows if row.conversation_id is not None and row.contact_id is not None
              and not row.blocked]
    conversations_by_id = {}
    if routed:
        # Contacts, then conversations, both in id order: routing locks the contacts again.
        state.lock_contacts({row.contact_id for row in routed})
        conversations_by_id = {pk: c for pk, c in Conversation.objects.select_for_update(of=("self",)).in_bulk(
            sorted({row.conversation_id for row in routed})).items() if c.status != ConversationStatus.CLOSED}
    before = {pk: _automation_memory(c) for pk, c in conversations_by_id.items()}
    answerable = [row for row in routed if row.conversation_id in conversations_by_id and _answerable(row, now)]
    replies, escalations = _decide(answerable, conversations_by_id, now) if answerable else ([], [])
    _send(replies, conversations_by_id, now)
    if any(c.queue_id is None for c in conversations_by_id.values()):
        default_queue = SupportQueue.objects.filter(is_default=True).first()
        for conversation in conversations_by_id.values():
            conversation.queue = conversation.queue or default_queue
    _write_conversations(escalations, before, conversations_by_id, now)
    report.automated_replies += len(replies)
    report.escalated += len(escalations)
    for row in rows:
        row.handled_at = now
    bulk.bulk_update(rows, ["handled_at", "automated_reply"])
    return {c.pk for c in conversations_by_id.values()
            if c.status == ConversationStatus.OPEN and c.queue_id is not None and c.assignee_id is None}


def _answerable(row: InboundMessage, now) -> bool:
    """Whether automation may answer the message: not a keyword (it has its own reply), not one
    flagged for a person, not older than ANSWER_WITHIN."""
    return not row.keyword and not row.needs_agent and row.received_at >= now - ANSWER_WITHIN


def _decide(rows, conversations_by_id, now) -> tuple[list[AutomatedReply], list[tuple]]:
    """The reply for each row (escalation acknowledgement, automated first response, after-hours
    reply) and the escalations, [(conversation, rule)]. Conversations change in memory as it goes,
    so two messages of one conversation in a batch see each other's effects."""
    rules = list(EscalationRule.objects.filter(active=True).select_related("queue"))
    responses = list(AutoResponse.objects.filter(active=True))
    repeats = _repeat_counts(rows) if any(r.trigger == EscalationTrigger.REPEATED_MESSAGE for r in rules) else {}
    sent_intents = _sent_intents(rows) if responses else set()
    schedules = schedules_of({row.channel for row in rows})

    replies, escalations = [], []
    for row in rows:
        conversation = conversations_by_id[row.conversation_id]
        schedule, level = schedules[row.channel]
        text = normalized(row.body)
        rule = next((r for r in rules if r.queue_id != conversation.queue_id
                     and _rule_matches(r, text, conversation, repeats.get(row.pk, 0))), None)
        reply = None
        response = None if rule else _first_response(responses, row, text, conversation, sent_intents)
        if rule is not None:
            escalations.append((conversation, rule))
            conversation.queue = rule.queue
            if rule.acknowledgement.strip():
                reply = AutomatedReply(row, rule.acknowledgement, f"escalation:{rule.pk}")
        elif response is not None:
            reply = AutomatedReply(row, response.body, f"auto_response:{response.pk}")
        elif (level is not None and level.business_hours_id and level.after_hours_reply.strip()
              and not schedule.is_open(now)
              and conversation.after_hours_replied_on != now.astimezone(schedule.tz).date()):
            conversation.after_hours_replied_on = now.astimezone(schedule.tz).date()
            reply = AutomatedReply(row, level.after_hours_reply, f"after_hours:{conversation.after_hours_replied_on}")
        if reply is not None:
            reply.text = render_automated_text(reply.text, row.contact, response_due(conversation, schedule, level, now))
            replies.append(reply)
            sent_intents.add((conversation.pk, reply.intent_key))
            conversation.automated_replies += 1
    return replies, escalations


def _first_response(responses, row, text: str, conversation: Conversation, sent_intents) -> AutoResponse | None:
    """The first automated response whose phrase the message has, on its channel, not sent in
    this conversation yet; none once an agent has answered."""
    if conversation.first_response_at is not None:
        return None
    return next((r for r in responses if r.channel in ("", row.channel) and _has_phrase(text, r.phrases)
                 and (conversation.pk, f"auto_response:{r.pk}") not in sent_intents), None)


def _rule_matches(rule: EscalationRule, text: str, conversation: Conversation, repeated: int) -> bool:
    if rule.trigger == EscalationTrigger.PHRASE:
        return _has_phrase(text, rule.phrases)
    if rule.trigger == EscalationTrigger.AUTOMATED_REPLIES:
        return conversation.automated_replies >= max(rule.threshold, 1)
    if rule.trigger == EscalationTrigger.REPEATED_MESSAGE:
        return bool(text) and repeated >= max(rule.threshold, 2)
    return False


# Phones type typographic quotes (iOS "smart punctuation") where staff typed plain ones.
PLAIN_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})


def normalized(text: str) -> str:
    """Text as messages are compared: in Unicode's compatibility form (an accent typed as its own
    combining mark is the accented letter, as compliance.keywords reads keywords), case folded,
    typographic quotes plain, runs of white space as one space."""
    folded = unicodedata.normalize("NFKC", text or "").casefold().translate(PLAIN_QUOTES)
    return " ".join(folded.split())


def phrases_of(phrases: str) -> list[str]:
    """The phrases of a rule or response, one per line, normalized; blank lines left out."""
    return [p for p in (normalized(line) for line in (phrases or "").splitlines()) if p]


def _has_phrase(text: str, phrases: str) -> bool:
    """Whether normalized `text` has one of the phrases as whole words ("agent" is not in "management")."""
    return any(re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) for phrase in phrases_of(phrases))


def _repeat_counts(rows) -> dict[int, int]:
    """For each row, how many messages of its conversation up to it say the same (itself included)."""
    earlier = defaultdict(list)
    for pk, conversation_id, received_at, body in (
            InboundMessage.objects.filter(conversation_id__in={row.conversation_id for row in rows}, blocked=False)
            .order_by().values_list("pk", "conversation_id", "received_at", "body")):
        earlier[conversation_id].append(((received_at, pk), normalized(body)))
    return {row.pk: sum(1 for key, text in earlier[row.conversation_id]
                        if key <= (row.received_at, row.pk) and text == normalized(row.body))
            for row in rows}


def _sent_intents(rows) -> set[tuple[int, str]]:
    """(conversation id, intent key) of the automated replies already made in the rows' conversations."""
    return set(Message.objects.filter(conversation_id__in={row.conversation_id for row in rows},
                                      source=MessageSource.SYSTEM).exclude(intent_key="")
               .order_by().values_list("conversation_id", "intent_key"))


def response_due(conversation: Conversation, schedule, level: ServiceLevel | None, now) -> str:
    """When a person will answer, in words, in the service level's business hours' zone: the first
    response due time the conversation already has, or the channel's first-response time from now
    counted in business hours (after an agent answered, or when that time has passed)."""
    if level is None:
        return NO_SERVICE_LEVEL_DUE
    due = conversation.first_response_due_at
    if conversation.first_response_at is not None or due is None or due <= now:
        try:
            due = schedule.add_business_time(now, timedelta(minutes=level.first_response_minutes))
        except ValueError:
            return NO_SERVICE_LEVEL_DUE
    return describe_time(due, schedule.tz)


def describe_time(moment, zone) -> str:
    """"Monday 6 January at 09:00 GMT": a time as a customer reads it."""
    local = moment.astimezone(zone)
    return f"{local:%A} {local.day} {local:%B} at {local:%H:%M} {local.tzname()}"


# The variables an automated text may use besides the contact's (templates.rendering.contact_variables).
AUTOMATED_TEXT_VARIABLES = ("response_due",)


class _AnyAttributes(dict):
    """Contact attributes differ per contact: while checking a text, any attribute name is fine."""

    def __missing__(self, key):
        return ""


def check_text_variables(source: str, extra: tuple[str, ...] = AUTOMATED_TEXT_VARIABLES) -> None:
    """Raise RenderError naming the first variable `source` uses that is neither the contact's
    (any contact.attributes.* passes) nor one of `extra`, or its syntax error."""
    sample = contact_variables(_SampleContact())
    sample["contact"]["attributes"] = _AnyAttributes()
    render_variant({"text_body": source}, {**sample, **{name: "" for name in extra}})


class _SampleContact:
    first_name = last_name = email = phone = locale = external_id = ""
    attributes = {}


def render_automated_text(source: str, contact, due: str) -> str:
    """An acknowledgement, automated response or after-hours reply for `contact`, strictly: a
    variable the contact lacks raises RenderError (the inbound message is then quarantined)."""
    variables = {**contact_variables(contact), "response_due": due}
    return render_variant({"text_body": source}, variables)["text_body"]


def _send(replies: list[AutomatedReply], conversations_by_id, now) -> None:
    """Store the replies as messages of Omni's own and route them, as one batch."""
    if not replies:
        return
    messages = [
        Message(
            contact=reply.inbound.contact,
            channel_plan=[{"channel": reply.inbound.channel}],
            source=MessageSource.SYSTEM,
            content=[{"channel": reply.inbound.channel, "text_body": reply.text}],
            # An answer to what the customer just wrote: consent and suppressions apply, caps and
            # quiet hours do not (compliance.gate.EXEMPTIONS).
            purpose=Purpose.INFORMATIONAL,
            exemption=Exemption.CONVERSATIONAL_REPLY,
            intent_key=reply.intent_key,
            idempotency_key=f"auto:{reply.inbound.pk}",
            conversation=conversations_by_id[reply.inbound.conversation_id],
            expires_at=now + ANSWER_WITHIN,
            created_at=now,
        )
        for reply in replies
    ]
    stored, _ = create_and_dispatch(messages, now=now)
    for reply, message in zip(replies, stored):
        reply.inbound.automated_reply = message


def _write_conversations(escalations, before: dict, conversations_by_id, now) -> None:
    """Keep the batch's changes to its (locked) conversations and audit their new queues. An
    escalated conversation whose agent is not in the new queue goes back to be handed out."""
    changed = [c for c in conversations_by_id.values() if _automation_memory(c) != before[c.pk]]
    bulk.bulk_update(changed, list(AUTOMATION_FIELDS))
    assigned = [c for c, _ in escalations if c.assignee_id is not None]
    members = set()
    if assigned:
        members = set(get_user_model().objects.filter(
            support_queues__in={c.queue_id for c in assigned}, pk__in={c.assignee_id for c in assigned})
            .values_list("support_queues", "pk"))
    leaving = [c.pk for c in assigned if (c.queue_id, c.assignee_id) not in members]
    if leaving:
        conversations.assign(leaving, None, actor=None)
    rules = {c.pk: rule for c, rule in escalations}
    audit.record_many([
        audit.build("conversation.escalated" if c.pk in rules else "conversation.queued", contact_id=c.contact_id,
                    obj=c, channel=c.channel, reason=rules[c.pk].trigger if c.pk in rules else "default_queue",
                    occurred_at=now, data={"queue_id": c.queue_id, "rule_id": rules[c.pk].pk if c.pk in rules else None,
                                           "unassigned": c.pk in leaving})
        for c in changed if c.queue_id != before[c.pk][0]
    ])


# What automation changes on a conversation: its queue and its memory of what it answered.
AUTOMATION_FIELDS = ("queue", "automated_replies", "after_hours_replied_on")


def _automation_memory(conversation: Conversation) -> tuple:
    return conversation.queue_id, conversation.automated_replies, conversation.after_hours_replied_on


# --- the satisfaction question ------------------------------------------------------------------

def ask_satisfaction(now=None) -> int:
    """Ask each conversation closed in the last ASK_SATISFACTION_WITHIN (by an agent or by
    automation) its channel's satisfaction question, once (key "satisfaction:<conversation id>"),
    unless the contact's address there is blocked. Returns how many were asked."""
    now = now or timezone.now()
    questions = dict(ServiceLevel.objects.exclude(satisfaction_question="").values_list("channel",
                                                                                     "satisfaction_question"))
    asked = 0
    while questions:
        batch = _ask_satisfaction_batch(questions, now)
        asked += batch
        if batch < SATISFACTION_BATCH:
            break
    return asked


def _ask_satisfaction_batch(questions: dict[str, str], now) -> int:
    blocked = BlockedSender.objects.filter(channel=OuterRef("channel"), unblocked_at__isnull=True).filter(
        Q(address=OuterRef("contact__phone")) | Q(address=OuterRef("contact__email")))
    due = (Conversation.objects.filter(status=ConversationStatus.CLOSED, satisfaction_asked_at__isnull=True,
                                       channel__in=list(questions), closed_at__gte=now - ASK_SATISFACTION_WITHIN)
           .exclude(resolved_by="").filter(~Exists(blocked)).order_by("closed_at", "pk"))
    with transaction.atomic():
        ids = claim_ids(due, SATISFACTION_BATCH, satisfaction_asked_at=now)
        if not ids:
            return 0
        expires_at = now + timedelta(hours=settings.OMNI_SATISFACTION_REPLY_HOURS)
        messages = []
        for conversation in Conversation.objects.filter(pk__in=ids).select_related("contact").order_by("pk"):
            try:
                text = render_variant({"text_body": questions[conversation.channel]},
                                      contact_variables(conversation.contact))["text_body"]
            except RenderError as error:
                log.warning("Satisfaction question not asked in conversation %s: %s", conversation.pk, error)
                continue
            messages.append(Message(
                contact=conversation.contact, channel_plan=[{"channel": conversation.channel}],
                source=MessageSource.SYSTEM, content=[{"channel": conversation.channel, "text_body": text}],
                purpose=Purpose.INFORMATIONAL, intent_key=conversations.SATISFACTION_INTENT, conversation=conversation,
                idempotency_key=f"satisfaction:{conversation.pk}", expires_at=expires_at, created_at=now,
            ))
        create_and_dispatch(messages, now=now)
    return len(ids)
