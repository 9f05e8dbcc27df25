"""Messages the tick moves on: deferred ones whose time has come, fallback timers, lost sends.

A message of a paused campaign, journey or enrollment is not moved on: its deferral or fallback timer waits,
and runs at the first tick after the resume (routing re-checks the gate then, its expiry too).
"""
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q

from channels import routing
from channels.models import FAILED_DELIVERY_STATUSES, Delivery, Message, MessageStatus
from channels.publishing import republish_lost_deliveries
from omni.lib.claims import claim, excluding
from omni.lib.quarantine import quarantine_failures, run_isolating_failures

from .models import CampaignRecipient, CampaignStatus, EnrollmentState, JourneyStatus, JourneyStepVisit
from .tick_report import TickReport

MESSAGE_BATCH = 500


def _on_hold(message_id: str):
    """Whether the message (`message_id`: the path to its id) is its paused campaign's, journey's
    or enrollment's (one contact's, paused by staff or by their conversation): part of the claim's
    own query, so a paused campaign's messages are never claimed at all."""
    return (Exists(CampaignRecipient.objects.filter(message_id=OuterRef(message_id),
                                                    campaign__status=CampaignStatus.PAUSED))
            | Exists(JourneyStepVisit.objects.filter(
                Q(journey__status=JourneyStatus.PAUSED) | Q(enrollment__state=EnrollmentState.PAUSED),
                message_id=OuterRef(message_id))))


def redispatch_deferred_batch(now, report: TickReport, handled: set | None = None) -> int:
    """Route again the deferred messages whose time has come; one that fails is quarantined."""
    with transaction.atomic():
        due = claim(
            excluding(Message.objects.filter(status=MessageStatus.DEFERRED, defer_until__lte=now,
                                              quarantined_at__isnull=True), handled).exclude(_on_hold("pk"))
            .select_related("contact", "template_version").order_by("defer_until", "id"),
            MESSAGE_BATCH,
        )
        failures = run_isolating_failures(due, lambda rows: routing.dispatch_many(rows, now=now))
        report.quarantined += quarantine_failures(Message, failures, now, stage="deferred messages")
        report.redispatched += len(due) - len(failures)
        if handled is not None:
            handled.update(m.pk for m in due if m.status == MessageStatus.DEFERRED
                           and (m.defer_until is None or m.defer_until <= now))
        return len(due)


def fire_fallback_timers_batch(now, report: TickReport, handled: set | None = None) -> int:
    """Move on to the next channel where a delivery failed (its webhook marked the fallback due)
    or did not succeed within its window. A timer that fails is quarantined with its delivery."""
    with transaction.atomic():
        due = excluding(Delivery.objects.filter(fallback_due_at__lte=now, quarantined_at__isnull=True), handled) \
            .exclude(_on_hold("message_id"))
        if connection.features.has_select_for_update_skip_locked:
            # Claimed by their messages' rows: the message is locked before its deliveries, as
            # everywhere (channels/state.py), and one held by a webhook waits for the next tick.
            due = due.select_for_update(skip_locked=True, of=("message",))
        due = list(due.select_related("message").order_by("fallback_due_at")[:MESSAGE_BATCH])
        if not due:
            return 0
        failures = run_isolating_failures(due, lambda rows: _fire_fallback_timers(rows, now, report))
        report.quarantined += quarantine_failures(Delivery, failures, now, stage="fallback timers")
        return len(due)


def _fire_fallback_timers(due, now, report: TickReport) -> None:
    Delivery.objects.filter(pk__in=[d.pk for d in due]).update(fallback_due_at=None)
    fired = 0
    for delivery in due:
        if delivery.status in FAILED_DELIVERY_STATUSES:
            reason = delivery.status
        elif routing.fallback_condition_met(delivery):
            continue
        else:
            reason = "fallback_timeout"
        routing.fall_back(delivery, reason, now=now)
        fired += 1
    report.fallbacks += fired


def requeue_stale_deliveries(now) -> int:
    """Publish again the sends lost on the way (a broker error, a worker killed mid-batch)."""
    return republish_lost_deliveries(now)
