"""A campaign's start, run in the background: the snapshot of a large audience outlasts a web
request (100,000 contacts take seconds; several hundred thousand would pass the web server's
timeout, and a killed request rolls its snapshot back every time).

- request_start (the Start button) makes the quick checks of a start, then moves the campaign
  from draft to STARTING, audited campaign.start_requested, and hands the start to a worker once
  that commits.
- run_requested_start (campaigns.tasks.start_campaign_task) starts a campaign still STARTING
  (campaign_start.start_campaign, which checks everything again under the campaign's lock). A
  refusal (its audience grew past the approval threshold meanwhile, a template was unpublished)
  or an unexpected failure takes it back to draft, audited, with the problems kept on the
  campaign for its page; the snapshot's transaction has rolled back, so nothing was sent. A
  second copy of the task finds it no longer STARTING and does nothing.
- retry_stalled_starts (beat, every minute): a worker lost mid-start, or a broker that refused
  the task, leaves the campaign STARTING. Its start is handed to the workers again once
  OMNI_CAMPAIGN_START_RETRY_AFTER has passed since the last time, up to
  OMNI_CAMPAIGN_START_ATTEMPTS times in all; then it goes back to draft, saying why.
"""
import logging
from collections import Counter

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from omni import audit
from omni.lib import approval
from omni.lib.tasks import publish, task_named

from .campaign_approval import start_refusal
from .campaign_audience import audience_count
from .campaign_start import CampaignNotReady, start_campaign, start_problems
from .campaign_state import move_campaign
from .models import Campaign, CampaignStatus

log = logging.getLogger(__name__)

START_TASK = "campaigns.tasks.start_campaign_task"
# The start is heavy database work, not a send: it waits with the other background jobs, never
# in front of a campaign's sends (the "campaigns" queue).
START_QUEUE = "default"
# What run_requested_start and retry_stalled_start did.
STARTED, REFUSED, FAILED, NOT_STARTING = "started", "refused", "failed", "not_starting"
RETRIED, GAVE_UP = "retried", "gave_up"
# Stalled starts one sweep looks at; more than this stalled at once would be an outage, and the
# next minute's sweep takes the rest.
RETRIES_PER_RUN = 50


def request_start(campaign: Campaign, *, actor, now=None) -> None:
    """Ask for the campaign's start: the checks of start_problems (the approval's with the
    audience counted now), raising CampaignNotReady as start_campaign does (a refusal for want of
    approval audited campaign.approval_refused), then DRAFT -> STARTING, audited
    campaign.start_requested with who asked, earlier start problems cleared, and the start
    handed to a worker once this commits. A campaign already starting is refused, saying so."""
    now = now or timezone.now()
    count = audience_count(campaign, now) if campaign.status == CampaignStatus.DRAFT else 0
    problems = start_problems(campaign, now=now, count=count)
    if problems:
        refused = start_refusal(campaign, count) if campaign.status == CampaignStatus.DRAFT else None
        if refused is not None:
            approval.audit_refusal(campaign, refused, actor=actor, step="start")
        raise CampaignNotReady(problems)
    with transaction.atomic():
        moved = move_campaign(
            campaign, CampaignStatus.STARTING, action="campaign.start_requested", actor=actor, now=now, refuse=False,
            fields={"start_requested_at": now, "start_requested_by": _user(actor), "start_enqueued_at": now,
                    "start_attempts": 1, "start_refused_problems": []},
            data={"audience": count})
        if not moved:
            # Another request (a second click) or another change got there first.
            campaign.refresh_from_db(fields=["status"])
            raise CampaignNotReady(start_problems(campaign, now=now, count=count)
                                   or ["It changed while the start was asked for: try again."])
        transaction.on_commit(lambda: hand_off_start(campaign.pk), robust=True)


def hand_off_start(campaign_id: int) -> bool:
    """Publish the start to the workers. Never raises for a broker error: the campaign stays
    STARTING and retry_stalled_starts hands it off again."""
    return publish(task_named(START_TASK), (campaign_id,), queue=START_QUEUE,
                   if_lost=f"Could not hand the start of campaign {campaign_id} to the workers; it is handed off "
                           f"again after {settings.OMNI_CAMPAIGN_START_RETRY_AFTER}")


def run_requested_start(campaign_id: int, *, now=None) -> str:
    """Start the campaign if it is STARTING (STARTED); back to draft with its problems kept when
    the start is refused (REFUSED) or fails (FAILED, logged); NOT_STARTING when it is not (a copy
    of the task did it, or it is gone)."""
    campaign = Campaign.objects.filter(pk=campaign_id, status=CampaignStatus.STARTING).select_related(
        "start_requested_by").first()
    if campaign is None:
        return NOT_STARTING
    try:
        start_campaign(campaign, actor=campaign.start_requested_by, now=now)
    except CampaignNotReady as refused:
        moved = back_to_draft(campaign, refused.problems, action="campaign.start_refused", now=now)
        return REFUSED if moved else NOT_STARTING
    except Exception as exc:
        # The snapshot's transaction rolled back: no recipient was written, nothing was sent.
        log.exception("The start of campaign %s failed; it goes back to draft", campaign_id)
        back_to_draft(campaign, [f"The start failed ({exc.__class__.__name__}); nothing was sent. Start it again."],
                      action="campaign.start_failed", now=now, data={"error": exc.__class__.__name__})
        return FAILED
    return STARTED


def retry_stalled_starts(*, now=None) -> dict[str, int]:
    """Hand off again the starts not done OMNI_CAMPAIGN_START_RETRY_AFTER after they were last
    handed off, oldest first (retry_stalled_start); returns how many ended each way."""
    now = now or timezone.now()
    stalled = (Campaign.objects.filter(status=CampaignStatus.STARTING,
                                       start_enqueued_at__lte=now - settings.OMNI_CAMPAIGN_START_RETRY_AFTER)
               .order_by("start_enqueued_at").values_list("pk", flat=True)[:RETRIES_PER_RUN])
    return dict(Counter(retry_stalled_start(campaign_id, now=now) for campaign_id in list(stalled)))


def retry_stalled_start(campaign_id: int, *, now) -> str:
    """RETRIED: handed off again, its attempts counted (audited campaign.start_retried); GAVE_UP:
    after OMNI_CAMPAIGN_START_ATTEMPTS, back to draft saying why (campaign.start_abandoned);
    NOT_STARTING: started meanwhile, or being started right now."""
    with transaction.atomic():
        # skip_locked: a start taking its snapshot right now holds the row; it has not stalled.
        campaign = (Campaign.objects.select_for_update(skip_locked=True, no_key=True, of=("self",))
                    .filter(pk=campaign_id, status=CampaignStatus.STARTING,
                            start_enqueued_at__lte=now - settings.OMNI_CAMPAIGN_START_RETRY_AFTER).first())
        if campaign is None:
            return NOT_STARTING
        if campaign.start_attempts >= settings.OMNI_CAMPAIGN_START_ATTEMPTS:
            back_to_draft(campaign, [
                f"The start did not finish after {campaign.start_attempts} attempts (a worker may have stopped while "
                f"taking the audience snapshot); nothing was sent. Start it again."],
                action="campaign.start_abandoned", now=now, data={"attempts": campaign.start_attempts})
            return GAVE_UP
        Campaign.objects.filter(pk=campaign.pk).update(start_enqueued_at=now, start_attempts=F("start_attempts") + 1)
        audit.record("campaign.start_retried", obj=campaign, data={"attempt": campaign.start_attempts + 1})
        transaction.on_commit(lambda: hand_off_start(campaign.pk), robust=True)
    return RETRIED


def back_to_draft(campaign: Campaign, problems: list[str], *, action: str, now=None, data=None) -> bool:
    """STARTING -> DRAFT, audited `action` with the problems, which the campaign keeps for its
    page until its next start request. False when it was no longer starting."""
    return move_campaign(campaign, CampaignStatus.DRAFT, action=action, now=now, refuse=False,
                         fields={"start_refused_problems": list(problems)},
                         data={"problems": list(problems), **(data or {})})


def _user(actor):
    return actor if getattr(actor, "is_authenticated", False) else None
