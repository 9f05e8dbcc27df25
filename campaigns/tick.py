"""The beat tick: one pass over all due orchestration work, stage by stage.

Every piece of due work is claimed from the database in batches, inside a transaction (see
omni/lib/claims.py), so any number of workers can run the tick and no two ever handle the same
row. A batch commits as a whole: a worker that dies midway leaves its rows unclaimed for the
next tick, and the idempotency keys of the messages it would have created make the retry safe.

The stages, in order: inbound replies marked on the deliveries they answer
(channels/provider_reports.py apply_replies_batch), events in (campaigns/enrolling.py), segments
entered and left (campaigns/segment_triggers.py), dates that came (campaigns/date_triggers.py), A/B
tests whose period ended (campaigns/ab_test.py), due campaign recipients sent and campaigns ended
(campaigns/campaign_sending.py), due enrollments
(campaigns/advancing.py, whose steps campaigns/steps.py runs), deferred messages and fallback
timers (campaigns/message_timers.py), inbound messages support automation answers
(channels/support_automation.py), then conversations waiting for an agent
(channels/assignment.py) and lost sends. Each stage has a budget per tick, so a
backlog in one (a burst of events) never starves the others: every stage runs in every tick,
and a stage cut short goes on in the next. A stage that fails (an error no quarantine caught:
a deadlock, a lost connection) is logged and named in the report, and the stages after it run.
"""
import logging
import time
from functools import partial

from django.conf import settings
from django.utils import timezone

from channels import assignment, support_automation
from channels.provider_reports import REPLY_BATCH, apply_replies_batch

from . import (ab_test, advancing, campaign_sending, date_triggers, enrolling, message_timers,
               segment_triggers)
from .tick_report import TickReport

logger = logging.getLogger(__name__)


def tick(now=None, *, hand_off_to=None, hand_off_recipients_to=None) -> TickReport:
    """One pass over all due work, each stage within its budget.

    With `hand_off_to(ids)`, due enrollments are claimed and their ids handed over in batches
    (the beat's tick hands them to run_enrollments_task) rather than run here; with
    `hand_off_recipients_to(ids)`, due campaign recipients likewise (to send_campaign_batch_task)."""
    now = now or timezone.now()
    report = TickReport()
    if hand_off_to is None:
        enrollments = (advancing.advance_enrollments_batch, advancing.ENROLLMENT_BATCH)
    else:
        enrollments = (partial(advancing.hand_off_enrollments_batch, hand_off_to), advancing.ENROLLMENT_BATCH)
    stages = [
        # Before the fallback timers: a reply stops its message's fallback in the same tick.
        ("replies", apply_replies_batch, REPLY_BATCH),
        ("events", enrolling.process_events_batch, enrolling.EVENT_BATCH),
        ("segments", segment_triggers.refresh_segments_batch, segment_triggers.SEGMENT_BATCH),
        # Before the enrollments: a contact whose date came runs their first step in the same tick.
        ("date triggers", date_triggers.fire_date_triggers_batch, date_triggers.DATE_JOURNEY_BATCH),
        # A campaign whose test ended gets its rest their send times before the fan-out claims.
        ("campaign winners", ab_test.choose_winners_batch, ab_test.WINNER_BATCH),
        # A campaign's recipients first: a blast is due at its hour, a journey's next step can wait a tick.
        ("campaign recipients", campaign_sending.RecipientClaims(hand_off_recipients_to),
         campaign_sending.RECIPIENT_BATCH),
        ("campaign ends", campaign_sending.finish_campaigns_batch, campaign_sending.ENDS_BATCH),
        ("enrollments", *enrollments),
        ("deferred messages", message_timers.redispatch_deferred_batch, message_timers.MESSAGE_BATCH),
        ("fallback timers", message_timers.fire_fallback_timers_batch, message_timers.MESSAGE_BATCH),
        ("support automation", support_automation.handle_inbound_batch, support_automation.INBOUND_BATCH),
    ]
    for name, batch, size in stages:
        drained = _guarded(name, report, run_stage, batch, size, now, report)
        if drained is False:
            report.backlogged.append(name)
    report.assigned += _guarded("assignment", report, assignment.assign_waiting, now) or 0
    report.requeued = _guarded("lost sends", report, message_timers.requeue_stale_deliveries, now) or 0
    return report


def _guarded(name: str, report: TickReport, run, *args):
    """run(*args), or None when it raised: one stage's failure must not stop the automation of
    every stage after it (fallbacks, deferred sends, support) until someone fixes it."""
    try:
        return run(*args)
    except Exception:
        logger.exception("The tick's %s stage failed; the stages after it ran", name)
        report.failed.append(name)
        return None


def run_stage(batch, size: int, now, report: TickReport, budget_seconds: float | None = None) -> bool:
    """Run one stage's batches until a batch comes back short or the stage's budget is spent
    (OMNI_TICK_STAGE_SECONDS; the first batch always runs). True when the stage is drained.

    `batch(now, report, handled)` adds to `handled` the rows it ran that are still due (a loop
    without a wait, a wait of zero seconds) and never claims those again: otherwise the same
    rows would be claimed batch after batch and the tick would never return. They are looked at
    again on the next tick.
    """
    budget = settings.OMNI_TICK_STAGE_SECONDS if budget_seconds is None else budget_seconds
    deadline = time.monotonic() + budget
    handled = set()
    while batch(now, report, handled) == size:
        if time.monotonic() >= deadline:
            return False
    return True
