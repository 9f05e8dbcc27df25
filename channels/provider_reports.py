"""What providers tell us back, normalized: delivery events and inbound messages.

Every provider's report becomes one DeliveryEvent (anymail style: event type, time, event id,
message id, recipient, detail, raw payload kept) through record_delivery_event(), whether it
came from SES through SNS, from a Twilio callback or from the sandbox. Storing is idempotent
and a delivery's status only ever moves forward, so repeated and out-of-order webhooks are
harmless.
"""
from contextlib import nullcontext
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from omni import audit
from compliance.actions import record_consent_change, record_opt_out, suppress
from compliance.models import ConsentSource, ConsentStatus, SuppressionReason
from contacts.actions import contact_for_unknown_sender
from contacts.ingest import event_row, store_events
from contacts.models import Contact
from omni.choices import PHONE_CHANNELS, Purpose
from omni.lib.bulk import insert_from_json, insert_unless_taken, row_json, row_of, sequence_of
from omni.lib.dates import provider_time
from omni.lib.claims import claim, excluding
from omni.lib.quarantine import quarantine_failures, run_isolating_failures
from omni.lib.sql import QueryTemplate, prepared_cursor
from omni.lib.text import hash_address

from . import conversations, state
from .consent_messages import act_on_keyword, read_inbound_keyword
from .inbound_settings import inbound_settings
from .routing import fallback_condition_met
from .models import (
    EVENT_DELIVERY_STATUS,
    Conversation,
    ConversationStatus,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    EventType,
    InboundMessage,
    MessageSource,
    MessageStatus,
)

ENGAGEMENT_EVENTS = frozenset({EventType.OPENED, EventType.CLICKED, EventType.READ, EventType.REPLIED})
# Events that prove the provider sent the message, whether or not its "sent" report ever came
# (Twilio's callbacks may arrive out of order or not at all; SES publishes Send only if asked).
SENT_EVENTS = frozenset({EventType.SENT, EventType.DELIVERED, EventType.COMPLAINED}) | ENGAGEMENT_EVENTS
# A delivery that ends in one of these did not reach the contact: the message falls back.
FALLBACK_STATUSES = frozenset({DeliveryStatus.BOUNCED, DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED})

# Delivery and engagement of a journey's message reach journeys as a contact event of these
# names (campaigns' wait and branch steps read them; campaigns never reads deliveries for it),
# stored once per delivery and kind, with the message's id in properties.message_id.
MESSAGE_CONTACT_EVENTS = {
    EventType.DELIVERED: "message.delivered",
    EventType.OPENED: "message.opened",
    EventType.CLICKED: "message.clicked",
    EventType.READ: "message.read",
    EventType.REPLIED: "message.replied",
}

# The message status each event moves a message to, while the message is still on the plan step
# of the delivery reported on; channels/state.py says from which statuses. Engagement also
# stops a fallback that is pending or deferred.
MESSAGE_STATUS_AFTER_EVENT = {
    EventType.SENT: MessageStatus.SENT,
    EventType.DELIVERED: MessageStatus.DELIVERED,
    **{event_type: MessageStatus.ENGAGED for event_type in ENGAGEMENT_EVENTS},
}


def record_delivery_event(provider: str, provider_event_id: str, provider_message_id: str, event_type: str,
                          occurred_at, recipient: str = "", detail: str = "", permanent: bool = False,
                          raw: dict | None = None, *, delivery_id=None, channel: str = "",
                          suppression_reason: str = "", recipients: list[str] | None = None,
                          protect_unlinked: bool = True) -> tuple[DeliveryEvent, bool]:
    """Store one provider event and act on it. Returns (event, created); a repeat changes nothing.

    The event is linked to the delivery with that (provider, provider_message_id), or, when the
    provider echoes Omni's id back (SES tags, the Twilio callback URL), to `delivery_id`; with
    neither it is kept unlinked for reconciliation. Then: the delivery's status moves forward
    only (channels/state.py), the message follows while it is still on that delivery's plan
    step, a hard bounce or complaint suppresses the address (`suppression_reason` names another
    reason the event proves; `channel` scopes it when the delivery is unknown), a complaint
    revokes marketing consent. A bounced, failed or undelivered delivery has its fallback marked
    due now, for the tick to run (never inside the webhook); a success clears its step's timers.

    `recipients` lists every address the event is about when there are several (an SES bounce
    may name many); each is suppressed. With protect_unlinked=False an event that matches no
    delivery suppresses nothing (its source is not trusted enough for that).
    """
    provider_event_id, provider_message_id = provider_event_id[:255], (provider_message_id or "")[:255]
    with transaction.atomic():
        delivery = _find_delivery(provider, provider_message_id, delivery_id)
        existing = DeliveryEvent.objects.filter(provider=provider, provider_event_id=provider_event_id).first()
        if existing:
            return existing, False
        try:
            with transaction.atomic():
                event = DeliveryEvent.objects.create(
                    delivery=delivery,
                    provider=provider,
                    provider_event_id=provider_event_id,
                    provider_message_id=provider_message_id,
                    event_type=event_type if event_type in EventType.values else EventType.UNKNOWN,
                    detail=(detail or "")[:500],
                    permanent=permanent,
                    recipient=(recipient or "")[:512],
                    occurred_at=occurred_at,
                    raw=raw or {},
                )
        except IntegrityError:
            # The same webhook arrived twice at once and the other request stored it.
            return DeliveryEvent.objects.get(provider=provider, provider_event_id=provider_event_id), False

        audit.record(
            f"delivery.{event.event_type}",
            contact_id=delivery.contact_id if delivery else None,
            obj=delivery or event,
            channel=delivery.channel if delivery else channel,
            actor_label=f"provider:{provider}",
            data={"event": event.pk, "provider": provider, "provider_event_id": event.provider_event_id,
                  "provider_message_id": event.provider_message_id, "permanent": permanent,
                  "linked": delivery is not None},
            # The provider's detail may name the person (a clicked link, a bounce's diagnostic).
            personal={"detail": event.detail} if event.detail else None,
        )
        if delivery is not None or protect_unlinked:
            _protect_address(event, delivery, channel, suppression_reason, recipients)
        if delivery is not None:
            _settle(delivery, event)
            _tell_journeys(delivery, event)
    return event, True


def _tell_journeys(delivery: Delivery, event: DeliveryEvent) -> None:
    """Store the contact event journeys wait for, for a journey message's delivery or engagement."""
    name = MESSAGE_CONTACT_EVENTS.get(event.event_type)
    if name is None or delivery.message.source != MessageSource.JOURNEY:
        return
    # One INSERT, no savepoint: a repeat of the same kind for the same delivery is skipped.
    store_events([{
        "contact_id": delivery.contact_id, "name": name, "idempotency_key": f"delivery:{delivery.pk}:{event.event_type}",
        "occurred_at": provider_time(event.occurred_at),
        "properties": {"message_id": delivery.message_id, "delivery_id": delivery.pk, "channel": delivery.channel},
    }], source=conversations.EVENT_SOURCE)


def adopt_orphan_events(delivery: Delivery) -> int:
    """Link and apply events that arrived before the delivery's provider id was recorded.

    Called once a send is recorded; returns how many events it adopted.
    """
    if not delivery.provider_message_id:
        return 0
    with transaction.atomic():
        orphans = list(
            DeliveryEvent.objects.filter(
                delivery__isnull=True, provider=delivery.provider, provider_message_id=delivery.provider_message_id
            ).order_by("occurred_at", "pk")
        )
        if not orphans:
            return 0
        state.lock_message(delivery.message_id)
        delivery = Delivery.objects.select_for_update(of=("self",)).select_related("message").get(pk=delivery.pk)
        DeliveryEvent.objects.filter(pk__in=[event.pk for event in orphans]).update(delivery=delivery)
        for event in orphans:
            _settle(delivery, event)
        audit.record("delivery.events_adopted", contact_id=delivery.contact_id, obj=delivery,
                     channel=delivery.channel, data={"events": [event.pk for event in orphans]})
    return len(orphans)


def _find_delivery(provider: str, provider_message_id: str, delivery_id) -> Delivery | None:
    """The delivery the event is about, locked after its message (channels/state.py's lock
    order), so two webhooks about the same delivery, or about two devices of one push, apply
    one after the other."""
    deliveries = Delivery.objects.filter(provider=provider)
    found, by_echoed_id = None, False
    if provider_message_id:
        found = deliveries.filter(provider_message_id=provider_message_id).values_list("pk", "message_id").first()
    if found is None and delivery_id:
        found, by_echoed_id = deliveries.filter(pk=delivery_id).values_list("pk", "message_id").first(), True
    if found is None:
        return None
    state.lock_message(found[1])
    delivery = Delivery.objects.select_for_update(of=("self",)).select_related("message").get(pk=found[0])
    if by_echoed_id and delivery.provider_message_id not in ("", provider_message_id):
        # An echoed id links only a delivery that has no other provider id.
        return None
    return delivery


def _settle(delivery: Delivery, event: DeliveryEvent) -> None:
    """Apply one event to its (locked) delivery, and to its message if the message is still on
    the delivery's plan step; a late report about an earlier channel changes only its delivery."""
    moved = _apply_to_delivery(delivery, event)
    if event.event_type in MESSAGE_STATUS_AFTER_EVENT:
        state.move_message(delivery.message_id, MESSAGE_STATUS_AFTER_EVENT[event.event_type],
                           at_plan_step=delivery.plan_step)
    if moved and delivery.device_id is not None and fallback_condition_met(delivery):
        # One device got through: the step needs no channel after it, for any of its devices.
        Delivery.objects.filter(message_id=delivery.message_id, plan_step=delivery.plan_step,
                                fallback_due_at__isnull=False).update(fallback_due_at=None)


def _apply_to_delivery(delivery: Delivery, event: DeliveryEvent) -> bool:
    """Update the delivery from one event, in one UPDATE when its status moves. Returns whether it moved."""
    at = event.occurred_at
    kind = event.event_type
    changes = {"last_event_at": max(delivery.last_event_at, at) if delivery.last_event_at else at}
    if not delivery.provider_message_id and event.provider_message_id:
        # Settles a delivery whose send was never recorded (left "uncertain").
        changes["provider_message_id"] = event.provider_message_id
    if kind in SENT_EVENTS and not delivery.sent_at:
        # A delivery settled by its report was sent: replies are linked to sent deliveries only.
        changes["sent_at"] = at
    if kind == EventType.DELIVERED and not delivery.delivered_at:
        changes["delivered_at"] = at
    if kind in ENGAGEMENT_EVENTS and not delivery.engaged_at:
        changes["engaged_at"] = at
    new_status = EVENT_DELIVERY_STATUS.get(kind)
    if new_status is not None:
        with_status = dict(changes)
        if new_status in FALLBACK_STATUSES:
            # Due now: the tick hands the message to its next channel, outside this webhook's
            # transaction (channels.routing.fall_back decides whether it moves on).
            with_status.update(failed_at=delivery.failed_at or at, error_message=event.detail,
                               error_permanent=event.permanent, fallback_due_at=timezone.now())
        elif new_status == DeliveryStatus.COMPLAINED or fallback_condition_met(delivery, new_status):
            # It got through: no fallback. A complaint proves it reached the contact, who refused
            # it: the same content must not follow on another channel when the timer ends.
            with_status["fallback_due_at"] = None
        if state.move_delivery(delivery, new_status, **with_status):
            return True
    for name, value in changes.items():
        setattr(delivery, name, value)
    Delivery.objects.filter(pk=delivery.pk).update(**changes)
    return False


def _protect_address(event: DeliveryEvent, delivery: Delivery | None, channel: str, suppression_reason: str,
                     recipients: list[str] | None = None) -> None:
    """Suppress the addresses a hard bounce or complaint condemns; revoke consent on complaint."""
    reason = suppression_reason
    if not reason and event.event_type == EventType.BOUNCED and event.permanent:
        reason = SuppressionReason.HARD_BOUNCE
    if not reason and event.event_type == EventType.COMPLAINED:
        reason = SuppressionReason.COMPLAINT
    addresses = [address for address in (recipients or [event.recipient]) if address]
    if not addresses and delivery is not None:
        addresses = [delivery.to_address]
    if not reason or not addresses:
        return
    contact = delivery.contact if delivery else None
    channel = delivery.channel if delivery else channel
    actor_label = f"provider:{event.provider}"
    for address in addresses:
        # Only the delivery's own address belongs to its contact; others are just addresses.
        owner = contact if delivery and address.strip().lower() == delivery.to_address.strip().lower() else None
        suppress(address, channel=channel, reason=reason, contact=owner, actor_label=actor_label,
                 detail=f"{event.provider} {event.event_type} {event.provider_event_id}: {event.detail}")
    if reason == SuppressionReason.STOP and contact is not None:
        # The carrier says the contact replied STOP (Twilio 21610): that is consent revoked too.
        record_opt_out(contact, [channel], ConsentSource.CARRIER, actor_label=actor_label,
                       evidence={"provider": event.provider, "provider_event_id": event.provider_event_id,
                                 "delivery": delivery.pk, "detail": event.detail})
    if event.event_type == EventType.COMPLAINED and contact is not None:
        record_consent_change(
            contact, channel, Purpose.MARKETING, ConsentStatus.REVOKED, ConsentSource.COMPLAINT,
            evidence={"provider": event.provider, "provider_event_id": event.provider_event_id,
                      "provider_message_id": event.provider_message_id, "delivery": delivery.pk,
                      "detail": event.detail},
            actor_label=actor_label,
        )


def record_inbound_message(provider: str, provider_message_id: str, channel: str, from_address: str,
                           to_address: str = "", body: str = "", media: list | None = None, raw: dict | None = None,
                           received_at=None) -> tuple[InboundMessage, bool]:
    """Store something a contact sent us, once per provider message id. Returns (inbound, created).

    Links the contact with that phone number (or email), and the latest delivery sent to that
    address on the same channel that did not fail (bounced, failed, undelivered); the tick marks
    that delivery replied (apply_replies_batch), which keeps the webhook short. A keyword (STOP,
    START, HELP) is acted on in the same transaction (channels.consent_messages). Then, in that
    transaction too (channels.conversations):
    - from a blocked sender, the message is stored with blocked=True (and handled: no automation
      looks at it) and nothing more happens, beyond the consent a keyword changes;
    - a 1-5 answer to the satisfaction question is kept on the conversation it asks about and
      opens nothing;
    - a keyword and its reply join the contact's conversation on the channel that is not closed,
      and open none;
    - any other message (an opt-out word inside other text too) continues that conversation or
      opens one, making a contact marked unknown_sender for an address no contact has, and
      stores the `inbound.replied` ContactEvent that journeys act on.
    A bounded number of queries, whatever the history: the keyword lists and service levels come
    from this process's cache (channels.inbound_settings), the sender's contact, block, answered
    delivery and conversation from one query. On PostgreSQL the common message, a known
    sender's with no keyword that continues the open conversation or opens one, is written by
    the statement that finds the sender, conversation, message, audit entries and event
    (_stored_with_the_senders_query): one query in all, no transaction of its own, and two such
    messages opening a conversation at once share it. Any other (one to a conversation waiting
    on the customer too) takes the general path in a transaction, where the conversation is
    settled before the message is stored so that no row is written twice, and the audit entries
    go in one statement. A provider's retry of a known sender's stored message is found by the
    sender's query and writes nothing.
    """
    inbound = store_inbound_message(provider, provider_message_id, channel, from_address, to_address, body, media,
                                    raw, received_at)
    if inbound is None:
        return InboundMessage.objects.get(provider=provider, provider_message_id=provider_message_id), False
    return inbound, True


def store_inbound_message(provider: str, provider_message_id: str, channel: str, from_address: str,
                          to_address: str = "", body: str = "", media: list | None = None, raw: dict | None = None,
                          received_at=None) -> InboundMessage | None:
    """record_inbound_message() for a caller that needs no copy stored before (a webhook): the
    message stored, or None, with one query fewer, when its provider id is stored already."""
    at = received_at or timezone.now()
    try:
        return _record_inbound_message(provider, provider_message_id, channel, from_address, to_address, body,
                                       media, raw, at)[0]
    except _StoredBefore:
        # A copy of this message was stored first, by an earlier post or one at the same time
        # (whose commit the insert waited for): everything this one did is rolled back.
        return None


class _StoredBefore(Exception):
    """The message's provider id is taken: roll back what this copy of it did."""


def _record_inbound_message(provider, provider_message_id, channel, from_address, to_address, body, media, raw,
                            at) -> tuple[InboundMessage, bool]:
    actor_label = f"provider:{provider}"
    address_field = "phone" if channel in PHONE_CHANNELS else "email"
    current = inbound_settings()
    reading = read_inbound_keyword(channel, body, current.keyword_lists)
    sender = None
    in_reply_to_id = blocked = None

    def message(**fields) -> InboundMessage:
        return InboundMessage(
            provider=provider, provider_message_id=provider_message_id, channel=channel, from_address=from_address,
            to_address=to_address, body=body, media=media or [], in_reply_to_id=in_reply_to_id, raw=raw or {},
            received_at=at, keyword=reading.keyword, needs_agent=reading.needs_agent, blocked=bool(blocked),
            handled_at=timezone.now() if blocked else None, **fields)

    if (connection.vendor == "postgresql" and not (reading.keyword or reading.needs_agent)
            and conversations.satisfaction_score(body) is None):
        inbound = message()
        sender = _stored_with_the_senders_query(inbound, address_field, current.schedule(channel))
        if sender is None:
            return inbound, True
    if sender is None:
        sender = _sender(channel, address_field, from_address, provider, provider_message_id)
    if sender.stored_before:
        raise _StoredBefore  # a retry of a message stored earlier: nothing to do again
    contact_id, blocked, in_reply_to_id = sender.contact_id, sender.blocked, sender.in_reply_to_id
    # A digit answers the satisfaction question only while no conversation is going on: in one,
    # it answers whatever the agent asked there.
    score = conversations.satisfaction_score(body) \
        if contact_id and not blocked and sender.conversation is None else None
    with transaction.atomic(), audit.written_together():
        rated = conversations.awaiting_satisfaction(contact_id, channel, at) if score else None
        opens = not blocked and rated is None and (not reading.keyword or reading.needs_agent)
        conversation, change = (None if blocked or rated else sender.conversation), ""
        if opens and contact_id is None:
            contact, made = contact_for_unknown_sender(address_field, from_address, actor_label=actor_label)
            contact_id = contact.pk if contact else None
            # A contact another message made meanwhile may have its conversation already.
            conversation = conversations.unclosed(contact_id, channel) if contact and not made else None
        if opens and contact_id is not None:
            conversation, change = conversations.continue_or_open(contact_id, channel, at, conversation,
                                                                  current.schedule(channel))
        inbound = message(contact_id=contact_id, conversation=rated or conversation)
        if not insert_unless_taken(inbound):
            raise _StoredBefore
        audit.record_built(_received_entry(inbound))
        if change:
            conversations.audit_inbound(conversation, change, inbound)
        # STOP, START and HELP: consent changes and the one reply, kept or lost with the message.
        act_on_keyword(inbound, reading)
        if rated is not None:
            conversations.record_satisfaction(rated, score, inbound)
        elif change:
            # One INSERT, no savepoint: the key names this message, stored just now and only once.
            store_events([conversations.replied_event(inbound, conversation)], source=conversations.EVENT_SOURCE)
        elif conversation is not None and not blocked:
            conversations.join(conversation, inbound)
    return inbound, True


def _stored_with_the_senders_query(inbound: InboundMessage, address_field: str, schedule) -> "_Sender | None":
    """PostgreSQL, for a message with no keyword and no satisfaction score: in one statement,
    the sender's query and, if the sender is known and not blocked, everything the general path
    writes for that message: its conversation on the channel continued if open, or opened if it
    has none not closed; the message, its audit entries and its inbound.replied event. None when
    written (`inbound` then holds its key, contact, conversation and the delivery it answers);
    else who wrote, with nothing written, for the general path to decide: an unknown, blocked or
    retrying sender, or one whose conversation waits on them (then read again, with it)."""
    at, channel = inbound.received_at, inbound.channel
    conversation = conversations.new_conversation(None, channel, at, *schedule)
    entries = [_received_entry(inbound), *conversations.inbound_entries(conversation, "opened", inbound)]
    rows = {"conversation": row_of(conversation), "inbound": row_of(inbound), "audit": list(map(audit.row_of, entries)),
            "event": event_row(conversations.replied_event(inbound, conversation), source=conversations.EVENT_SOURCE)}
    sender_sql, sender_params = WHO_WROTE[address_field].statement(
        channel=channel, address=inbound.from_address, address_hash=hash_address(inbound.from_address),
        provider=inbound.provider, provider_message_id=inbound.provider_message_id)
    params = [*sender_params, *(row_json(row) for row in (rows["conversation"], rows["inbound"])),
              "[" + ", ".join(map(row_json, rows["audit"])) + "]", row_json(rows["event"])]
    try:
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            with prepared_cursor() as cursor, connection.wrap_database_errors:
                cursor.execute(_one_statement(sender_sql, rows, address_field), params)
                found = cursor.fetchone()
    except IntegrityError:  # a copy of this message stored meanwhile
        return _sender(channel, address_field, inbound.from_address, inbound.provider, inbound.provider_message_id)
    if found is None:
        return _unknown_sender(channel, inbound.from_address)
    contact_id, blocked, in_reply_to_id, stored_before, inbound_id, conversation_id = found
    if conversation_id is None:
        if blocked or stored_before:
            return _Sender(contact_id, bool(blocked), in_reply_to_id, None, bool(stored_before))
        return _sender(channel, address_field, inbound.from_address, inbound.provider, inbound.provider_message_id)
    inbound.pk, inbound.contact_id, inbound.in_reply_to_id = inbound_id, contact_id, in_reply_to_id
    inbound.conversation_id = conversation_id
    inbound._state.adding, inbound._state.db = False, "default"
    return None


def _one_statement(sender_sql: str, rows: dict, address_field: str) -> str:
    """_stored_with_the_senders_query()'s statement, built once per process and address field.
    `s` is who wrote, `go` that row where the message is the common one, `k` the key a new
    conversation would take, `c` the conversation continued or opened (`opened`: it took `k`),
    `m` the message, `r0` each row as its JSON holds it; the keys and the sender's values are
    filled in here, as the general path fills them in. The conversation is one INSERT ... ON
    CONFLICT on the constraint of one not closed per contact and channel: it opens one where
    there is none, continues the one there is if open, and writes nothing if it waits; two
    messages opening one at once end with one conversation, the second continuing it."""
    key = (connection.alias, address_field)
    if key not in _statements:
        table = Conversation._meta.db_table
        opened = f"'{conversations.OPENED_ACTION}'"
        sequence = sequence_of(connection.ops.quote_name(table), Conversation._meta.pk.column, connection)

        def insert(name, source="go, c", where="", on_conflict="", **computed):
            row = rows[name]
            return insert_from_json(row[0] if isinstance(row, list) else row, connection, source=source,
                                    computed=tuple(computed.items()), where=where, many=isinstance(row, list),
                                    on_conflict=on_conflict)
        conversation = insert(
            "conversation", source="go, k", id="k.id", contact_id="go.contact",
            on_conflict=f"ON CONFLICT (contact_id, channel) WHERE NOT (status = '{ConversationStatus.CLOSED}') "
                        "DO UPDATE SET last_inbound_at = EXCLUDED.last_inbound_at, "
                        f"last_activity_at = EXCLUDED.last_activity_at WHERE {table}.status = "
                        f"'{ConversationStatus.OPEN}' RETURNING id")
        _statements[key] = " ".join([
            f"WITH s (contact, blocked, answered, stored_before) AS MATERIALIZED ({sender_sql}),",
            "go AS (SELECT * FROM s WHERE NOT s.blocked AND NOT s.stored_before),",
            f"k AS (SELECT nextval('{sequence}'::regclass) AS id FROM go),",
            f"u AS ({conversation}),",
            "c AS (SELECT u.id, u.id = k.id AS opened FROM u, k),",
            "m AS ({} RETURNING id),".format(insert("inbound", contact_id="go.contact", conversation_id="c.id",
                                                    in_reply_to_id="go.answered")),
            "a AS ({}),".format(insert(
                "audit", source="go, c, m", where=f"c.opened OR r0.action <> {opened}", contact_id="go.contact",
                object_id=f"CASE WHEN r0.action = {opened} THEN c.id::text ELSE m.id::text END",
                data=f"r0.data || CASE WHEN r0.action = {opened} "
                     "THEN jsonb_build_object('inbound_message', m.id) "
                     "ELSE jsonb_build_object('in_reply_to', go.answered) END")),
            "e AS ({})".format(insert(
                "event", source="go, c, m", contact_id="go.contact",
                properties="r0.properties || jsonb_build_object('conversation_id', c.id, 'inbound_message_id', m.id)")),
            "SELECT s.*, m.id, c.id FROM s LEFT JOIN c ON true LEFT JOIN m ON true",
        ])
    return _statements[key]


# _one_statement's statements, per database and address field.
_statements: dict = {}


def _received_entry(inbound: InboundMessage) -> audit.PendingEntry:
    return audit.build(
        "inbound.received", contact_id=inbound.contact_id, obj=inbound, channel=inbound.channel,
        actor_label=f"provider:{inbound.provider}",
        data={"provider": inbound.provider, "provider_message_id": inbound.provider_message_id,
              "in_reply_to": inbound.in_reply_to_id, "media": len(inbound.media),
              **({"blocked": True} if inbound.blocked else {})},
    )


@dataclass(frozen=True, slots=True)
class _Sender:
    """Who wrote: the contact's id (None for an unknown address), whether the address is
    blocked, the delivery the message answers, the contact's conversation on the channel that
    is not closed, and whether a known sender's message with this provider id is stored already
    (a provider's retry)."""

    contact_id: int | None
    blocked: bool
    in_reply_to_id: int | None
    conversation: Conversation | None = None
    stored_before: bool = False


def _sender(channel: str, address_field: str, address: str, provider: str, provider_message_id: str) -> _Sender:
    """Who wrote from `address` on `channel`. One query, compiled once per process, for a known
    sender; two for an unknown one, whose retries the insert finds."""
    found = KNOWN_SENDER[address_field].rows(
        channel=channel, address=address, address_hash=hash_address(address), provider=provider,
        provider_message_id=provider_message_id)
    if not found:
        return _unknown_sender(channel, address)
    contact_id, blocked, in_reply_to_id, conversation_id, conversation_status, stored_before = found[0]
    conversation = None
    if conversation_id is not None:
        conversation = Conversation(pk=conversation_id, contact_id=contact_id, channel=channel,
                                    status=conversation_status)
    return _Sender(contact_id, bool(blocked), in_reply_to_id, conversation, bool(stored_before))


def _unknown_sender(channel: str, address: str) -> _Sender:
    blocked_query = conversations.blocked_senders(channel, hash_address(address))
    return _Sender(None, blocked_query.exists(), _answered(channel, address).values_list("pk", flat=True).first())


def _answered(channel: str, address: str):
    """The latest delivery sent to `address` on `channel` that reached it (one that failed never
    reached the contact, so a reply cannot answer it), as a one-row values queryset."""
    return (Delivery.objects.filter(channel=channel, to_address=address, sent_at__isnull=False)
            .exclude(status__in=sorted(FALLBACK_STATUSES)).order_by("-sent_at", "-pk").values("pk")[:1])


def _known_sender_query(address_field: str, *, with_conversation: bool = True):
    """_sender()'s query for a known sender; without its conversation, the first part of
    _one_statement's (which finds the conversation as it writes it)."""
    def build(channel, address, address_hash, provider, provider_message_id):
        unclosed = Conversation.objects.filter(contact=OuterRef("pk"), channel=channel).exclude(
            status=ConversationStatus.CLOSED)
        stored = InboundMessage.objects.filter(provider=provider, provider_message_id=provider_message_id)
        found = (Contact.objects.reachable().filter(**{address_field: address})
                 .annotate(sender_blocked=Exists(conversations.blocked_senders(channel, address_hash)),
                           answered_delivery=Subquery(_answered(channel, address)),
                           stored_before=Exists(stored)))
        if not with_conversation:
            return found.values_list("pk", "sender_blocked", "answered_delivery", "stored_before")[:1]
        found = found.annotate(open_conversation=Subquery(unclosed.values("pk")[:1]),
                               open_conversation_status=Subquery(unclosed.values("status")[:1]))
        return found.values_list("pk", "sender_blocked", "answered_delivery", "open_conversation",
                                 "open_conversation_status", "stored_before")[:1]
    return QueryTemplate(build, "channel", "address", "address_hash", "provider", "provider_message_id")


KNOWN_SENDER = {field: _known_sender_query(field) for field in ("phone", "email")}
WHO_WROTE = {field: _known_sender_query(field, with_conversation=False) for field in ("phone", "email")}


REPLY_BATCH = 200


def apply_replies_batch(now, report, handled: set | None = None) -> int:
    """A tick stage: claim inbound messages whose delivery is not yet marked replied and record
    the REPLIED event on it (its status, the message engaged, its fallback stopped). One that
    cannot be applied is quarantined; the rest of its batch goes on."""
    with transaction.atomic():
        rows = claim(
            excluding(InboundMessage.objects.filter(in_reply_to__isnull=False, reply_applied_at__isnull=True,
                                                    quarantined_at__isnull=True), handled)
            .select_related("in_reply_to").order_by("received_at", "id"),
            REPLY_BATCH,
        )
        if not rows:
            return 0
        failures = run_isolating_failures(rows, lambda batch: _apply_replies(batch, now))
        report.quarantined += quarantine_failures(InboundMessage, failures, now, stage="replies")
        return len(rows)


def _apply_replies(rows: list[InboundMessage], now) -> None:
    for inbound in rows:
        delivery = inbound.in_reply_to
        record_delivery_event(
            delivery.provider, f"inbound:{inbound.provider}:{inbound.provider_message_id}",
            delivery.provider_message_id, EventType.REPLIED, inbound.received_at, recipient=inbound.from_address,
            raw={"inbound_message": inbound.pk}, delivery_id=delivery.pk,
        )
    InboundMessage.objects.filter(pk__in=[inbound.pk for inbound in rows]).update(reply_applied_at=now)
