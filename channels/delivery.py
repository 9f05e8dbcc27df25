"""Sending one delivery, never twice: claim it, re-check it, render it, call the provider, record.

Rendering happens here, in the channel worker, not when the tick routes the message: the
content is made from the contact as they are at send time, and kept on the delivery exactly
as handed to the provider. A template that cannot be rendered (a missing variable) fails the
message without sending anything.

The claim is a conditional update (queued -> sending) that only one worker can win. The
provider call happens outside any transaction. If the worker dies after the call but before
recording, the row stays "sending"; reconcile_stuck_deliveries() marks it "uncertain" (never
sent again) and the provider's webhook settles it later.
"""
import logging
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from compliance import decisions, gate
from compliance.actions import record_opt_out, suppress
from compliance.models import ConsentSource, SuppressionReason
from omni import audit
from templates.rendering import RenderError, contact_variables, render_variant

from . import state
from .routing import dispatch, fall_back
from .base import DeliveryError, DeliveryOutcomeUnknown, Provider, SendResult
from .provider_reports import adopt_orphan_events
from .models import FAILED_DELIVERY_STATUSES, Delivery, DeliveryStatus, Message, MessageStatus
from .registry import provider_named

log = logging.getLogger(__name__)

# The first try plus send_delivery_task's five retries; the last transient error fails it.
MAX_SEND_ATTEMPTS = 6
# Every provider call times out well within this, so a delivery still "sending" after it
# lost its worker mid-call.
STUCK_SENDING_AFTER = timedelta(minutes=10)
RECONCILE_BATCH = 500
# Uncertain deliveries asked about per run of settle_uncertain_deliveries_task: one provider
# call each, so a run stays within a minute even when the provider is slow.
SETTLE_BATCH = 100


def send_delivery(delivery_id: int) -> Delivery | None:
    """Send one queued delivery through its provider, at most once.

    Returns the delivery, or None when it is not queued any more (another worker got there
    first, or it was settled). A permanent error fails the delivery and falls back to the
    message's next channel; a transient one puts the delivery back in the queue and is
    raised again, so the Celery task retries it.
    """
    delivery = (Delivery.objects.select_related("message__template_version", "contact")
                .filter(pk=delivery_id).first())
    if delivery is None or delivery.status != DeliveryStatus.QUEUED:
        log.info("Delivery %s is not queued; nothing to send", delivery_id)
        return None
    try:
        provider = provider_named(delivery.provider)
    except ImproperlyConfigured as exc:
        # The provider it was routed to is gone (settings changed, provider removed): retrying
        # cannot help, and leaving it queued would only have the sweep republish it forever.
        provider, unknown_provider = None, exc
    now = timezone.now()
    if not state.move_delivery(delivery, DeliveryStatus.SENDING, attempts=F("attempts") + 1, claimed_at=now):
        log.info("Delivery %s: another worker got there first", delivery_id)
        return None
    delivery.attempts += 1
    if provider is None:
        _record_failure(delivery, DeliveryError(str(unknown_provider), code="unknown_provider", permanent=True))
        return delivery

    refusal = send_time_refusal(delivery, now)
    if refusal:
        _cancel(delivery, refusal, now)
        return delivery
    try:
        render(delivery)
    except RenderError as error:
        _record_render_failure(delivery, error)
        return delivery
    try:
        result = provider.send(delivery)
    except DeliveryError as error:
        if error.permanent or delivery.attempts >= MAX_SEND_ATTEMPTS:
            _record_failure(delivery, error)
        elif _put_back_in_queue(delivery, error):
            raise
        return delivery
    except DeliveryOutcomeUnknown as exc:
        _mark_uncertain(delivery, str(exc))
        return delivery
    except Exception as exc:
        # A bug or an unexpected library error: whether the provider accepted the message is
        # unknown, so it must not be retried blindly.
        _mark_uncertain(delivery, f"{type(exc).__name__}: {exc}")
        raise
    _record_sent(delivery, provider, result)
    return delivery


def send_time_refusal(delivery: Delivery, now) -> str:
    """Why this delivery must not go out now, or "" to send it.

    Re-checked when the worker runs, which may be long after the message was queued (retries,
    a backlog): the message may have been cancelled, expired, engaged with or moved on to
    another channel, and the gate re-reads consent, suppression and pauses.
    """
    message = delivery.message
    if message.status in state.FINAL_MESSAGE_STATUSES:
        return f"message_{message.status}"
    if delivery.plan_step != message.current_step:
        # A fallback timer moved the message to its next channel while this delivery waited
        # (a backlog, retries): sending it now would deliver the same content twice.
        return "message_moved_to_next_channel"
    verdict = gate.check(delivery.contact, delivery.channel, message.purpose, delivery.to_address,
                         provider=delivery.provider, expires_at=message.expires_at,
                         exemption=message.exemption, now=now)
    if verdict.allowed:
        return ""
    # The refusal overrides the decision made at dispatch, so it is kept as a decision too.
    decisions.record([decisions.Ruling(verdict, message.pk, delivery.contact_id, delivery.plan_step,
                                       delivery.provider, delivery.pk)], now)
    return verdict.reason


def reconcile_stuck_deliveries(older_than: timedelta = STUCK_SENDING_AFTER, now=None) -> int:
    """Mark deliveries "sending" for longer than `older_than` as uncertain. Returns how many.

    Their worker died during or right after the provider call, so the message may or may not
    have gone out. They are never sent again; a webhook with the provider's id (or Omni's
    delivery id echoed back) settles them.
    """
    now = now or timezone.now()
    stuck = list(
        Delivery.objects.filter(status=DeliveryStatus.SENDING, claimed_at__lt=now - older_than)
        .only("pk", "contact_id", "channel", "claimed_at").order_by("claimed_at")[:RECONCILE_BATCH]
    )
    marked = 0
    for delivery in stuck:
        marked += _mark_uncertain(delivery, "The worker stopped during the provider call", reason="worker_lost")
    if marked:
        log.warning("Marked %d deliveries stuck in sending as uncertain", marked)
    return marked


def render(delivery: Delivery) -> None:
    """Render the delivery's content for its contact and keep it on the row (RenderError if a
    part cannot be rendered). A message with its own content is sent as written."""
    message, contact = delivery.message, delivery.contact
    variant = message.variant_for(delivery.channel, contact.locale)
    if variant is None:
        raise RenderError(f"Nothing is written for {delivery.channel} in this message.", field="channel")
    if message.is_templated:
        rendered = render_variant(variant, {**message.variables, **contact_variables(contact)})
    else:
        rendered = variant
    fields = {
        "subject": rendered.get("subject", ""),
        "text_body": rendered.get("text_body", ""),
        "html_body": rendered.get("html_body", ""),
        "content": {**delivery.content, "title": rendered.get("title", ""),
                    "preheader": rendered.get("preheader", ""),
                    "provider_template_id": rendered.get("provider_template_id", ""),
                    "locale": rendered.get("locale", "")},
    }
    Delivery.objects.filter(pk=delivery.pk).update(**fields)
    for name, value in fields.items():
        setattr(delivery, name, value)


def _record_render_failure(delivery: Delivery, error: RenderError) -> None:
    """Fail a delivery whose content cannot be rendered, and its message with it: the same
    template would fail on any channel the plan holds next, so it does not fall back."""
    why = f"render_error:{error.field}"
    with transaction.atomic():
        state.lock_message(delivery.message_id)
        if not state.move_delivery(delivery, DeliveryStatus.FAILED, error_code="render_error",
                                   error_message=str(error), error_permanent=True, failed_at=timezone.now(),
                                   fallback_due_at=None):
            return
        if state.move_message(delivery.message_id, MessageStatus.FAILED, at_step=delivery.plan_step,
                              status_reason=why):
            audit.record("message.render_failed", contact_id=delivery.contact_id, obj=delivery.message,
                         channel=delivery.channel, reason=why, data={"field": error.field, "delivery": delivery.pk},
                         personal={"error": str(error)})


def _record_sent(delivery: Delivery, provider: Provider, result: SendResult) -> None:
    now = timezone.now()
    fields = {
        "provider_message_id": result.provider_message_id,
        "segments": result.segments,
        "cost": result.cost,
        "currency": result.currency,
        "error_code": "",
        "error_message": "",
    }
    with transaction.atomic():
        state.lock_message(delivery.message_id)
        if not state.move_delivery(delivery, result.status, sent_at=now, **fields):
            # The provider's webhook arrived first and moved the delivery further: keep that.
            Delivery.objects.filter(pk=delivery.pk).update(**fields)
        state.move_message(delivery.message_id, MessageStatus.SENT, at_step=delivery.plan_step, now=now)
        audit.record(
            "delivery.sent", contact=delivery.contact, obj=delivery, channel=delivery.channel,
            actor_label=f"provider:{provider.name}",
            data={"provider": provider.name, "provider_message_id": result.provider_message_id,
                  "attempt": delivery.attempts, "segments": result.segments},
            personal={"response": result.raw},
        )
        delivery.refresh_from_db()
        adopt_orphan_events(delivery)
        # robust: the send is recorded; a failing side effect (a broker hiccup) is only logged.
        transaction.on_commit(lambda: provider.after_send(delivery), robust=True)


def _put_back_in_queue(delivery: Delivery, error: DeliveryError) -> bool:
    """Queue a delivery again after a transient error. False if something else settled it."""
    with transaction.atomic():
        requeued = state.move_delivery(delivery, DeliveryStatus.QUEUED, error_code=error.code,
                                       error_message=error.message, error_permanent=False)
        if requeued:
            audit.record(
                "delivery.retrying", contact=delivery.contact, obj=delivery, channel=delivery.channel,
                reason=error.code or "transient_error",
                data={"attempt": delivery.attempts, "max_attempts": MAX_SEND_ATTEMPTS}, personal={"error": error.message},
            )
    return bool(requeued)


def _record_failure(delivery: Delivery, error: DeliveryError) -> None:
    with transaction.atomic():
        state.lock_message(delivery.message_id)  # fall_back below moves it
        failed = state.move_delivery(delivery, DeliveryStatus.FAILED, error_code=error.code,
                                     error_message=error.message, error_permanent=error.permanent,
                                     failed_at=timezone.now())
        if not failed:
            return
        why = error.code or ("permanent_error" if error.permanent else "retries_exhausted")
        audit.record(
            "delivery.failed", contact=delivery.contact, obj=delivery, channel=delivery.channel, reason=why,
            data={"provider": delivery.provider, "attempt": delivery.attempts, "permanent": error.permanent},
            personal={"error": error.message},
        )
        if error.suppression_reason and delivery.to_address:
            suppress(delivery.to_address, channel=delivery.channel, reason=error.suppression_reason,
                     contact=delivery.contact, actor_label=f"provider:{delivery.provider}",
                     detail=f"{delivery.provider} refused delivery {delivery.pk}: {error}")
        if error.suppression_reason == SuppressionReason.STOP:
            # The carrier says the contact replied STOP (Twilio 21610): that is consent revoked too.
            record_opt_out(delivery.contact, [delivery.channel], ConsentSource.CARRIER,
                           actor_label=f"provider:{delivery.provider}",
                           evidence={"provider": delivery.provider, "delivery": delivery.pk, "error_code": error.code})
        fall_back(delivery, f"send_failed:{error.code}" if error.code else "send_failed")


def _cancel(delivery: Delivery, reason: str, now) -> None:
    with transaction.atomic():
        state.lock_message(delivery.message_id)
        cancelled = state.move_delivery(delivery, DeliveryStatus.CANCELLED, error_message=reason,
                                        fallback_due_at=None)
        if not cancelled:
            return
        audit.record("delivery.cancelled", contact=delivery.contact, obj=delivery, channel=delivery.channel,
                     reason=reason[:100], data={"attempt": delivery.attempts})
        message = Message.objects.select_for_update().get(pk=delivery.message_id)
        step = delivery.plan_step
        # Another device of a push may still carry the message: routing again would send it twice.
        others_may_deliver = (Delivery.objects.filter(message_id=message.pk, plan_step=step).exclude(pk=delivery.pk)
                              .exclude(status__in=FAILED_DELIVERY_STATUSES | {DeliveryStatus.CANCELLED}).exists())
        if message.status == MessageStatus.QUEUED and message.current_step == step and not others_may_deliver:
            # Routing decides afresh from this plan step (next channel, defer or suppress) and
            # writes its own audit entry.
            dispatch(message, now=now)


def _mark_uncertain(delivery: Delivery, why: str, reason: str = "provider_outcome_unknown") -> int:
    with transaction.atomic():
        marked = state.move_delivery(delivery, DeliveryStatus.UNCERTAIN, error_message=why)
        if marked:
            audit.record("delivery.uncertain", contact_id=delivery.contact_id, obj=delivery, channel=delivery.channel,
                         reason=reason, data={"error": why, "claimed_at": delivery.claimed_at.isoformat()})
    return marked


def settle_uncertain_deliveries(limit: int = SETTLE_BATCH) -> int:
    """Ask the providers about uncertain deliveries they can be asked about (their id is known),
    oldest first, and settle those they answer for. Returns how many were settled."""
    uncertain = list(
        Delivery.objects.filter(status=DeliveryStatus.UNCERTAIN).exclude(provider_message_id="")
        .select_related("message", "contact").order_by("claimed_at", "pk")[:limit]
    )
    settled = 0
    for delivery in uncertain:
        try:
            status = provider_named(delivery.provider).fetch_status(delivery)
        except (ImproperlyConfigured, DeliveryError) as exc:
            log.warning("Could not ask %s about uncertain delivery %s: %s", delivery.provider, delivery.pk, exc)
            continue
        if status:
            settled += settle_delivery(delivery, status, actor_label=f"provider:{delivery.provider}",
                                       reason="provider_check")
    return settled


def settle_delivery(delivery: Delivery, to: str, *, reason: str, actor=None, actor_label: str = "") -> bool:
    """Settle an uncertain delivery at status `to`: sent (or further) moves its message on as a
    send would; a failure falls back to the message's next channel. Audited; False when the
    delivery is no longer uncertain (a late callback settled it first)."""
    now = timezone.now()
    failed = to in FAILED_DELIVERY_STATUSES
    fields = {"failed_at": now} if failed else {"sent_at": delivery.sent_at or now}
    with transaction.atomic():
        state.lock_message(delivery.message_id)
        if not state.move_deliveries([delivery], to, only_from={DeliveryStatus.UNCERTAIN}, **fields):
            return False
        audit.record("delivery.settled", contact_id=delivery.contact_id, obj=delivery, channel=delivery.channel,
                     actor=actor, actor_label=actor_label, reason=reason,
                     data={"status": to, "provider": delivery.provider})
        if failed:
            fall_back(delivery, f"uncertain_settled_{to}")
        else:
            message_status = MessageStatus.DELIVERED if to == DeliveryStatus.DELIVERED else MessageStatus.SENT
            state.move_message(delivery.message_id, message_status, at_step=delivery.plan_step, now=now)
    return True
