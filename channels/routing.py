"""The path of one message: create it, route it, gate it, hand it to a channel worker.

dispatch() walks the message's channel plan from its current step: a channel the contact
cannot be reached on is skipped; the compliance gate decides for the first reachable one;
an allowed message becomes a queued Delivery (for push, one per device) whose send task is
enqueued after commit; the channel worker renders it when it sends (channels.delivery).
fall_back() moves an undelivered message to the next channel of its plan. Every gate verdict is
kept as a Decision row, sealed into the audit chain; so is every verdict of arbitration, which
runs first (channels/arbitration.py).
"""
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from compliance import decisions, gate, ledger
from contacts.models import Contact, Device
from omni import audit
from omni.choices import Channel, Purpose, Urgency
from omni.lib.bulk import InstanceMaker, bulk_insert, can_reserve_ids, filter_in, reserve_ids
from omni.lib.demo_time import scaled

from . import arbitration, state, whatsapp
from .models import (
    ENGAGED_DELIVERY_STATUSES,
    FAILED_DELIVERY_STATUSES,
    Conversation,
    ConversationStatus,
    Delivery,
    DeliveryStatus,
    Message,
    MessageStatus,
)

# Urgencies whose plans keep their order whatever the contact prefers: they start on the channel
# that reaches soonest.
PLAN_ORDER_KEPT_URGENCIES = frozenset({Urgency.HIGH, Urgency.CRITICAL})

# Gate reasons that say "not on this channel" rather than "not to this person": routing tries
# the next channel. Every other refusal (an opt-out, a complaint, STOP) ends the message, so
# opting out of one channel never moves the same content to another.
CHANNEL_INELIGIBLE_REASONS = frozenset({
    "no_address",
    "no_marketing_consent",
    "suppressed:hard_bounce",
    "suppressed:soft_bounces",
    "suppressed:invalid_address",
    "suppressed:carrier_deactivated",
})


def provider_name(channel: str) -> str:
    return settings.OMNI_PROVIDERS.get(channel, "sandbox")


def create_message(*, contact, channel_plan, source, template_version=None, content=None, purpose="",
                   urgency="normal", variables=None, intent_key="", idempotency_key=None, expires_at=None, priority=0,
                   conversation=None, agent=None, api_key=None, exemption="", resent_from=None) -> tuple[Message, bool]:
    """Create the canonical message, or return the one already made for idempotency_key.

    It says what a published `template_version` says, or what `content` says as written
    (variants in TemplateVersion.variants' shape), never both. `exemption` (omni.choices.Exemption)
    lets it pass some of the gate's rules; only Omni's own code sets it.
    """
    message = Message(
        contact=contact,
        template_version=template_version,
        content=content,
        purpose=purpose,
        urgency=urgency,
        priority=priority,
        intent_key=intent_key,
        variables=variables or {},
        channel_plan=list(channel_plan),
        source=source,
        conversation=conversation,
        agent=agent,
        api_key=api_key,
        resent_from=resent_from,
        idempotency_key=idempotency_key,
        expires_at=expires_at,
        exemption=exemption,
    )
    try:
        with transaction.atomic():
            [stored], created = create_messages([message])
    except IntegrityError:
        # Two requests with the same idempotency key at once: the other one stored it.
        if not idempotency_key:
            raise
        return Message.objects.get(idempotency_key=idempotency_key), False
    return stored, bool(created)


def create_messages(messages: list[Message]) -> tuple[list[Message], list[Message]]:
    """Store unsaved messages in bulk, except those whose idempotency key is already taken.

    Returns every message in the order given (the stored one where the key was taken) and the
    list of those created now. The gate's decision on each, when dispatched, is its audit trail.
    """
    every, new = _prepared(messages)
    bulk_insert(new, set_ids=True)
    return every, new


def create_and_dispatch(messages: list[Message], *, now=None) -> tuple[list[Message], list[Message]]:
    """create_messages(), then dispatch_many() of the messages created now; returns what
    create_messages() returns. In the caller's transaction when there is one.

    Where the database gives keys before rows are written (PostgreSQL), the new messages are
    routed before they are stored, and written once, in the status routing gave them: a batch
    is not inserted pending and then updated row by row through every index of the table.
    """
    if not can_reserve_ids(Message):
        every, new = create_messages(messages)
        dispatch_many(new, now=now)
        return every, new
    with transaction.atomic(savepoint=False):
        every, new = _prepared(messages)
        reserve_ids(new)
        _dispatch(new, now or timezone.now(), stored=False)
    return every, new


def _prepared(messages: list[Message]) -> tuple[list[Message], list[Message]]:
    """create_messages() up to the insert: the messages checked, those whose key is taken
    replaced by the stored one, and the new ones marked as tests and their plans put in the
    contact's order."""
    for message in messages:
        if not message.channel_plan:
            raise ValueError("A message needs a channel plan with at least one channel.")
        if (message.template_version_id is None) == (message.content is None):
            raise ValueError("A message says what a template version says or carries its own content, not both.")
        if message.content is not None and not (isinstance(message.content, list) and all(
                isinstance(v, dict) and v.get("channel") in Channel.values for v in message.content)):
            raise ValueError('Own content is a list of variants such as [{"channel": "sms", "text_body": "..."}].')
        message.purpose = message.purpose or (message.template_version.purpose if message.template_version_id else "")
        if not message.purpose:
            raise ValueError("A message with its own content needs a purpose.")
    keys = [m.idempotency_key for m in messages if m.idempotency_key]
    existing = {}
    if keys:
        existing = {
            m.idempotency_key: m
            for m in filter_in(Message.objects.all(), "idempotency_key", keys).select_related("contact", "template_version")
        }
    new = [m for m in messages if not m.idempotency_key or m.idempotency_key not in existing]
    profiles = _unloaded_profiles(new)
    for message in new:
        # A test contact's messages are tests, whoever sends them.
        message.is_test = (message.contact.is_test if Message.contact.is_cached(message)
                           else profiles[message.contact_id][1])
    put_preferred_channel_first(new, {pk: preferred for pk, (preferred, _) in profiles.items()})
    return [existing.get(m.idempotency_key, m) if m.idempotency_key else m for m in messages], new


def _unloaded_profiles(messages: list[Message]) -> dict[int, tuple[str, bool]]:
    """(preferred channel, is test) of the contacts of messages made without their contact loaded,
    in one query (none when every contact is loaded)."""
    unloaded = {m.contact_id for m in messages if not Message.contact.is_cached(m)}
    if not unloaded:
        return {}
    return {pk: (preferred, is_test) for pk, preferred, is_test
            in Contact.objects.filter(pk__in=unloaded).values_list("pk", "preferred_channel", "is_test")}


def put_preferred_channel_first(messages: list[Message], preferences: dict | None = None) -> None:
    """Move each contact's preferred channel to the front of their message's plan, with its own
    settings, the other channels keeping their order; unless the urgency is high or critical.

    Done to the plan as it is stored, never while routing walks it: fallback moves to the next
    plan step, which must be the next channel of the order the message was created with. Reads
    the preferences of contacts not loaded with their message in one query.
    """
    movable = [m for m in messages if m.urgency not in PLAN_ORDER_KEPT_URGENCIES and len(m.channel_plan) > 1]
    if preferences is None:
        unloaded = {m.contact_id for m in movable if not Message.contact.is_cached(m)}
        preferences = (dict(Contact.objects.filter(pk__in=unloaded).values_list("pk", "preferred_channel"))
                       if unloaded else {})
    for message in movable:
        preferred = (message.contact.preferred_channel if Message.contact.is_cached(message)
                     else preferences.get(message.contact_id, ""))
        channels = [entry["channel"] for entry in message.channel_plan]
        if not preferred or preferred not in channels:
            continue
        first = channels.index(preferred)
        plan = list(message.channel_plan)
        message.channel_plan = [plan[first], *plan[:first], *plan[first + 1:]]
        message.preferred_channel_first = preferred


def dispatch(message: Message, *, now=None) -> Delivery | None:
    """Route, gate and queue one message from its current plan step. Returns the new Delivery."""
    return dispatch_many([message], now=now).get(message.pk)


@dataclass
class _Candidate:
    step: int
    channel: str
    variant: dict | None
    address: str
    provider: str
    # Push goes to every enabled device of the contact, one delivery each.
    devices: tuple = ()
    verdict: gate.Verdict | None = None
    # Its place in the batch the gate decides (gate.Batch).
    index: int = -1


# In the caller's transaction when there is one (no savepoint: the tick isolates failures
# itself); in one of its own otherwise, so the contact locks hold until the ledger is written.
@transaction.atomic(savepoint=False)
def dispatch_many(messages: list[Message], *, now=None) -> dict[int, Delivery]:
    """Route, gate and queue many messages at once. Returns a new delivery by message id.

    First, arbitration (channels/arbitration.py) takes out the messages that repeat an intent
    the contact was already given, or that collide with a more important message to the same
    contact: each is deferred or dropped with a Decision naming the rule and the message that
    displaced it. For each other message, routing walks the channel plan from its current step: a channel without
    something written for it is skipped; the others are put to the compliance gate, and a
    channel it rules out for this channel only (no address, no opt-in, a bounced address) is
    skipped too; the first other verdict (queue, defer or suppress) stands. Every verdict
    routing relied on is kept as a Decision row, with its audit entry, and each message queued as
    a row of the send ledger (frequency caps count them), for the messages routing moved (not for
    one another worker moved first). Marketing to a contact in a support conversation, or just out
    of one, is deferred by the gate (conversation_holds). The whole batch costs a fixed handful of
    queries.

    Runs inside the caller's transaction, which holds the messages' locks (claimed, or just
    created); the contacts are locked next, before the gate reads the ledger (channels/state.py),
    so two batches for one contact cannot both pass its caps. Send tasks are enqueued after it
    commits.
    """
    return _dispatch(messages, now or timezone.now(), stored=True)


def _dispatch(messages: list[Message], now, *, stored: bool) -> dict[int, Delivery]:
    """dispatch_many() of stored messages, or, not `stored`, of new messages whose keys are
    reserved: those are written here, each once routed (create_and_dispatch)."""
    pending = [m for m in messages if m.status not in state.FINAL_MESSAGE_STATUSES]
    state.lock_contacts({m.contact_id for m in pending})
    devices = _push_devices(pending)
    candidates = {m.pk: _candidates(m, devices) for m in pending}
    sessions = _whatsapp_sessions(pending, candidates, now)
    holds = conversation_holds(pending, now)
    requests = []
    for message in pending:
        for c in candidates[message.pk]:
            if c.variant is not None:
                c.index = len(requests)
                facts = {"whatsapp_session": message.contact_id in sessions} if c.channel == Channel.WHATSAPP else {}
                if message.is_test:
                    # Kept with the decision, so the decision list can show test sends.
                    facts[gate.TEST_MESSAGE_FACT] = True
                if message.preferred_channel_first:
                    # Why the plan starts where it does, kept with the decision.
                    facts["preferred_channel_first"] = message.preferred_channel_first
                held_by = holds.get(message.contact_id, ()) if message.purpose == Purpose.MARKETING else ()
                requests.append(gate.SendRequest(message.contact, c.channel, message.purpose, c.address,
                                                 c.provider, message.expires_at, message.exemption, message.pk, facts,
                                                 held_by))
    batch = gate.Batch(requests, now)
    # Under the contact locks, so what it reads as already queued includes every other batch's;
    # after the gate's facts, so "one per channel" judges the channel routing will really use.
    displaced = arbitration.arbitrate(
        pending, {m.pk: _first_choice(m, candidates[m.pk], batch) for m in pending}, now)
    pending = [m for m in pending if m.pk not in displaced]

    moves, entries, rulings, queued, undeliverable = [], [], [], [], []
    make_delivery = _delivery_maker(now)
    for displacement in displaced.values():
        message, choice = displacement.message, displacement.choice
        moves.append(_routed(message, displacement.status, message.plan_step, displacement.verdict.reason,
                             defer_until=displacement.verdict.until))
        rulings.append((decisions.Ruling(displacement.verdict, message.pk, message.contact_id, choice.step,
                                         choice.provider), None))
    for message in pending:
        chosen, skipped, ruled = _route(candidates[message.pk], batch)
        for candidate in ruled:
            extra = {"skipped": skipped} if candidate is chosen and skipped else None
            rulings.append((decisions.Ruling(candidate.verdict, message.pk, message.contact_id, candidate.step,
                                             candidate.provider), extra))
        if chosen is None:
            undeliverable.append((message, skipped))
        elif chosen.verdict.outcome == gate.SUPPRESS:
            status = MessageStatus.EXPIRED if chosen.verdict.reason == "expired" else MessageStatus.SUPPRESSED
            moves.append(_routed(message, status, chosen.step, chosen.verdict.reason))
        elif chosen.verdict.outcome == gate.DEFER:
            moves.append(_routed(message, MessageStatus.DEFERRED, chosen.step, chosen.verdict.reason,
                                 defer_until=chosen.verdict.until))
        else:
            moves.append(_routed(message, MessageStatus.QUEUED, chosen.step, chosen.verdict.reason))
            queued.append((message, _build_deliveries(message, chosen, now, make_delivery)))
            batch.count_send(chosen.index)

    if undeliverable:
        # A message that already had a delivery has failed; one that never had any was suppressed.
        tried = set(filter_in(Delivery.objects.all(), "message_id", [m.pk for m, _ in undeliverable])
                    .values_list("message_id", flat=True).distinct()) if stored else set()
        for message, skipped in undeliverable:
            status = MessageStatus.FAILED if message.pk in tried else MessageStatus.SUPPRESSED
            moves.append(_routed(message, status, message.plan_step, "no_eligible_channel"))
            entries.append((message.pk, audit.build(
                "message.undeliverable", contact_id=message.contact_id, obj=message, reason="no_eligible_channel",
                data={"skipped": skipped, "status": status})))

    # A message something else moved meanwhile (an engagement, a cancellation) is left as it is,
    # and the verdicts routing reached for it are not kept: they took no effect.
    if stored:
        moved = state.move_messages(moves, now)
    else:
        moved = state.move_unsaved_messages(moves, now)
        bulk_insert(messages, set_ids=True)
    queued = [(message, built) for message, built in queued if message.pk in moved]
    bulk_insert([d for _, built in queued for d in built], set_ids=True)
    # One ledger row per message and plan step, however many push devices it went to.
    ledger.record([ledger.Send(message.contact_id, built[0].channel, message.purpose, message.pk, built[0].plan_step,
                               now) for message, built in queued])
    kept = [(ruling, extra) for ruling, extra in rulings if ruling.message_id in moved]
    decisions.record([ruling for ruling, _ in kept], now,
                     extra={index: extra for index, (_, extra) in enumerate(kept) if extra})
    audit.record_many([entry for message_id, entry in entries if message_id in moved])
    enqueue_sends([(d, message.purpose) for message, built in queued for d in built])
    return {message.pk: built[0] for message, built in queued}


def _routed(message: Message, status: str, step: int, reason: str, *, defer_until=None) -> state.MessageMove:
    """Routing's verdict on a message, from the plan step it was routed from to `step`."""
    return state.MessageMove(message, status, at_plan_step=message.plan_step,
                             fields={"status_reason": reason, "defer_until": defer_until, "plan_step": step})


def _first_choice(message: Message, candidates: list[_Candidate], batch: gate.Batch) -> arbitration.Choice:
    """Where routing would send the message: arbitration's "one per channel" reads it. A channel
    the gate rules out for this channel only is skipped, as _route skips it: an alert for SMS,
    then email, to a contact without a phone (or whose number bounced) goes by email."""
    written = [c for c in candidates if c.variant is not None]
    first = next((c for c in written if not _ineligible(batch.decide(c.index))), written[0] if written else None)
    if first is None:
        entry = message.channel_plan[min(message.plan_step, len(message.channel_plan) - 1)]
        return arbitration.Choice(message.plan_step, entry["channel"], "", provider_name(entry["channel"]))
    return arbitration.Choice(first.step, first.channel, first.address, first.provider)


def _push_devices(messages: list[Message]) -> dict[int, tuple]:
    """The enabled devices of every contact a push could go to, in one query."""
    wanted = {m.contact_id for m in messages
              if any(entry["channel"] == Channel.PUSH for entry in m.channel_plan[m.plan_step:])}
    found = {}
    if wanted:
        for device in Device.objects.filter(contact_id__in=wanted, enabled=True).order_by("pk"):
            found.setdefault(device.contact_id, []).append(device)
    return {contact_id: tuple(devices) for contact_id, devices in found.items()}


def _whatsapp_sessions(messages: list[Message], candidates: dict[int, list], now) -> dict:
    """The open WhatsApp sessions of the contacts a WhatsApp send may go to, in one query."""
    wanted = {m.contact_id for m in messages if any(c.channel == Channel.WHATSAPP for c in candidates[m.pk])}
    return whatsapp.session_ends(wanted, now) if wanted else {}


def conversation_holds(messages: list[Message], now) -> dict[int, tuple]:
    """The conversations holding marketing to the contacts of the marketing messages among
    `messages`, in one query (none without marketing): {contact id: ((conversation id, hold end
    or None while not closed), ...)}, for gate.SendRequest.conversations. A conversation holds
    while it is not closed and for settings.OMNI_CONVERSATION_HOLD after it closed."""
    wanted = {m.contact_id for m in messages if m.purpose == Purpose.MARKETING}
    if not wanted:
        return {}
    hold = settings.OMNI_CONVERSATION_HOLD
    found = {}
    rows = (filter_in(Conversation.objects.all(), "contact_id", wanted)
            .filter(~Q(status=ConversationStatus.CLOSED) | Q(closed_at__gt=now - hold))
            .order_by("contact_id", "id").values_list("contact_id", "id", "status", "closed_at"))
    for contact_id, conversation_id, status, closed_at in rows:
        held_until = None if status != ConversationStatus.CLOSED else closed_at + hold
        found.setdefault(contact_id, []).append((conversation_id, held_until))
    return {contact_id: tuple(held) for contact_id, held in found.items()}


def _candidates(message: Message, devices: dict[int, tuple]) -> list[_Candidate]:
    contact = message.contact
    candidates = []
    for step, entry in enumerate(message.channel_plan):
        if step < message.plan_step:
            continue
        channel = entry["channel"]
        on_devices = devices.get(contact.pk, ()) if channel == Channel.PUSH else ()
        address = (on_devices[0].provider_endpoint or on_devices[0].token) if on_devices else contact.address_for(channel)
        candidates.append(_Candidate(step, channel, message.variant_for(channel, contact.locale), address,
                                     provider_name(channel), on_devices))
    return candidates


def _ineligible(verdict: gate.Verdict) -> bool:
    """Whether the gate ruled the channel out for this channel only: routing tries the next."""
    return verdict.outcome == gate.SUPPRESS and verdict.reason in CHANNEL_INELIGIBLE_REASONS


def _route(candidates: list[_Candidate], batch: gate.Batch) -> tuple[_Candidate | None, list[dict], list[_Candidate]]:
    """The first channel the gate has to rule on for real, the channels skipped before it, and
    the candidates whose verdicts routing relied on (the skipped ones the gate ruled out, then the chosen one).
    The gate decides each candidate as routing reaches it, never one after the chosen."""
    skipped, ruled = [], []
    for candidate in candidates:
        if candidate.variant is None:
            skipped.append({"channel": candidate.channel, "reason": "no_content_for_channel"})
            continue
        candidate.verdict = batch.decide(candidate.index)
        ruled.append(candidate)
        if _ineligible(candidate.verdict):
            skipped.append({"channel": candidate.channel, "reason": candidate.verdict.reason})
        else:
            return candidate, skipped, ruled
    return None, skipped, ruled


def _delivery_maker(now) -> InstanceMaker:
    # Published once the transaction commits (enqueue_sends), else republished a minute after
    # this (channels/publishing.py).
    return InstanceMaker(Delivery, queued_at=now, published_at=now)


def _build_deliveries(message: Message, chosen: _Candidate, now, make: InstanceMaker) -> list[Delivery]:
    """Unsaved deliveries of the chosen channel, one per device for push. Their content is
    rendered by the channel worker when it sends (channels.delivery), not here: routing stays
    cheap for the tick, and the content is made from the contact as they are at send time."""
    plan_entry = message.channel_plan[chosen.step]
    fallback_due_at = None
    has_next = chosen.step + 1 < len(message.channel_plan)
    if has_next and message.allows_fallback and plan_entry.get("fallback_after_seconds"):
        fallback_due_at = now + scaled(int(plan_entry["fallback_after_seconds"]))
    targets = [(d, d.provider_endpoint or d.token) for d in chosen.devices] or [(None, chosen.address)]
    deliveries = []
    for device, address in targets:
        delivery = make(message_id=message.pk, contact_id=message.contact_id, plan_step=chosen.step,
                        device_id=device.pk if device else None, channel=chosen.channel, provider=chosen.provider,
                        to_address=address, fallback_due_at=fallback_due_at)
        Delivery.message.field.set_cached_value(delivery, message)
        Delivery.contact.field.set_cached_value(delivery, message.contact)
        if device is not None:
            Delivery.device.field.set_cached_value(delivery, device)
        deliveries.append(delivery)
    return deliveries


def enqueue_send(delivery: Delivery, purpose: str) -> None:
    enqueue_sends([(delivery, purpose)])


def enqueue_sends(deliveries: list[tuple[Delivery, str]]) -> None:
    """Enqueue the deliveries' sends, in batches per lane, once the surrounding transaction
    commits. A broker error never reaches the caller: channels/publishing.py republishes a
    delivery a minute after its published_at (or its queued_at, if it has none)."""
    from .publishing import publish_sends

    wanted = [(delivery.pk, delivery.channel, purpose) for delivery, purpose in deliveries]
    if wanted:
        transaction.on_commit(lambda: publish_sends(wanted))


@transaction.atomic
def fall_back(delivery: Delivery, reason: str, *, now=None) -> Delivery | None:
    """Hand an undelivered message to the next channel of its plan, or mark it failed.

    Safe to call more than once for the same delivery (a permanent error and then the
    provider's "failed" webhook): only the first call while this delivery's plan step is the
    message's current step moves it on. For push, the message moves on only once no delivery
    of the step (one per device) can still succeed.
    """
    message = (Message.objects.select_for_update(of=("self",)).select_related("contact", "template_version")
               .get(pk=delivery.message_id))
    step = delivery.plan_step
    if step != message.plan_step or message.status in state.FINAL_MESSAGE_STATUSES:
        return None
    Delivery.objects.filter(pk=delivery.pk).update(fallback_due_at=None)
    siblings = list(Delivery.objects.filter(message_id=message.pk, plan_step=step).exclude(pk=delivery.pk))
    for sibling in siblings:
        sibling.message = message
    if reason == "fallback_timeout":
        if any(fallback_condition_met(sibling) for sibling in siblings):
            return None  # another device of this step got through in time
    elif any(s.status not in FAILED_DELIVERY_STATUSES | {DeliveryStatus.CANCELLED} for s in siblings):
        return None  # another device of this step may still deliver
    Delivery.objects.filter(pk__in=[s.pk for s in siblings]).update(fallback_due_at=None)
    has_next = step + 1 < len(message.channel_plan)
    if not has_next or not message.allows_fallback:
        why = "fallback_forbidden_by_template" if has_next else reason
        if state.move_message(message, MessageStatus.FAILED, at_plan_step=step, status_reason=why, defer_until=None):
            audit.record("message.failed", contact_id=message.contact_id, obj=message, channel=delivery.channel,
                         reason=why, data={"delivery": delivery.pk, "reason": reason})
        return None
    if not state.move_message(message, MessageStatus.PENDING, at_plan_step=step, now=now, plan_step=step + 1):
        return None
    audit.record("message.fell_back", contact_id=message.contact_id, obj=message, channel=delivery.channel,
                 reason=reason, data={"from_channel": delivery.channel,
                                      "to_channel": message.channel_plan[step + 1]["channel"], "delivery": delivery.pk})
    return dispatch(message, now=now)


def fallback_condition_met(delivery: Delivery, status: str | None = None) -> bool:
    """Whether a delivery reached (or, at `status`, would reach) what its plan entry waits for
    before its fallback timer ends."""
    status = status or delivery.status
    plan = delivery.message.channel_plan
    step = delivery.plan_step
    wanted = plan[step].get("fallback_unless", "delivered") if step < len(plan) else "delivered"
    if wanted == "engaged":
        return status in ENGAGED_DELIVERY_STATUSES
    return status in ENGAGED_DELIVERY_STATUSES | {DeliveryStatus.DELIVERED}
