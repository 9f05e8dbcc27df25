"""The path of one message: create it, route it, gate it, render it, hand it to a provider.

dispatch() walks the message's channel plan from its current step: a channel the contact
cannot be reached on is skipped; the compliance gate decides for the first reachable one;
an allowed message is rendered and becomes a queued Delivery whose send task is enqueued
after commit. fall_back() moves an undelivered message to the next channel of its plan.
Every decision writes an audit entry.
"""
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from compliance import gate
from omni import audit
from omni.choices import send_queue
from omni.lib.bulk import bulk_update
from templates.rendering import RenderError, contact_variables, render_variant

from .models import (
    ENGAGED_DELIVERY_STATUSES,
    Delivery,
    DeliveryStatus,
    Message,
    MessageStatus,
)

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

TERMINAL_MESSAGE_STATUSES = frozenset({
    MessageStatus.SUPPRESSED, MessageStatus.FAILED, MessageStatus.CANCELLED, MessageStatus.EXPIRED,
})


def provider_name(channel: str) -> str:
    return settings.OMNI_PROVIDERS.get(channel, "sandbox")


def create_message(*, contact, template_version, channel_plan, source, purpose="", urgency="normal", variables=None,
                   source_ref="", intent_key="", idempotency_key=None, expires_at=None, priority=0,
                   actor=None, actor_label="") -> tuple[Message, bool]:
    """Create the canonical message, or return the one already made for idempotency_key."""
    message = Message(
        contact=contact,
        template_version=template_version,
        purpose=purpose or template_version.purpose,
        urgency=urgency,
        priority=priority,
        intent_key=intent_key,
        variables=variables or {},
        channel_plan=list(channel_plan),
        source=source,
        source_ref=source_ref,
        idempotency_key=idempotency_key,
        expires_at=expires_at,
    )
    try:
        with transaction.atomic():
            [stored], created = create_messages([message], actor=actor, actor_label=actor_label)
    except IntegrityError:
        # Two requests with the same idempotency key at once: the other one stored it.
        if not idempotency_key:
            raise
        return Message.objects.get(idempotency_key=idempotency_key), False
    return stored, bool(created)


def create_messages(messages: list[Message], *, actor=None, actor_label="") -> tuple[list[Message], list[Message]]:
    """Store unsaved messages in bulk, except those whose idempotency key is already taken.

    Returns every message in the order given (the stored one where the key was taken) and the
    list of those created now.
    """
    for message in messages:
        if not message.channel_plan:
            raise ValueError("A message needs a channel plan with at least one channel.")
        message.purpose = message.purpose or message.template_version.purpose
    keys = [m.idempotency_key for m in messages if m.idempotency_key]
    existing = {}
    if keys:
        existing = {
            m.idempotency_key: m
            for m in Message.objects.filter(idempotency_key__in=keys).select_related("contact", "template_version")
        }
    new = [m for m in messages if not m.idempotency_key or m.idempotency_key not in existing]
    Message.objects.bulk_create(new, batch_size=1000)
    audit.record_many([
        audit.build("message.created", contact=m.contact, obj=m, actor=actor, actor_label=actor_label, reason=m.source,
                    data={"source_ref": m.source_ref, "intent_key": m.intent_key, "purpose": m.purpose,
                          "template_version": m.template_version_id, "channel_plan": m.channel_plan})
        for m in new
    ])
    return [existing.get(m.idempotency_key, m) if m.idempotency_key else m for m in messages], new


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
    verdict: gate.Verdict | None = None


def dispatch_many(messages: list[Message], *, now=None) -> dict[int, Delivery]:
    """Route, gate and queue many messages at once. Returns the new deliveries by message id.

    For each message, routing walks the channel plan from its current step: a channel without
    a template variant, an address or an opt-in is skipped; the first other channel is decided
    by the compliance gate (queue, defer or suppress). The whole batch costs a fixed handful of
    queries. Runs inside the caller's transaction; send tasks are enqueued after it commits.
    """
    now = now or timezone.now()
    pending = [m for m in messages if m.status not in TERMINAL_MESSAGE_STATUSES]
    candidates = {m.pk: _candidates(m) for m in pending}
    gated, requests = [], []
    for message in pending:
        for c in candidates[message.pk]:
            if c.variant is not None:
                gated.append(c)
                requests.append(gate.SendRequest(message.contact, c.channel, message.purpose, c.address,
                                                 c.provider, message.expires_at))
    for candidate, verdict in zip(gated, gate.decide_many(requests, now)):
        candidate.verdict = verdict

    entries, queued, undeliverable = [], [], []
    for message in pending:
        chosen, skipped = _route(candidates[message.pk])
        if skipped:
            entries.append(audit.build("message.channels_skipped", contact=message.contact, obj=message,
                                       data={"skipped": skipped}))
        if chosen is None:
            undeliverable.append((message, skipped))
        elif chosen.verdict.outcome == gate.SUPPRESS:
            status = MessageStatus.EXPIRED if chosen.verdict.reason == "expired" else MessageStatus.SUPPRESSED
            entries.append(_set_status(message, status, chosen.verdict.reason, "message.suppressed", now,
                                       channel=chosen.channel, data=chosen.verdict.as_data()))
        elif chosen.verdict.outcome == gate.DEFER:
            message.current_step = chosen.step
            entries.append(_set_status(message, MessageStatus.DEFERRED, chosen.verdict.reason, "message.deferred",
                                       now, channel=chosen.channel, data=chosen.verdict.as_data(),
                                       defer_until=chosen.verdict.until))
        else:
            delivery, failure = _build_delivery(message, chosen, now)
            if failure:
                entries.append(failure)
            else:
                queued.append((message, chosen, delivery))

    if undeliverable:
        # A message that already had a delivery has failed; one that never had any was suppressed.
        tried = set(Delivery.objects.filter(message__in=[m for m, _ in undeliverable])
                    .values_list("message_id", flat=True).distinct())
        for message, skipped in undeliverable:
            status = MessageStatus.FAILED if message.pk in tried else MessageStatus.SUPPRESSED
            entries.append(_set_status(message, status, "no_eligible_channel", "message.undeliverable", now,
                                       data={"skipped": skipped}))

    Delivery.objects.bulk_create([delivery for _, _, delivery in queued], batch_size=1000)
    for message, chosen, delivery in queued:
        message.current_step = chosen.step
        entries.append(_set_status(
            message, MessageStatus.QUEUED, chosen.verdict.reason, "message.allowed", now, channel=chosen.channel,
            data={**chosen.verdict.as_data(), "delivery": delivery.pk, "provider": chosen.provider,
                  "plan_step": chosen.step},
        ))
    bulk_update(pending, MESSAGE_ROUTING_FIELDS)
    audit.record_many(entries)
    enqueue_sends([(delivery, message.purpose) for message, _, delivery in queued])
    return {message.pk: delivery for message, _, delivery in queued}


MESSAGE_ROUTING_FIELDS = ["status", "status_reason", "defer_until", "current_step", "updated_at"]


def _candidates(message: Message) -> list[_Candidate]:
    contact, version = message.contact, message.template_version
    return [
        _Candidate(step, entry["channel"], version.variant_for(entry["channel"], contact.locale),
                   contact.address_for(entry["channel"]), provider_name(entry["channel"]))
        for step, entry in enumerate(message.channel_plan) if step >= message.current_step
    ]


def _route(candidates: list[_Candidate]) -> tuple[_Candidate | None, list[dict]]:
    """The first channel the gate has to rule on for real, and the channels skipped before it."""
    skipped = []
    for candidate in candidates:
        if candidate.variant is None:
            skipped.append({"channel": candidate.channel, "reason": "no_template_variant"})
        elif candidate.verdict.outcome == gate.SUPPRESS and candidate.verdict.reason in CHANNEL_INELIGIBLE_REASONS:
            skipped.append({"channel": candidate.channel, "reason": candidate.verdict.reason})
        else:
            return candidate, skipped
    return None, skipped


def _build_delivery(message: Message, chosen: _Candidate, now):
    """An unsaved Delivery with the rendered content, or (None, audit entry) if rendering failed."""
    contact = message.contact
    try:
        rendered = render_variant(chosen.variant, {**message.variables, **contact_variables(contact)})
    except RenderError as exc:
        return None, _set_status(message, MessageStatus.FAILED, f"render_error:{exc.field}", "message.render_failed",
                                 now, channel=chosen.channel, data={"error": str(exc), "field": exc.field})
    plan_entry = message.channel_plan[chosen.step]
    fallback_due_at = None
    has_next = chosen.step + 1 < len(message.channel_plan)
    if has_next and message.template_version.allow_fallback and plan_entry.get("fallback_after_seconds"):
        fallback_due_at = now + timedelta(seconds=int(plan_entry["fallback_after_seconds"]))
    delivery = Delivery(
        message=message,
        contact=contact,
        channel=chosen.channel,
        provider=chosen.provider,
        to_address=chosen.address,
        subject=rendered.get("subject", ""),
        text_body=rendered.get("text_body", ""),
        html_body=rendered.get("html_body", ""),
        content={
            "plan_step": chosen.step,
            "title": rendered.get("title", ""),
            "preheader": rendered.get("preheader", ""),
            "provider_template_id": rendered.get("provider_template_id", ""),
            "locale": rendered.get("locale", ""),
        },
        queued_at=now,
        fallback_due_at=fallback_due_at,
    )
    return delivery, None


def _set_status(message, status, reason, action, now, *, channel="", data=None, defer_until=None):
    """Change the message's status in memory and return the audit entry saying so."""
    message.status = status
    message.status_reason = reason
    message.defer_until = defer_until
    message.updated_at = now
    return audit.build(action, contact=message.contact, obj=message, channel=channel, reason=reason, data=data or {})


def enqueue_send(delivery: Delivery, purpose: str) -> None:
    enqueue_sends([(delivery, purpose)])


def enqueue_sends(deliveries: list[tuple[Delivery, str]]) -> None:
    """Enqueue the deliveries' sends, in batches per lane, once the surrounding transaction commits."""
    from .tasks import SEND_BATCH_SIZE, send_deliveries_task

    by_queue = {}
    for delivery, purpose in deliveries:
        by_queue.setdefault(send_queue(purpose, delivery.channel), []).append(delivery.pk)
    if not by_queue:
        return

    def publish():
        for queue, ids in by_queue.items():
            for start in range(0, len(ids), SEND_BATCH_SIZE):
                send_deliveries_task.apply_async((ids[start:start + SEND_BATCH_SIZE], queue), queue=queue)

    transaction.on_commit(publish)


def _finish(message, status, reason, action, *, channel="", data=None):
    entry = _set_status(message, status, reason, action, timezone.now(), channel=channel, data=data)
    message.save(update_fields=MESSAGE_ROUTING_FIELDS)
    entry.save()


@transaction.atomic
def fall_back(delivery: Delivery, reason: str, *, now=None) -> Delivery | None:
    """Hand an undelivered message to the next channel of its plan, or mark it failed.

    Safe to call more than once for the same delivery (a permanent error and then the
    provider's "failed" webhook): only the first call while this delivery is the message's
    current step moves it on.
    """
    message = Message.objects.select_for_update().select_related("contact", "template_version").get(pk=delivery.message_id)
    step = delivery.content.get("plan_step", message.current_step)
    if step != message.current_step or message.status in TERMINAL_MESSAGE_STATUSES:
        return None
    if message.status == MessageStatus.ENGAGED:
        return None
    Delivery.objects.filter(pk=delivery.pk).update(fallback_due_at=None)
    has_next = step + 1 < len(message.channel_plan)
    if not has_next or not message.template_version.allow_fallback:
        why = "fallback_forbidden_by_template" if has_next else reason
        _finish(message, MessageStatus.FAILED, why, "message.failed", channel=delivery.channel,
                data={"delivery": delivery.pk, "reason": reason})
        return None
    message.current_step = step + 1
    message.status = MessageStatus.PENDING
    message.save(update_fields=["current_step", "status", "updated_at"])
    audit.record("message.fell_back", contact=message.contact, obj=message, channel=delivery.channel, reason=reason,
                 data={"from_channel": delivery.channel, "to_channel": message.channel_plan[step + 1]["channel"],
                       "delivery": delivery.pk})
    return dispatch(message, now=now)


def fallback_condition_met(delivery: Delivery) -> bool:
    """Whether a delivery reached what its plan entry waits for before its fallback timer ends."""
    plan = delivery.message.channel_plan
    step = delivery.content.get("plan_step", 0)
    wanted = plan[step].get("fallback_unless", "delivered") if step < len(plan) else "delivered"
    if wanted == "engaged":
        return delivery.status in ENGAGED_DELIVERY_STATUSES
    return delivery.status in ENGAGED_DELIVERY_STATUSES | {DeliveryStatus.DELIVERED}
