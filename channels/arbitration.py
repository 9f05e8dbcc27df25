"""Arbitration: which messages to one contact go now, whatever their source (journey, campaign,
API, agent), before the gate is asked about any of them.

routing.dispatch_many calls arbitrate() on its batch once the contacts are locked
(state.lock_contacts), so the messages it reads as already queued include every other batch's
for those contacts: two dispatches for one contact take turns, and the second sees what the
first queued. One ArbitrationRule per purpose says, for the messages of that purpose:

- the intent window: a message whose intent key the contact was already given within it (a
  message queued, sent, delivered or engaged, said within the window, whatever its source)
  is dropped, "arbitration:duplicate_intent"; with one per channel, only when that message went
  on the same channel. Within a batch, the highest ranked of the messages sharing a key wins.
- the collision window: two messages collide when they go to the same contact within the
  collision window of the lower ranked one, whatever their intents, except messages sharing an
  intent key (those are the intent window's business). They rank by PURPOSE_PRIORITY, then
  Message.priority; at equal rank the one already queued wins, then the older. The lower one is
  deferred until the window after the winner has passed, or dropped, by the rule's action;
  "arbitration:collision". A message of the batch goes "now"; one already queued went at its
  said_at.

Both windows count from Message.said_at, when a message was last queued (channels/state.py
stamps it with the move), never from its created_at: a message made two days ago and deferred by
quiet hours, or moved to its plan's next channel, is said when it is queued. The index
arbitration reads, message_contact_intent, is on (contact, intent key, said_at).

A message that moved on to its plan's next channel was said on the channels before it whose
delivery got out, or may have (TOLD_DELIVERY_STATUSES), whatever its status now: an email
delivered but unread, whose SMS waits for the end of quiet hours, told the contact by email, when
that delivery was queued; so did one whose send is uncertain. One that bounced told them nothing.

A message already queued is never recalled: it can win, never lose (a message the batch routes
again from the queued status included). Messages with an exemption (an opt-out confirmation,
an agent's reply, a test send) are not displaced either. A purpose without a rule is never
displaced. Every displacement is a gate-shaped verdict (defer or suppress) with its SendFacts,
kept by routing as a Decision whose inputs["arbitration"] names the rule and the message that
displaced it ("displaced_by").

The winners then go to the gate, which may still refuse them: the message they displaced was
deferred (or dropped) all the same, as it would have been had the winner been sent.
"""
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import FilteredRelation, Q

from compliance import gate
from omni.choices import PURPOSE_PRIORITY
from omni.lib.bulk import filter_in

from .models import (
    ENGAGED_DELIVERY_STATUSES,
    ArbitrationAction,
    ArbitrationRule,
    DeliveryStatus,
    Message,
    MessageStatus,
)

# The messages that have been said: these count for the intent and collision windows.
SAID_STATUSES = (MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.ENGAGED)
# A delivery that told the contact its message, on its channel, whatever the message's status
# now. A complaint proves the message reached them (channels/provider_reports.py). One being sent,
# or whose send is uncertain (the provider's answer was lost), may have: it counts, rather than
# risk saying it twice.
TOLD_DELIVERY_STATUSES = tuple(sorted({DeliveryStatus.SENDING, DeliveryStatus.UNCERTAIN, DeliveryStatus.SENT,
                                       DeliveryStatus.DELIVERED, DeliveryStatus.COMPLAINED,
                                       *ENGAGED_DELIVERY_STATUSES}))

DUPLICATE_INTENT = "arbitration:duplicate_intent"
COLLISION = "arbitration:collision"


@dataclass(frozen=True)
class Rule:
    """An ArbitrationRule as arbitration reads it."""

    id: int
    version: int
    purpose: str
    intent_window: timedelta
    one_per_channel: bool
    collision_window: timedelta
    action: str

    def named(self) -> dict:
        return {"rule": self.id, "rule_version": self.version, "purpose": self.purpose,
                "intent_window_seconds": int(self.intent_window.total_seconds()),
                "one_per_channel": self.one_per_channel,
                "collision_window_seconds": int(self.collision_window.total_seconds()), "action": self.action}


@dataclass(frozen=True)
class Choice:
    """Where routing would send a message first: its plan step, channel, address and provider."""

    step: int
    channel: str
    address: str = ""
    provider: str = ""


@dataclass
class _Entry:
    """A message in one contact's contest: one of the batch, or one already said."""

    message_id: int
    purpose: str
    priority: int
    intent_key: str
    channel: str
    at: datetime
    source: str
    said: bool
    message: Message | None = None
    # A message of the batch that will still go out (won, or only deferred).
    alive: bool = True

    def sort_key(self):
        return (-PURPOSE_PRIORITY.get(self.purpose, 0), -self.priority, not self.said, self.at, self.message_id)


@dataclass(frozen=True)
class Displacement:
    """A message arbitration takes out of the batch, and the verdict kept for it."""

    message: Message
    verdict: gate.Verdict
    choice: Choice
    displaced_by: int
    status: str = field(default=MessageStatus.SUPPRESSED)


def current_rules() -> dict[str, Rule]:
    """Every arbitration rule by purpose, in one query."""
    return {row.purpose: Rule(row.pk, row.version, row.purpose, timedelta(seconds=row.intent_window_seconds),
                              row.one_per_channel, timedelta(seconds=row.collision_window_seconds), row.action)
            for row in ArbitrationRule.objects.all()}


def arbitrate(messages: list[Message], choices: dict[int, Choice], now: datetime,
              rules: dict[str, Rule] | None = None) -> dict[int, Displacement]:
    """The messages of the batch that give way, by message id; the rest go on to the gate.

    `choices` gives each message's first channel (routing's first candidate). Two queries at
    most, whatever the size of the batch: the rules, and the messages already said to the
    batch's contacts within the windows (on the message_contact_intent index).
    """
    if not messages:
        return {}
    rules = current_rules() if rules is None else rules
    contested = [m for m in messages if _can_lose(m, rules)]
    if not contested:
        return {}
    said = _said(contested, messages, rules, now)
    by_contact = defaultdict(list)
    for message in messages:
        choice = choices[message.pk]
        by_contact[message.contact_id].append(_Entry(
            message.pk, message.purpose, message.priority, message.intent_key, choice.channel, now, message.source,
            said=False, message=message))
    for entry_contact, entry in said:
        if entry_contact in by_contact:
            by_contact[entry_contact].append(entry)

    displaced = {}
    for entries in by_contact.values():
        if len(entries) > 1:
            displaced.update(_contest(entries, choices, rules, now))
    return displaced


def _can_lose(message: Message, rules: dict[str, Rule]) -> bool:
    rule = rules.get(message.purpose)
    return (rule is not None and message.status != MessageStatus.QUEUED and not message.exemption
            and (bool(rule.intent_window and message.intent_key) or bool(rule.collision_window)))


def _said(contested: list[Message], batch: list[Message], rules: dict[str, Rule], now) -> list[tuple[int, _Entry]]:
    """The messages already said to the contested contacts within the windows, in one query."""
    keys = {m.intent_key for m in contested if m.intent_key and rules[m.purpose].intent_window}
    intent_window = max((rules[m.purpose].intent_window for m in contested if m.intent_key), default=timedelta(0))
    collision_window = max((rules[m.purpose].collision_window for m in contested), default=timedelta(0))
    within = Q()
    if keys and intent_window:
        within |= Q(intent_key__in=sorted(keys), said_at__gt=now - intent_window)
    if collision_window:
        within |= Q(said_at__gt=now - collision_window)
    if not within:
        return []
    in_batch = {m.pk for m in batch}
    # One row per delivery that told the contact (a message that fell back may have several),
    # or one without a delivery for a message queued on its current step and not out yet.
    messages = Message.objects.alias(told=FilteredRelation(
        "deliveries", condition=Q(deliveries__status__in=TOLD_DELIVERY_STATUSES)))
    rows = (filter_in(messages.filter(within, Q(status__in=SAID_STATUSES) | Q(told__isnull=False)), "contact_id",
                      sorted({m.contact_id for m in contested}))
            .order_by().values_list("pk", "contact_id", "purpose", "priority", "intent_key", "channel_plan",
                                    "plan_step", "said_at", "source", "status", "told__channel", "told__queued_at"))
    said = {}
    for pk, contact_id, purpose, priority, intent_key, plan, step, said_at, source, status, told, told_at in rows:
        channels = [(told, told_at)] if told else []
        # A message of the batch is being routed again (it fell back, or waited): what its
        # deliveries told the contact before counts, its status does not.
        if status in SAID_STATUSES and pk not in in_batch:
            channels.append((plan[step]["channel"] if step < len(plan) else "", said_at))
        for channel, at in channels:
            # The latest time the message was said on each channel (a push to several devices,
            # or the current step's delivery, met twice).
            key = (contact_id, pk, channel)
            if key not in said or said[key].at < at:
                said[key] = _Entry(pk, purpose, priority, intent_key, channel, at, source, said=True)
    return [(contact_id, entry) for (contact_id, _, _), entry in said.items()]


def _contest(entries: list[_Entry], choices: dict[int, Choice], rules: dict[str, Rule], now) -> dict[int, Displacement]:
    """One contact's messages, highest ranked first: each either goes or gives way to one above it."""
    entries.sort(key=_Entry.sort_key)
    said = [e for e in entries if e.said]
    displaced, winners = {}, []
    for entry in entries:
        message = entry.message
        if entry.said or not _can_lose(message, rules):
            winners.append(entry)
            continue
        rule = rules[entry.purpose]
        duplicate = _same_intent(entry, rule, said, entries, now)
        if duplicate is not None:
            entry.alive = False
            displaced[entry.message_id] = _displace(entry, rule, choices, duplicate, DUPLICATE_INTENT,
                                                    gate.SUPPRESS, None)
            continue
        colliding = [w for w in winners if rule.collision_window and w.at + rule.collision_window > now
                     and not (w.intent_key and w.intent_key == entry.intent_key)
                     and w.message_id != entry.message_id]
        if not colliding:
            winners.append(entry)
            continue
        until = max(w.at for w in colliding) + rule.collision_window
        outcome = gate.DEFER if rule.action == ArbitrationAction.DEFER else gate.SUPPRESS
        entry.alive = outcome == gate.DEFER
        displaced[entry.message_id] = _displace(entry, rule, choices, colliding[0], COLLISION, outcome, until)
    return displaced


def _same_intent(entry: _Entry, rule: Rule, said: list[_Entry], entries: list[_Entry], now) -> _Entry | None:
    """The message that already carries this entry's intent: one said within the window (whatever
    its rank), or one of the batch ranked above it that still goes out."""
    if not (entry.intent_key and rule.intent_window):
        return None
    for other in [*said, *entries]:
        if other is entry:
            break
        if other.message_id == entry.message_id:
            continue  # what the message itself said before
        if (other.intent_key == entry.intent_key and other.alive and other.at > now - rule.intent_window
                and (not rule.one_per_channel or other.channel == entry.channel)):
            return other
    return None


def _displace(entry: _Entry, rule: Rule, choices: dict[int, Choice], winner: _Entry, kind: str, outcome: str,
              until) -> Displacement:
    message, choice, reason = entry.message, choices[entry.message_id], kind
    if outcome == gate.DEFER and message.expires_at and message.expires_at <= until:
        # Deferred past its expiry it would never go: it expires now, as the gate's deferrals do.
        outcome, reason, until = gate.SUPPRESS, "expired", None
    facts = gate.SendFacts(
        channel=choice.channel, purpose=message.purpose, address=choice.address, expires_at=message.expires_at,
        exemption=message.exemption, contact_id=message.contact_id,
        arbitration={**rule.named(), "kind": kind, "intent_key": message.intent_key, "priority": message.priority,
                     "source": message.source, "displaced_by": winner.message_id,
                     "winner": {"purpose": winner.purpose, "priority": winner.priority, "source": winner.source,
                                "intent_key": winner.intent_key, "channel": winner.channel,
                                "at": winner.at.isoformat(), "already_said": winner.said}})
    result = {"rule": "arbitration", "result": outcome, "reason": reason, "id": rule.id, "version": rule.version,
              "displaced_by": winner.message_id}
    if until:
        result["until"] = until.isoformat()
    verdict = gate.Verdict(outcome, reason, until=until if outcome == gate.DEFER else None, facts=facts,
                           rules=(result,))
    if outcome == gate.DEFER:
        status = MessageStatus.DEFERRED
    else:
        status = MessageStatus.EXPIRED if reason == "expired" else MessageStatus.SUPPRESSED
    return Displacement(message, verdict, choice, winner.message_id, status)
