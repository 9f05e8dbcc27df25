"""Conversations: a support thread with one contact on one channel, and every change made to it.

STATUS_TRANSITIONS is the one table of status changes (open <-> waiting, open or waiting ->
closed; a closed conversation stays closed and the contact's next message opens a new one).
Every status write below goes through it as a conditional UPDATE (`... WHERE status IN (the
statuses allowed to move to the new one)`), so two writers racing on a row never both move it.

Each action validates, writes and audits (omni.audit) in one transaction and checks nothing
about who may do it: the inbox, the admin and tasks check permissions. Bulk actions take
conversations, ids or a queryset and cost a fixed number of queries however many they change.

record_inbound_message (channels.provider_reports) calls continue_or_open() and the other
inbound helpers inside its own transaction. Lock order: in a transaction that also changes
messages, contacts or deliveries (channels/state.py's order), the conversation is written
after them.
"""
import hashlib
import logging
import re
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.db.models.functions import Lower
from django.utils import timezone

from contacts.ingest import MAX_IDEMPOTENCY_KEY_LENGTH as MAX_EVENT_KEY_LENGTH
from contacts.actions import InvalidField, clean_profile_field
from contacts.ingest import store_events
from contacts.models import Contact
from omni import audit
from omni.choices import PHONE_CHANNELS
from omni.lib.bulk import bulk_update, insert_unless_taken
from omni.lib.text import hash_address

from .inbound_settings import INBOUND_CHANNELS, schedule_of, schedules_of
from .models import (
    BlockedSender,
    BlockReason,
    Conversation,
    ConversationNote,
    ConversationStatus,
    ConversationTag,
    InboundMessage,
    Message,
    ResolvedBy,
)

log = logging.getLogger(__name__)

OPEN, WAITING, CLOSED = ConversationStatus.OPEN, ConversationStatus.WAITING, ConversationStatus.CLOSED

STATUS_TRANSITIONS = {
    OPEN: frozenset({WAITING, CLOSED}),
    WAITING: frozenset({OPEN, CLOSED}),
    CLOSED: frozenset(),
}

# The ContactEvents journeys act on (campaigns' event stage), stored under this source.
EVENT_SOURCE = "channels"
REPLIED_EVENT = "inbound.replied"
CLOSED_EVENT = "conversation.closed"
# The audit action of a conversation a customer's message opened.
OPENED_ACTION = "conversation.opened"
# Conversations close_waiting() closes per transaction: each batch's locks are held briefly.
CLOSE_BATCH = 500
MAX_NOTE_LENGTH = 10_000
MAX_TAG_LENGTH = ConversationTag._meta.get_field("name").max_length
# A satisfaction answer is the digit alone, perhaps with a full stop or an exclamation mark.
# The satisfaction question's intent key (support_automation asks it).
SATISFACTION_INTENT = "satisfaction"
SATISFACTION_ANSWER = re.compile(r"\s*([1-5])\s*[.!]?\s*")


class ConversationError(ValueError):
    """Input an action refuses, with the reason in words for the person who gave it."""


def sources_of(status: str) -> list[str]:
    """The statuses a conversation may move to `status` from."""
    return [source for source, targets in STATUS_TRANSITIONS.items() if status in targets]


# --- from the webhook (record_inbound_message's transaction) -----------------------------------

def unclosed(contact_id: int, channel: str) -> Conversation | None:
    """The contact's conversation on `channel` that is not closed (at most one exists)."""
    return Conversation.objects.filter(contact_id=contact_id, channel=channel).exclude(status=CLOSED).first()


def blocked_senders(channel: str, address_hash: str) -> QuerySet:
    """The block in force on the address with this hash (hash_address), if any (an EXISTS of its
    own or inside another query). By hash: an erased contact's address stays blocked."""
    return BlockedSender.objects.filter(channel=channel, address_hash=address_hash, unblocked_at__isnull=True)


def continue_or_open(contact_id: int, channel: str, at, found: Conversation | None,
                     schedule: tuple) -> tuple[Conversation, str]:
    """The conversation a message from the contact on `channel` at `at` continues or opens, and
    what happened to it: "continued", "reopened" (it was waiting on the customer) or "opened".

    `found` is the contact's conversation on the channel that is not closed, as the caller read
    it (None if none). It continues: a waiting one goes back to open, and its last inbound and
    activity times move to the message's. Otherwise one opens, with its first-response and
    resolution due times from the channel's service level, counted in its business hours
    (`schedule`: inbound_settings' (Schedule, ServiceLevel) for the channel); of two
    messages opening one at once, the second continues the first's (the partial unique
    constraint decides). Audit it with audit_inbound() once the message is stored.
    """
    if found is not None:
        change = _continue(found, at, schedule)
        if change:
            return found, change
    conversation = _open(contact_id, channel, at, *schedule)
    if conversation is not None:
        return conversation, "opened"
    # Another message from this contact opened it first (and has committed): continue that one.
    conversation = unclosed(contact_id, channel)
    change = _continue(conversation, at, schedule) if conversation is not None else ""
    if not change:
        raise RuntimeError(f"No conversation to continue or open for contact {contact_id} on {channel}.")
    return conversation, change


def audit_inbound(conversation: Conversation, change: str, inbound: InboundMessage) -> None:
    """Audit what continue_or_open() did for the stored `inbound` message (a continuation is not
    audited: the message's own entry says it)."""
    for entry in inbound_entries(conversation, change, inbound):
        audit.record_built(entry)


def inbound_entries(conversation: Conversation, change: str, inbound: InboundMessage) -> list[audit.PendingEntry]:
    """The audit entries of what continue_or_open() did for the `inbound` message."""
    actor_label = f"provider:{inbound.provider}"
    if change == "opened":
        return [audit.build(OPENED_ACTION, contact_id=conversation.contact_id, obj=conversation,
                            channel=conversation.channel, actor_label=actor_label,
                            data={"inbound_message": inbound.pk,
                                  "first_response_due_at": _iso(conversation.first_response_due_at)})]
    if change == "reopened":
        return [audit.build("conversation.reopened", contact_id=conversation.contact_id, obj=conversation,
                            channel=conversation.channel, actor_label=actor_label, reason="customer_replied",
                            data={"inbound_message": inbound.pk})]
    return []


def join(conversation: Conversation, inbound: InboundMessage) -> None:
    """A message that opens nothing (a keyword) joins the conversation without changing its status."""
    Conversation.objects.filter(pk=conversation.pk).update(last_inbound_at=inbound.received_at,
                                                           last_activity_at=inbound.received_at)


def satisfaction_score(body: str) -> int | None:
    """The 1-5 a message answers the satisfaction question with, or None when it is not one."""
    match = SATISFACTION_ANSWER.fullmatch(body or "")
    return int(match.group(1)) if match else None


def awaiting_satisfaction(contact_id: int, channel: str, at) -> Conversation | None:
    """The contact's last closed conversation on `channel` if its satisfaction question was asked
    within OMNI_SATISFACTION_REPLY_HOURS before `at` and is not answered yet. Asked means said:
    a question that could not be rendered or that the gate refused was never put to the customer."""
    conversation = (Conversation.objects.filter(contact_id=contact_id, channel=channel, status=CLOSED)
                    .order_by("-closed_at", "-pk").first())
    if conversation is None or conversation.satisfaction is not None or conversation.satisfaction_asked_at is None:
        return None
    window = timedelta(hours=settings.OMNI_SATISFACTION_REPLY_HOURS)
    if not conversation.satisfaction_asked_at <= at <= conversation.satisfaction_asked_at + window:
        return None
    if not Message.objects.filter(conversation=conversation, intent_key=SATISFACTION_INTENT,
                                  said_at__isnull=False).exists():
        return None
    return conversation


def record_satisfaction(conversation: Conversation, score: int, inbound: InboundMessage) -> bool:
    """Keep the customer's 1-5 answer on the closed conversation (the first answer counts)."""
    if not Conversation.objects.filter(pk=conversation.pk, satisfaction__isnull=True).update(satisfaction=score):
        return False
    conversation.satisfaction = score
    audit.record("conversation.rated", contact_id=conversation.contact_id, obj=conversation,
                 channel=conversation.channel, actor_label=f"provider:{inbound.provider}", reason=str(score),
                 data={"satisfaction": score, "inbound_message": inbound.pk})
    return True


def replied_event(inbound: InboundMessage, conversation: Conversation) -> dict:
    """The `inbound.replied` ContactEvent for contacts.ingest.store_events (source EVENT_SOURCE)."""
    key = f"inbound:{inbound.provider}:{inbound.provider_message_id}"
    if len(key) > MAX_EVENT_KEY_LENGTH:
        # Provider ids may be as long as the key may be; a digest of an overlong one still names it once.
        key = f"inbound:{inbound.provider}:sha256:{hashlib.sha256(inbound.provider_message_id.encode()).hexdigest()}"
    return {"contact_id": inbound.contact_id, "name": REPLIED_EVENT, "occurred_at": inbound.received_at,
            "idempotency_key": key,
            "properties": {"conversation_id": conversation.pk, "channel": inbound.channel,
                           "inbound_message_id": inbound.pk}}


def _continue(conversation: Conversation, at, schedule: tuple) -> str:
    """Move a conversation that is not closed on with a message at `at`: "reopened" or
    "continued", or "" if it closed meanwhile. One an agent started waits on the customer with no
    due times: the customer's first message gives it those a message opening it would have."""
    times = {"last_inbound_at": at, "last_activity_at": at}
    if conversation.status == WAITING and _move_one(conversation, OPEN, waiting_since=None, **times,
                                                    **_due_unless_answered(conversation.channel, at, schedule)):
        return "reopened"
    if not Conversation.objects.filter(pk=conversation.pk).exclude(status=CLOSED).update(**times):
        return ""
    conversation.last_inbound_at = conversation.last_activity_at = at
    return "continued"


def _due_unless_answered(channel: str, at, schedule: tuple) -> dict:
    """The due times of a message at `at`, as update() expressions that leave a conversation's
    own alone: set only while it has none and no first response (one an agent started)."""
    due = _due_times(channel, at, *schedule)
    unanswered = Q(first_response_at__isnull=True, first_response_due_at__isnull=True,
                   resolution_due_at__isnull=True)
    return {name: Case(When(unanswered, then=Value(value)), default=F(name)) for name, value in due.items()}


def _open(contact_id: int, channel: str, at, schedule, service_level) -> Conversation | None:
    """A new open conversation, or None when the contact has one not closed on the channel."""
    conversation = new_conversation(contact_id, channel, at, schedule, service_level)
    return conversation if insert_unless_taken(conversation) else None


def new_conversation(contact_id: int, channel: str, at, schedule, service_level) -> Conversation:
    """The open conversation a message at `at` opens, not saved, its first-response and
    resolution due times from the channel's service level in its business hours (none when
    they cannot be computed: the message is stored all the same)."""
    return Conversation(contact_id=contact_id, channel=channel, status=OPEN, opened_at=at,
                        last_inbound_at=at, last_activity_at=at, **_due_times(channel, at, schedule, service_level))


def _due_times(channel: str, at, schedule, service_level) -> dict:
    """First-response and resolution due times of a customer's message at `at`, from the
    channel's service level in its business hours (none when they cannot be computed: the
    message is stored all the same)."""
    if service_level is None or schedule is None:
        return {}
    try:
        return {"first_response_due_at": schedule.add_business_time(
                    at, timedelta(minutes=service_level.first_response_minutes)),
                "resolution_due_at": schedule.add_business_time(
                    at, timedelta(minutes=service_level.resolution_minutes))}
    except ValueError as problem:
        # A service level no schedule can meet must not lose the customer's message.
        log.warning("No due times for a conversation on %s: %s", channel, problem)
        return {}


def _move_one(conversation: Conversation, to: str, **fields) -> bool:
    """Move one conversation from the status it was read with to `to`, if nobody moved it first."""
    if to not in STATUS_TRANSITIONS[conversation.status]:
        return False
    if not Conversation.objects.filter(pk=conversation.pk, status=conversation.status).update(status=to, **fields):
        return False
    conversation.status = to
    for name, value in fields.items():
        setattr(conversation, name, value)
    return True


# --- what agents and automation do -------------------------------------------------------------

def set_waiting(conversation: Conversation, *, actor, now=None) -> bool:
    """Wait on the customer: an open conversation closes itself after
    OMNI_CONVERSATION_WAITING_CLOSE_DAYS unless the customer writes. False if it was not open."""
    now = now or timezone.now()
    return _set_status(conversation, WAITING, actor, now, waiting_since=now, last_activity_at=now)


def set_open(conversation: Conversation, *, actor, now=None) -> bool:
    """Stop waiting on the customer. False if the conversation was not waiting."""
    now = now or timezone.now()
    return _set_status(conversation, OPEN, actor, now, waiting_since=None, last_activity_at=now)


def _set_status(conversation: Conversation, to: str, actor, now, **fields) -> bool:
    with transaction.atomic():
        current = Conversation.objects.select_for_update().filter(pk=conversation.pk).first()
        if current is None or not _move_one(current, to, **fields):
            return False
        for name in ("status", *fields):
            setattr(conversation, name, getattr(current, name))
        audit.record(f"conversation.{to}", contact_id=current.contact_id, obj=current, actor=actor,
                     channel=current.channel, reason=to, occurred_at=now)
    return True


def close(conversations_or_ids, *, actor=None, resolved_by: str = ResolvedBy.AGENT, now=None) -> int:
    """Close the conversations that are open or waiting; returns how many closed.

    Each keeps when and by whom (closed_by: the actor, if a person; resolved_by: agent or
    automation), its resolution time in real seconds and in its service level's business hours,
    and stops waiting; each stores the `conversation.closed` ContactEvent that journeys act on,
    keyed "conversation.closed:<id>:<closed_at iso>". A fixed number of queries for any number.
    """
    if resolved_by not in ResolvedBy.values:
        raise ConversationError(f"Resolved by must be one of {', '.join(ResolvedBy.values)}.")
    now = now or timezone.now()
    closed_by_id = actor.pk if getattr(actor, "is_authenticated", False) else None
    with transaction.atomic():
        rows = list(Conversation.objects.select_for_update()
                    .filter(pk__in=_ids(conversations_or_ids), status__in=sources_of(CLOSED))
                    .only("pk", "contact_id", "channel", "status", "opened_at").order_by("pk"))
        if not rows:
            return 0
        schedules = schedules_of({row.channel for row in rows})
        for row in rows:
            row.status, row.closed_at, row.resolved_by, row.closed_by_id = CLOSED, now, resolved_by, closed_by_id
            row.waiting_since, row.last_activity_at = None, now
            row.resolution_seconds = _seconds(now - row.opened_at)
            row.resolution_business_seconds = _business_seconds(schedules[row.channel][0], row.opened_at, now)
        bulk_update(rows, ["status", "closed_at", "resolved_by", "closed_by", "waiting_since", "last_activity_at",
                           "resolution_seconds", "resolution_business_seconds"])
        store_events([
            {"contact_id": row.contact_id, "name": CLOSED_EVENT, "occurred_at": now,
             "idempotency_key": f"{CLOSED_EVENT}:{row.pk}:{now.isoformat()}",
             "properties": {"conversation_id": row.pk, "channel": row.channel, "resolved_by": resolved_by}}
            for row in rows
        ], source=EVENT_SOURCE)
        audit.record_many([
            audit.build("conversation.closed", contact_id=row.contact_id, obj=row, actor=actor, channel=row.channel,
                        reason=resolved_by, occurred_at=now,
                        data={"resolution_seconds": row.resolution_seconds,
                              "resolution_business_seconds": row.resolution_business_seconds})
            for row in rows
        ])
    return len(rows)


def close_waiting(now=None) -> int:
    """Close, as automation, every conversation waiting on the customer for longer than
    OMNI_CONVERSATION_WAITING_CLOSE_DAYS; returns how many (beat runs it: channels.tasks)."""
    now = now or timezone.now()
    since = now - timedelta(days=settings.OMNI_CONVERSATION_WAITING_CLOSE_DAYS)
    closed = 0
    while True:
        ids = list(Conversation.objects.filter(status=WAITING, waiting_since__lte=since)
                   .order_by("waiting_since", "pk").values_list("pk", flat=True)[:CLOSE_BATCH])
        if not ids:
            return closed
        count = close(ids, resolved_by=ResolvedBy.AUTOMATION, now=now)
        closed += count
        if count == 0:
            return closed  # everything found was moved by someone else meanwhile


def record_response(conversation: Conversation, at) -> bool:
    """The first agent reply: keep when, and how long the customer waited for it in real and in
    business seconds, counted from their first message in the conversation (an agent who wrote
    first opened it, and the customer's days before answering are not the agent's response
    time). Later replies change nothing (False)."""
    if conversation.first_response_at is not None:
        return False
    asked_at = (InboundMessage.objects.filter(conversation_id=conversation.pk).order_by("received_at")
                .values_list("received_at", flat=True).first()) or conversation.opened_at
    asked_at = min(max(asked_at, conversation.opened_at), at)
    schedule, _ = schedule_of(conversation.channel)
    seconds = _seconds(at - asked_at)
    business = _business_seconds(schedule, asked_at, at)
    if not Conversation.objects.filter(pk=conversation.pk, first_response_at__isnull=True).update(
            first_response_at=at, first_response_seconds=seconds, first_response_business_seconds=business,
            last_activity_at=at):
        return False
    conversation.first_response_at, conversation.first_response_seconds = at, seconds
    conversation.first_response_business_seconds = business
    audit.record("conversation.responded", contact_id=conversation.contact_id, obj=conversation,
                 channel=conversation.channel, occurred_at=at,
                 data={"first_response_seconds": seconds, "first_response_business_seconds": business})
    return True


def assign(conversations_or_ids, agent, *, actor) -> int:
    """Give the conversations that are not closed to `agent` (None: to nobody); returns how many changed."""
    with transaction.atomic():
        rows = Conversation.objects.select_for_update().filter(pk__in=_ids(conversations_or_ids)).exclude(status=CLOSED)
        rows = rows.exclude(assignee__isnull=True) if agent is None else rows.exclude(assignee=agent)
        changed = list(rows.values_list("pk", "contact_id", "channel", "assignee_id").order_by("pk"))
        if not changed:
            return 0
        Conversation.objects.filter(pk__in=[pk for pk, *_ in changed]).update(assignee=agent)
        action = "conversation.unassigned" if agent is None else "conversation.assigned"
        audit.record_many([
            audit.build(action, contact_id=contact_id, object_ref=(Conversation._meta.label_lower, str(pk)),
                        actor=actor, channel=channel,
                        data={"assignee_id": agent.pk if agent else None, "previous_assignee_id": previous},
                        personal={"assignee": agent.get_username()} if agent else None)
            for pk, contact_id, channel, previous in changed
        ])
    return len(changed)


def tag(conversations_or_ids, names: list[str], *, actor, remove: bool = False) -> int:
    """Add the tags named (made when new; names match whatever their case), or remove them;
    returns how many conversations changed."""
    names = clean_tag_names(names)
    through = Conversation.tags.through
    with transaction.atomic():
        conversations = {pk: (contact_id, channel) for pk, contact_id, channel in Conversation.objects.filter(
            pk__in=_ids(conversations_or_ids)).values_list("pk", "contact_id", "channel")}
        if not conversations:
            return 0
        tags = _tags_named(names, create=not remove)
        pairs = through.objects.filter(conversation_id__in=conversations, conversationtag_id__in=tags.values())
        if remove:
            changed = set(pairs.values_list("conversation_id", flat=True))
            pairs.delete()
        else:
            present = set(pairs.values_list("conversation_id", "conversationtag_id"))
            new = [through(conversation_id=pk, conversationtag_id=tag_id)
                   for pk in conversations for tag_id in tags.values() if (pk, tag_id) not in present]
            through.objects.bulk_create(new, ignore_conflicts=True)
            changed = {row.conversation_id for row in new}
        audit.record_many([
            audit.build("conversation.untagged" if remove else "conversation.tagged",
                        contact_id=conversations[pk][0], object_ref=(Conversation._meta.label_lower, str(pk)),
                        actor=actor, channel=conversations[pk][1], data={"tags": sorted(tags)})
            for pk in sorted(changed)
        ])
    return len(changed)


def clean_tag_names(names) -> list[str]:
    if isinstance(names, str):
        names = [names]
    cleaned = {}
    for name in names or []:
        name = " ".join(str(name).split())
        if len(name) > MAX_TAG_LENGTH:
            raise ConversationError(f"A tag is at most {MAX_TAG_LENGTH} characters: {name[:MAX_TAG_LENGTH]}…")
        if name:
            cleaned.setdefault(name.lower(), name)
    if not cleaned:
        raise ConversationError("Name at least one tag.")
    return list(cleaned.values())


def _tags_named(names: list[str], *, create: bool) -> dict[str, int]:
    """{name as stored: id} of the tags with these names, any case; missing ones made if `create`."""
    wanted = {name.lower(): name for name in names}

    def found():
        return dict(ConversationTag.objects.annotate(lower=Lower("name")).filter(lower__in=wanted)
                    .values_list("name", "pk"))

    tags = found()
    missing = set(wanted) - {name.lower() for name in tags}
    if create and missing:
        ConversationTag.objects.bulk_create([ConversationTag(name=wanted[key]) for key in sorted(missing)],
                                            ignore_conflicts=True)
        tags = found()
    return tags


def set_follow_up(conversation: Conversation, at, *, actor) -> None:
    """When someone should look at the conversation again (None: no follow-up)."""
    with transaction.atomic():
        Conversation.objects.filter(pk=conversation.pk).update(follow_up_at=at)
        conversation.follow_up_at = at
        audit.record("conversation.follow_up", contact_id=conversation.contact_id, obj=conversation, actor=actor,
                     channel=conversation.channel, data={"follow_up_at": _iso(at)})


def add_note(conversation: Conversation, body: str, *, author) -> ConversationNote:
    """A note for other agents, never sent."""
    body = (body or "").strip()
    if not body:
        raise ConversationError("A note needs some text.")
    if len(body) > MAX_NOTE_LENGTH:
        raise ConversationError(f"A note is at most {MAX_NOTE_LENGTH} characters; this one has {len(body)}.")
    with transaction.atomic():
        note = ConversationNote.objects.create(conversation=conversation, author=author, body=body)
        # The note's text stays out of the audit log: agents write about people in it.
        audit.record("conversation.noted", contact_id=conversation.contact_id, obj=conversation, actor=author,
                     channel=conversation.channel, data={"note": note.pk})
    return note


# --- blocked senders ---------------------------------------------------------------------------

def clean_address(channel: str, address: str) -> str:
    """The address as inbound messages carry it (E.164, or a lower-case email address)."""
    if channel not in INBOUND_CHANNELS:
        raise ConversationError(f"Nobody writes in on {channel or 'no channel'}; "
                                f"choose one of {', '.join(sorted(INBOUND_CHANNELS))}.")
    field = "phone" if channel in PHONE_CHANNELS else "email"
    try:
        cleaned = clean_profile_field(field, (address or "").strip(), country=settings.OMNI_DEFAULT_COUNTRY)
    except InvalidField as exc:
        raise ConversationError(exc.messages[0]) from None
    if not cleaned:
        raise ConversationError(f"Give the {'phone number' if field == 'phone' else 'email address'}.")
    return cleaned


def block_sender(channel: str, address: str, *, reason: str, note: str = "", actor) -> BlockedSender:
    """Block an address on a channel: its messages are stored, open nothing and get no automated
    answer or survey. Returns the block (the existing one when the address is blocked already)."""
    if reason not in BlockReason.values:
        raise ConversationError(f"The reason must be one of {', '.join(BlockReason.values)}.")
    address = clean_address(channel, address)
    with transaction.atomic():
        existing = blocked_senders(channel, hash_address(address)).first()
        if existing is not None:
            return existing
        try:
            with transaction.atomic():
                block = BlockedSender.objects.create(channel=channel, address=address, reason=reason,
                                                     note=(note or "").strip(), blocked_by=_user(actor))
        except IntegrityError:
            return blocked_senders(channel, hash_address(address)).get()
        audit.record("sender.blocked", contact_id=_contact_with(channel, address), obj=block, actor=actor,
                     channel=channel, reason=reason, personal={"address": address, "note": block.note})
    return block


def unblock_sender(block: BlockedSender, *, actor, now=None) -> bool:
    """Lift a block (kept, with who lifted it and when). False if it was lifted already."""
    now = now or timezone.now()
    with transaction.atomic():
        if not BlockedSender.objects.filter(pk=block.pk, unblocked_at__isnull=True).update(
                unblocked_at=now, unblocked_by=_user(actor)):
            return False
        block.unblocked_at, block.unblocked_by = now, _user(actor)
        audit.record("sender.unblocked", contact_id=_contact_with(block.channel, block.address), obj=block,
                     actor=actor, channel=block.channel, reason=block.reason, personal={"address": block.address})
    return True


def _contact_with(channel: str, address: str) -> int | None:
    field = "phone" if channel in PHONE_CHANNELS else "email"
    return Contact.objects.filter(**{field: address}).order_by("pk").values_list("pk", flat=True).first()


# --- helpers -----------------------------------------------------------------------------------

def _ids(conversations_or_ids) -> list[int]:
    if isinstance(conversations_or_ids, QuerySet):
        return list(conversations_or_ids.values_list("pk", flat=True))
    if isinstance(conversations_or_ids, (Conversation, int)):
        conversations_or_ids = [conversations_or_ids]
    return [item.pk if isinstance(item, Conversation) else int(item) for item in conversations_or_ids]


def _user(actor):
    return actor if getattr(actor, "is_authenticated", False) else None


def _business_seconds(schedule, start, end) -> int | None:
    return _seconds(schedule.business_time_between(start, end)) if schedule is not None else None


def _seconds(duration: timedelta) -> int:
    return max(0, int(duration.total_seconds()))


def _iso(value) -> str | None:
    return value.isoformat() if value else None
