"""Sending one delivery, never twice: claim it, re-check it, render it, call the provider, record.

Rendering happens here, in the channel worker, not when the tick routes the message: the
content is made from the contact as they are at send time, and kept on the delivery exactly
as handed to the provider.

The claim is a conditional update (queued -> sending) that only one worker can win. What
happens after it ends in one of three ways, and the log line says which:
- before the provider call nothing has left Omni. A template that cannot be rendered fails the
  delivery (the message falls back where its plan allows); any other error there (the
  database, a bug) puts the delivery back in the queue for its next attempt.
- the provider refuses: a permanent refusal fails the delivery and falls back; a transient one
  (5xx, throttling, unreachable) puts it back in the queue until its next attempt is due, on a
  backoff schedule that outlasts an outage of settings.OMNI_RETRY_OUTAGE_SECONDS. The next
  attempt waits in the database (Delivery.next_attempt_at), not in the broker: the tick's
  republish sweep publishes it when it is due (channels/publishing.py).
- the provider call's outcome is unknown (no answer, an unexpected error): the delivery is
  uncertain and never sent again. So is one whose worker died after the claim:
  reconcile_stuck_deliveries() marks it; settle_uncertain_deliveries() asks the provider, by its
  id or, where the provider can be asked without it, by number, time and text; what nobody can
  settle is listed for a person after settings.OMNI_UNRESOLVED_AFTER_SECONDS.
"""
import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from compliance import decisions, gate
from compliance.actions import record_opt_out, suppress
from compliance.links import unsubscribe_url
from compliance.models import ConsentSource, SuppressionReason
from omni import audit
from omni.choices import Channel
from templates.rendering import UNSUBSCRIBE_URL, RenderError, contact_variables, email_parts, render_variant
from templates.sms_segments import count_segments

from . import state
from .base import CannotTell, DeliveryError, DeliveryOutcomeUnknown, Provider, SendResult
from .provider_reports import adopt_orphan_events
from .routing import conversation_holds, dispatch, fall_back
from .unsubscribe_links import with_unsubscribe_headers
from .models import FAILED_DELIVERY_STATUSES, Delivery, DeliveryStatus, Message, MessageStatus
from .registry import provider_named

log = logging.getLogger(__name__)

# Every provider call times out well within this, so a delivery still "sending" after it
# lost its worker mid-call.
STUCK_SENDING_AFTER = timedelta(minutes=10)
RECONCILE_BATCH = 500
# Uncertain deliveries asked about per run of settle_uncertain_deliveries_task: one provider
# call each, so a run stays within a minute even when the provider is slow.
SETTLE_BATCH = 100


@dataclass(frozen=True)
class Refusal:
    """Why a delivery must not go out now, and the gate's verdict when the gate refused it."""

    reason: str
    ruling: decisions.Ruling | None = None


def retry_schedule(delivery_id: int) -> list[float]:
    """When each attempt of a delivery falls due while its provider keeps answering with
    transient errors, in seconds after the first: 0, then each retry, the last being the first
    at or after settings.OMNI_RETRY_OUTAGE_SECONDS. Waits double from OMNI_RETRY_FIRST_SECONDS
    up to OMNI_RETRY_MAX_SECONDS, each between half and all of that ("equal jitter", drawn from
    the delivery's id and the attempt's number so the schedule is the same in every worker):
    deliveries that failed together do not all come back at once."""
    first = max(float(settings.OMNI_RETRY_FIRST_SECONDS), 0.001)
    longest = max(float(settings.OMNI_RETRY_MAX_SECONDS), first)
    window = float(settings.OMNI_RETRY_OUTAGE_SECONDS)
    offsets = [0.0]
    while offsets[-1] < window:
        retry = len(offsets)
        wait = min(first * 2 ** min(retry - 1, 32), longest)
        offsets.append(offsets[-1] + wait * (0.5 + random.Random(f"{delivery_id}:{retry}").random() / 2))
    return offsets


def send_delivery(delivery_id: int) -> Delivery | None:
    """Send one queued delivery through its provider, at most once.

    Returns the delivery, or None when it is not queued any more (another worker got there
    first, or it was settled) or its next attempt is not due yet. Errors are settled here (see
    the module's docstring); only an unexpected error from the provider call is raised again,
    after the delivery was marked uncertain.
    """
    delivery = (Delivery.objects.select_related("message__template_version", "contact")
                .filter(pk=delivery_id).first())
    if delivery is None or delivery.status != DeliveryStatus.QUEUED:
        log.info("Delivery %s is not queued; nothing to send", delivery_id)
        return None
    now = timezone.now()
    if delivery.next_attempt_at and delivery.next_attempt_at > now:
        log.info("Delivery %s: its next attempt is not due until %s", delivery_id, delivery.next_attempt_at)
        return None
    try:
        provider = provider_named(delivery.provider)
    except ImproperlyConfigured as exc:
        # The provider it was routed to is gone (settings changed, provider removed): retrying
        # cannot help, and leaving it queued would only have the sweep republish it forever.
        provider, unknown_provider = None, exc
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    if not state.move_delivery(delivery, DeliveryStatus.SENDING, where=due, attempts=F("attempts") + 1,
                               claimed_at=now, next_attempt_at=None):
        log.info("Delivery %s: another worker got there first", delivery_id)
        return None
    delivery.attempts += 1
    if provider is None:
        _record_failure(delivery, DeliveryError(str(unknown_provider), code="unknown_provider", permanent=True))
        return delivery

    try:
        payload = _prepare(delivery, provider, now)
    except Exception as exc:
        # Nothing left Omni: whatever failed here (the database, a bug) may work on another try.
        log.exception("Delivery %s: %s before the provider call; nothing was sent, it goes back in the queue",
                      delivery_id, type(exc).__name__)
        _retry_after_infrastructure_error(delivery, exc)
        return delivery
    if payload is None:
        return delivery
    try:
        result = provider.deliver(payload)
    except DeliveryError as error:
        if error.permanent:
            _record_failure(delivery, error)
        else:
            _retry_later(delivery, error)
        return delivery
    except DeliveryOutcomeUnknown as exc:
        log.warning("Delivery %s: the provider call's outcome is unknown (%s); marked uncertain", delivery_id, exc)
        _mark_uncertain(delivery, str(exc))
        return delivery
    except Exception as exc:
        # A bug or an unexpected library error during the call: whether the provider accepted
        # the message is unknown, so it must not be retried blindly.
        log.error("Delivery %s: %s during the provider call; marked uncertain", delivery_id, type(exc).__name__)
        _mark_uncertain(delivery, f"{type(exc).__name__}: {exc}")
        raise
    _record_sent(delivery, provider, result)
    return delivery


def _prepare(delivery: Delivery, provider: Provider, now) -> dict | None:
    """Re-check, render and build the provider's request of a claimed delivery. Returns the
    request, or None when the delivery was settled here (refused, not renderable, refused by
    the provider's own checks)."""
    refusal = send_time_refusal(delivery, now)
    if refusal:
        _cancel(delivery, refusal, now)
        return None
    try:
        render(delivery)
    except RenderError as error:
        log.warning("Delivery %s could not be rendered (%s); it fails without being sent", delivery.pk, error)
        _record_render_failure(delivery, error)
        return None
    try:
        return provider.prepare(delivery)
    except DeliveryError as error:
        if error.permanent:
            _record_failure(delivery, error)
        else:
            _retry_later(delivery, error)
        return None


def send_time_refusal(delivery: Delivery, now) -> Refusal | None:
    """Why this delivery must not go out now, or None to send it. Writes nothing: the caller
    keeps the gate's verdict (Refusal.ruling) only if the refusal takes effect.

    Re-checked when the worker runs, which may be long after the message was queued (retries,
    a backlog): the message may have been cancelled, expired, engaged with or moved on to
    another channel, and the gate re-reads consent, suppression, pauses, quiet hours, caps and
    the conversations holding marketing.
    """
    message = delivery.message
    if message.status in state.FINAL_MESSAGE_STATUSES:
        return Refusal(f"message_{message.status}")
    if delivery.plan_step != message.plan_step:
        # A fallback timer moved the message to its next channel while this delivery waited
        # (a backlog, retries): sending it now would deliver the same content twice.
        return Refusal("message_moved_to_next_channel")
    # The message's own ledger row (written when it was queued) never counts against it. A
    # conversation opened since it was queued holds marketing now (no query for other purposes).
    held = conversation_holds([message], now).get(message.contact_id, ())
    verdict = gate.check(delivery.contact, delivery.channel, message.purpose, delivery.to_address,
                         provider=delivery.provider, expires_at=message.expires_at,
                         exemption=message.exemption, message_id=message.pk, conversations=held, now=now,
                         channel_facts={gate.TEST_MESSAGE_FACT: True} if message.is_test else None)
    if verdict.allowed:
        return None
    # The refusal overrides the decision made at dispatch, so it is kept as a decision too.
    return Refusal(verdict.reason, decisions.Ruling(verdict, message.pk, delivery.contact_id, delivery.plan_step,
                                                    delivery.provider, delivery.pk))


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
        variables = {**message.variables, **contact_variables(contact)}
        if delivery.channel == Channel.EMAIL:
            variables[UNSUBSCRIBE_URL] = unsubscribe_url(delivery.contact_id, delivery.pk, delivery.message_id)
        rendered = render_variant(variant, variables)
    else:
        rendered = variant
    if delivery.channel == Channel.EMAIL:
        rendered = email_parts(rendered)
    fields = {
        "subject": rendered.get("subject", ""),
        "text_body": rendered.get("text_body", ""),
        "html_body": rendered.get("html_body", ""),
        "content": {**delivery.content, "title": rendered.get("title", ""),
                    "preheader": rendered.get("preheader", ""),
                    "provider_template_id": rendered.get("provider_template_id", ""),
                    "locale": rendered.get("locale", "")},
    }
    if rendered.get("content_variables"):
        # What fills the approved content template's {{1}}, {{2}}... (Twilio's ContentVariables).
        fields["content"]["content_variables"] = rendered["content_variables"]
    fields["content"] = with_unsubscribe_headers(delivery, fields["content"])
    Delivery.objects.filter(pk=delivery.pk).update(**fields)
    for name, value in fields.items():
        setattr(delivery, name, value)


def _record_render_failure(delivery: Delivery, error: RenderError) -> None:
    """Fail a delivery whose content cannot be rendered (a missing variable, an error the
    template raised). The message falls back to its plan's next channel where the template
    allows it: that channel has its own variant, rendered on its own (it fails the same way if
    it has the same fault). Otherwise the message fails, the render error as its reason."""
    why = f"render_error:{error.field}"
    with transaction.atomic():
        state.lock_message(delivery.message_id)
        if not state.move_delivery(delivery, DeliveryStatus.FAILED, error_code="render_error",
                                   error_message=str(error), error_permanent=True, failed_at=timezone.now(),
                                   fallback_due_at=None):
            return
        message = delivery.message
        if delivery.plan_step + 1 < len(message.channel_plan) and message.allows_fallback:
            audit.record("delivery.failed", contact_id=delivery.contact_id, obj=delivery, channel=delivery.channel,
                         reason="render_error", data={"provider": delivery.provider, "attempt": delivery.attempts,
                                                      "permanent": True, "field": error.field},
                         personal={"error": str(error)})
            fall_back(delivery, why)
            return
        if state.move_message(delivery.message_id, MessageStatus.FAILED, at_plan_step=delivery.plan_step,
                              status_reason=why):
            audit.record("message.render_failed", contact_id=delivery.contact_id, obj=delivery.message,
                         channel=delivery.channel, reason=why, data={"field": error.field, "delivery": delivery.pk},
                         personal={"error": str(error)})


def _record_sent(delivery: Delivery, provider: Provider, result: SendResult) -> None:
    now = timezone.now()
    segments = result.segments
    if segments is None and delivery.channel == Channel.SMS:
        # As the GSM-7/UCS-2 split SMS providers bill by counts them, where the provider does
        # not say (the sandbox, Amazon SNS).
        segments = count_segments(delivery.text_body).segments
    fields = {
        "provider_message_id": result.provider_message_id,
        "segments": segments,
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
        state.move_message(delivery.message_id, MessageStatus.SENT, at_plan_step=delivery.plan_step, now=now)
        audit.record(
            "delivery.sent", contact=delivery.contact, obj=delivery, channel=delivery.channel,
            actor_label=f"provider:{provider.name}",
            data={"provider": provider.name, "provider_message_id": result.provider_message_id,
                  "attempt": delivery.attempts, "segments": segments},
            personal={"response": result.raw},
        )
        delivery.refresh_from_db()
        adopt_orphan_events(delivery)
        # robust: the send is recorded; a failing side effect (a broker hiccup) is only logged.
        transaction.on_commit(lambda: provider.after_send(delivery), robust=True)


def _retry_later(delivery: Delivery, error: DeliveryError) -> None:
    """Put a delivery back in the queue after a transient error, its next attempt due on the
    backoff schedule; fail it (not permanently) once the schedule is spent or its next attempt
    would come after the message expires."""
    schedule = retry_schedule(delivery.pk)
    attempt = delivery.attempts
    now = timezone.now()
    next_attempt_at = None
    if attempt < len(schedule):
        next_attempt_at = now + timedelta(seconds=schedule[attempt] - schedule[attempt - 1])
    expires_at = delivery.message.expires_at
    if next_attempt_at is None or (expires_at is not None and next_attempt_at > expires_at):
        log.warning("Delivery %s: %s on attempt %d; no retry left before %s, it fails", delivery.pk, error, attempt,
                    "the message expires" if next_attempt_at else "the end of the retry window")
        _record_failure(delivery, error, retries_exhausted=True)
        return
    with transaction.atomic():
        # published_at is cleared so the tick publishes it as soon as it is due (publishing.py).
        requeued = state.move_delivery(delivery, DeliveryStatus.QUEUED, error_code=error.code,
                                       error_message=error.message, error_permanent=False,
                                       next_attempt_at=next_attempt_at, published_at=None)
        if requeued:
            audit.record(
                "delivery.retrying", contact=delivery.contact, obj=delivery, channel=delivery.channel,
                reason=error.code or "transient_error",
                data={"attempt": attempt, "max_attempts": len(schedule), "next_attempt_at": next_attempt_at.isoformat()},
                personal={"error": error.message},
            )
    if requeued:
        log.warning("Delivery %s: %s on attempt %d of %d; back in the queue, next attempt at %s", delivery.pk, error,
                    attempt, len(schedule), next_attempt_at.isoformat())


def _retry_after_infrastructure_error(delivery: Delivery, exc: Exception) -> None:
    if not connection.in_atomic_block:
        # A connection the error broke is replaced, so the delivery can still be put back.
        connection.close_if_unusable_or_obsolete()
    try:
        _retry_later(delivery, DeliveryError(f"{type(exc).__name__}: {exc}", code="infrastructure_error"))
    except Exception:
        log.exception("Delivery %s could not be put back in the queue; it stays sending", delivery.pk)


def _record_failure(delivery: Delivery, error: DeliveryError, *, retries_exhausted: bool = False) -> None:
    """Fail a delivery and fall back to the message's next channel: a permanent refusal, or
    transient errors until no retry was left (never recorded as permanent)."""
    with transaction.atomic():
        state.lock_message(delivery.message_id)  # fall_back below moves it
        failed = state.move_delivery(delivery, DeliveryStatus.FAILED, error_code=error.code,
                                     error_message=error.message, error_permanent=error.permanent,
                                     failed_at=timezone.now(), next_attempt_at=None)
        if not failed:
            return
        why = "retries_exhausted" if retries_exhausted else (error.code or "permanent_error")
        audit.record(
            "delivery.failed", contact=delivery.contact, obj=delivery, channel=delivery.channel, reason=why,
            data={"provider": delivery.provider, "attempt": delivery.attempts, "permanent": error.permanent,
                  "error_code": error.code},
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
        if retries_exhausted:
            fall_back(delivery, "retries_exhausted")
        else:
            fall_back(delivery, f"send_failed:{error.code}" if error.code else "send_failed")


def _cancel(delivery: Delivery, refusal: Refusal, now) -> None:
    """Cancel a delivery refused at send time. The gate's verdict, when it refused, is kept as a
    decision in the same transaction as the cancellation, and only when the cancellation took
    effect (a provider's report may have moved the delivery on since the claim)."""
    reason = refusal.reason
    with transaction.atomic():
        state.lock_message(delivery.message_id)
        cancelled = state.move_delivery(delivery, DeliveryStatus.CANCELLED, error_message=reason,
                                        fallback_due_at=None)
        if not cancelled:
            log.info("Delivery %s was refused at send time (%s) but had moved on meanwhile", delivery.pk, reason)
            return
        log.info("Delivery %s refused at send time: %s", delivery.pk, reason)
        if refusal.ruling is not None:
            decisions.record([refusal.ruling], now)
        audit.record("delivery.cancelled", contact=delivery.contact, obj=delivery, channel=delivery.channel,
                     reason=reason[:100], data={"attempt": delivery.attempts})
        message = Message.objects.select_for_update().get(pk=delivery.message_id)
        step = delivery.plan_step
        # Another device of a push may still carry the message: routing again would send it twice.
        others_may_deliver = (Delivery.objects.filter(message_id=message.pk, plan_step=step).exclude(pk=delivery.pk)
                              .exclude(status__in=FAILED_DELIVERY_STATUSES | {DeliveryStatus.CANCELLED}).exists())
        if message.status == MessageStatus.QUEUED and message.plan_step == step and not others_may_deliver:
            # Routing decides afresh from this plan step (next channel, defer or suppress) and
            # writes its own audit entry.
            dispatch(message, now=now)


def _mark_uncertain(delivery: Delivery, why: str, reason: str = "provider_outcome_unknown") -> int:
    with transaction.atomic():
        marked = state.move_delivery(delivery, DeliveryStatus.UNCERTAIN, error_message=why)
        if marked:
            audit.record("delivery.uncertain", contact_id=delivery.contact_id, obj=delivery, channel=delivery.channel,
                         reason=reason, data={"claimed_at": delivery.claimed_at.isoformat()},
                         personal={"error": why})
    return marked


def settle_uncertain_deliveries(limit: int = SETTLE_BATCH, now=None) -> int:
    """Ask the providers about uncertain deliveries, oldest first, and settle those they answer
    for: by the provider's id when it was recorded, else (the worker died during the call) by
    what the provider can find without it. Then list for a person the uncertain deliveries
    nothing settled in settings.OMNI_UNRESOLVED_AFTER_SECONDS. Returns how many were settled."""
    now = now or timezone.now()
    uncertain = list(
        Delivery.objects.filter(status=DeliveryStatus.UNCERTAIN, unresolved_at__isnull=True)
        .select_related("message", "contact").order_by("claimed_at", "pk")[:limit]
    )
    settled = 0
    for delivery in uncertain:
        try:
            provider = provider_named(delivery.provider)
            if delivery.provider_message_id:
                status, found_id = provider.fetch_status(delivery), ""
            else:
                found = provider.find_send(delivery)
                status, found_id = (found.status, found.provider_message_id) if found else (None, "")
        except CannotTell as why:
            log.debug("Uncertain delivery %s: %s", delivery.pk, why)
            continue
        except (ImproperlyConfigured, DeliveryError) as exc:
            log.warning("Could not ask %s about uncertain delivery %s: %s", delivery.provider, delivery.pk, exc)
            continue
        if not status:
            continue
        try:
            settled += settle_delivery(delivery, status, actor_label=f"provider:{delivery.provider}",
                                       reason="provider_check", provider_message_id=found_id)
        except IntegrityError:
            # Another delivery recorded the same provider id meanwhile: it is that one's message.
            log.warning("Uncertain delivery %s: %s's message %s belongs to another delivery", delivery.pk,
                        delivery.provider, found_id)
    flag_unresolved_deliveries(now)
    return settled


def flag_unresolved_deliveries(now=None) -> int:
    """List for a person the deliveries uncertain for longer than
    settings.OMNI_UNRESOLVED_AFTER_SECONDS: each gets unresolved_at (the deliveries admin's
    "needs a person" filter) and one delivery.unresolved audit entry. They are never resent;
    a late webhook or an operator still settles them. Returns how many were listed."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.OMNI_UNRESOLVED_AFTER_SECONDS)
    with transaction.atomic():
        flagged = state._update_returning_ids(
            Delivery.objects.filter(status=DeliveryStatus.UNCERTAIN, unresolved_at__isnull=True,
                                    claimed_at__lt=cutoff),
            {"unresolved_at": now},
        )
        if not flagged:
            return 0
        rows = Delivery.objects.filter(pk__in=flagged).values_list("pk", "contact_id", "channel", "provider",
                                                                   "claimed_at")
        audit.record_many([
            audit.build("delivery.unresolved", contact_id=contact_id, object_ref=(Delivery._meta.label_lower, str(pk)),
                        channel=channel, reason="not_settled",
                        data={"provider": provider, "claimed_at": claimed_at.isoformat()})
            for pk, contact_id, channel, provider, claimed_at in rows
        ])
    log.warning("%d uncertain deliveries could not be settled and are listed for a person", len(flagged))
    return len(flagged)


def settle_delivery(delivery: Delivery, to: str, *, reason: str, actor=None, actor_label: str = "",
                    provider_message_id: str = "") -> bool:
    """Settle an uncertain delivery at status `to`: sent (or further) moves its message on as a
    send would; a failure falls back to the message's next channel. `provider_message_id`, when
    the provider found the message without it, is recorded. Audited; False when the delivery is
    no longer uncertain (a late callback settled it first)."""
    now = timezone.now()
    failed = to in FAILED_DELIVERY_STATUSES
    fields = {"failed_at": now} if failed else {"sent_at": delivery.sent_at or now}
    if provider_message_id:
        fields["provider_message_id"] = provider_message_id
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
            state.move_message(delivery.message_id, message_status, at_plan_step=delivery.plan_step, now=now)
        if provider_message_id:
            adopt_orphan_events(delivery)
    return True
