"""Where a campaign's status may go, and the one place it changes.

Campaign.status changes through move_campaign() and nowhere else: a conditional UPDATE from the
statuses the table allows, so two workers (a tick finishing the campaign, a person cancelling
it) can never both move it; the one that lost is told so. Each move is audited in the same
transaction. An edit is written only while the campaign is a draft (save_draft), by the same
kind of conditional UPDATE, so it never writes over a campaign a start has just moved on.
"""
from django.db import transaction
from django.utils import timezone

from omni import audit

from .models import Campaign, CampaignStatus

S = CampaignStatus

# to: the statuses it may be reached from
TRANSITIONS = {
    # A start asked for: its audience snapshot is taken in the background (campaign_start_requests).
    S.STARTING: {S.DRAFT},
    # From starting: the background start done. From draft: start_campaign called directly (the
    # benchmark, a shell). From paused: a campaign paused before its first send time, resumed
    # while it is still ahead.
    S.SCHEDULED: {S.DRAFT, S.STARTING, S.PAUSED},
    S.SENDING: {S.DRAFT, S.STARTING, S.SCHEDULED, S.PAUSED},
    S.PAUSED: {S.SCHEDULED, S.SENDING},
    S.SENT: {S.SENDING},
    # From sent only while some of its messages are not queued yet (deferred by quiet hours):
    # campaign_sending.cancel_campaign refuses a sent campaign with nothing left to stop. From
    # starting: before its snapshot (the start then finds it no longer starting and does nothing),
    # or, since the cancellation locks the campaign first, once a snapshot under way has committed.
    S.CANCELLED: {S.DRAFT, S.STARTING, S.SCHEDULED, S.SENDING, S.PAUSED, S.SENT},
    # A background start refused, failed, or given up on: nothing was sent.
    S.DRAFT: {S.STARTING},
}

# Claiming and sending go on in these; pausing stops it.
CLAIMING_STATUSES = (S.SCHEDULED, S.SENDING)
FINAL_STATUSES = (S.SENT, S.CANCELLED)


class CampaignMoveRefused(ValueError):
    """The campaign is not in a status the move starts from; the message says so in words."""


class CampaignLocked(ValueError):
    """The campaign left its draft, so an edit was not written; the message says so in words."""


def sources(to: str) -> set:
    return TRANSITIONS[to]


def can_move(campaign: Campaign, to: str) -> bool:
    return campaign.status in TRANSITIONS[to]


@transaction.atomic
def move_campaign(campaign: Campaign, to: str, *, action: str, actor=None, now=None, fields: dict | None = None,
                  data: dict | None = None, refuse: bool = True) -> bool:
    """Move `campaign` to `to`, writing `fields` with it, and audit `action` (e.g.
    "campaign.paused"). False (or CampaignMoveRefused with refuse=True) when its status in the
    database does not allow the move; the instance is updated when it moved."""
    now = now or timezone.now()
    values = {"status": to, **(fields or {})}
    moved = Campaign.objects.filter(pk=campaign.pk, status__in=TRANSITIONS[to]).update(updated_at=now, **values)
    if not moved:
        if refuse:
            current = Campaign.objects.filter(pk=campaign.pk).values_list("status", flat=True).first()
            raise CampaignMoveRefused(
                f"{campaign} is {CampaignStatus(current).label.lower() if current else 'gone'}; "
                f"it cannot become {CampaignStatus(to).label.lower()}.")
        return False
    previous = campaign.status
    for name, value in values.items():
        setattr(campaign, name, value)
    audit.record(action, actor=actor, obj=campaign, data={"from": previous, "to": to, **(data or {})})
    return True


def locked_words(campaign: Campaign, status: str) -> str:
    return (f"{campaign} is {CampaignStatus(status).label.lower()}: only a draft campaign can be edited, so nothing "
            f"was saved.")


def save_draft(campaign: Campaign, fields: list[str], *, now=None) -> None:
    """Write the edited `fields` of `campaign` (what its form edits), only while it is a draft in
    the database: one conditional UPDATE, so a start that committed since the form was read is
    never written over. Raises CampaignLocked, writing nothing, when it left its draft. The row
    stays locked until the caller's transaction ends (its variants are saved under it)."""
    now = now or timezone.now()
    attnames = [Campaign._meta.get_field(name).attname for name in fields]
    values = {attname: getattr(campaign, attname) for attname in attnames}
    if not Campaign.objects.filter(pk=campaign.pk, status=CampaignStatus.DRAFT).update(updated_at=now, **values):
        current = Campaign.objects.filter(pk=campaign.pk).values_list("status", flat=True).first()
        raise CampaignLocked(locked_words(campaign, current) if current else f"{campaign} is gone.")
    campaign.updated_at = now
