"""The path of one message: create it, route it, gate it, render it, hand it to a provider.

dispatch() walks the message's channel plan from its current step: a channel the contact
cannot be reached on is skipped; the compliance gate decides for the first reachable one;
an allowed message is rendered and becomes a queued Delivery whose send task is enqueued
after commit. fall_back() moves an undelivered message to the next channel of its plan.
Every decision writes an audit entry.
"""
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from compliance import audit, gate
from omni.choices import send_queue
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
    if not channel_plan:
        raise ValueError("A message needs a channel plan with at least one channel.")
    if idempotency_key:
        existing = Message.objects.filter(idempotency_key=idempotency_key).first()
        if existing:
            return existing, False
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
            message.save()
    except IntegrityError:
        if not idempotency_key:
            raise
        return Message.objects.get(idempotency_key=idempotency_key), False
    audit.record(
        "message.created", contact=contact, obj=message, actor=actor, actor_label=actor_label,
        reason=source, data={"source_ref": source_ref, "intent_key": intent_key, "purpose": message.purpose,
                             "template_version": template_version.pk, "channel_plan": message.channel_plan},
    )
    return message, True


def dispatch(message: Message, *, now=None) -> Delivery | None:
    """Route, gate and queue the message from its current plan step. Returns the new Delivery.

    Runs inside the caller's transaction; the send task is enqueued only after it commits.
    """
    now = now or timezone.now()
    if message.status in TERMINAL_MESSAGE_STATUSES:
        return None
    contact = message.contact
    version = message.template_version
    plan = message.channel_plan
    skipped = []
    for step in range(message.current_step, len(plan)):
        channel = plan[step]["channel"]
        variant = version.variant_for(channel, contact.locale)
        if variant is None:
            skipped.append({"channel": channel, "reason": "no_template_variant"})
            continue
        address = contact.address_for(channel)
        provider = provider_name(channel)
        verdict = gate.check(contact, channel, message.purpose, address, provider=provider,
                             expires_at=message.expires_at, now=now)
        if verdict.outcome == gate.SUPPRESS and verdict.reason in CHANNEL_INELIGIBLE_REASONS:
            skipped.append({"channel": channel, "reason": verdict.reason})
            continue
        if skipped:
            audit.record("message.channels_skipped", contact=contact, obj=message, data={"skipped": skipped})
            skipped = []
        if verdict.outcome == gate.SUPPRESS:
            status = MessageStatus.EXPIRED if verdict.reason == "expired" else MessageStatus.SUPPRESSED
            _finish(message, status, verdict.reason, "message.suppressed", channel=channel, data=verdict.as_data())
            return None
        if verdict.outcome == gate.DEFER:
            message.status = MessageStatus.DEFERRED
            message.status_reason = verdict.reason
            message.defer_until = verdict.until
            message.current_step = step
            message.save(update_fields=["status", "status_reason", "defer_until", "current_step", "updated_at"])
            audit.record("message.deferred", contact=contact, obj=message, channel=channel, reason=verdict.reason,
                         data=verdict.as_data())
            return None
        return _queue_delivery(message, step, channel, variant, address, provider, verdict, now)

    if skipped:
        audit.record("message.channels_skipped", contact=contact, obj=message, data={"skipped": skipped})
    _finish(message, MessageStatus.SUPPRESSED if not message.deliveries.exists() else MessageStatus.FAILED,
            "no_eligible_channel", "message.undeliverable", data={"skipped": skipped})
    return None


def _queue_delivery(message, step, channel, variant, address, provider, verdict, now) -> Delivery | None:
    contact = message.contact
    variables = {**message.variables, **contact_variables(contact)}
    try:
        rendered = render_variant(variant, variables)
    except RenderError as exc:
        _finish(message, MessageStatus.FAILED, f"render_error:{exc.field}", "message.render_failed",
                channel=channel, data={"error": str(exc), "field": exc.field})
        return None

    plan_entry = message.channel_plan[step]
    fallback_due_at = None
    has_next = step + 1 < len(message.channel_plan)
    if has_next and message.template_version.allow_fallback and plan_entry.get("fallback_after_seconds"):
        fallback_due_at = now + timedelta(seconds=int(plan_entry["fallback_after_seconds"]))

    delivery = Delivery.objects.create(
        message=message,
        contact=contact,
        channel=channel,
        provider=provider,
        to_address=address,
        subject=rendered.get("subject", ""),
        text_body=rendered.get("text_body", ""),
        html_body=rendered.get("html_body", ""),
        content={
            "plan_step": step,
            "title": rendered.get("title", ""),
            "preheader": rendered.get("preheader", ""),
            "provider_template_id": rendered.get("provider_template_id", ""),
            "locale": rendered.get("locale", ""),
        },
        queued_at=now,
        fallback_due_at=fallback_due_at,
    )
    message.status = MessageStatus.QUEUED
    message.status_reason = verdict.reason
    message.current_step = step
    message.defer_until = None
    message.save(update_fields=["status", "status_reason", "current_step", "defer_until", "updated_at"])
    audit.record("message.allowed", contact=contact, obj=message, channel=channel, reason=verdict.reason,
                 data={**verdict.as_data(), "delivery": delivery.pk, "provider": provider, "plan_step": step})
    enqueue_send(delivery, message.purpose)
    return delivery


def enqueue_send(delivery: Delivery, purpose: str) -> None:
    """Enqueue the delivery's send task once the surrounding transaction commits."""
    from .tasks import send_delivery_task

    queue = send_queue(purpose, delivery.channel)
    delivery_id = delivery.pk
    transaction.on_commit(lambda: send_delivery_task.apply_async((delivery_id,), queue=queue))


def _finish(message, status, reason, action, *, channel="", data=None):
    message.status = status
    message.status_reason = reason
    message.defer_until = None
    message.save(update_fields=["status", "status_reason", "defer_until", "updated_at"])
    audit.record(action, contact=message.contact, obj=message, channel=channel, reason=reason, data=data or {})


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


def cancel_message(message: Message, *, reason: str, actor=None, actor_label="") -> bool:
    """Cancel a message that has not been handed to a provider yet."""
    updated = Message.objects.filter(
        pk=message.pk, status__in=[MessageStatus.PENDING, MessageStatus.DEFERRED]
    ).update(status=MessageStatus.CANCELLED, status_reason=reason, defer_until=None)
    if updated:
        audit.record("message.cancelled", contact=message.contact, obj=message, actor=actor, actor_label=actor_label,
                     reason=reason)
    return bool(updated)
