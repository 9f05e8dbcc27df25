"""A campaign's approval: omni/lib/approval.py's pattern (as campaigns/journey_approval.py for
journeys), given a campaign's digest (what its start would send: template, audience, purpose,
plan, schedule, holdout, test settings, goal, variants and the template versions they would pin) and
its rule (approval_needed: marketing to more than OMNI_CAMPAIGN_APPROVAL_MIN_AUDIENCE contacts).

A marketer requests approval; a marketing approver (campaigns.approve_campaign, not the requester)
approves it as they saw it; the start checks it again (campaigns/campaign_start.py). An edit calls
reset_if_changed(), which resets a request or approval the edit made stale. Each step, and each
refusal, is audited.
"""
from django.conf import settings
from django.db import connection, transaction

from omni.choices import Purpose
from omni.lib import approval
from templates.actions import latest_versions

from .campaign_audience import audience_count
from .models import Campaign


def digest_content(campaign: Campaign) -> dict:
    """What an approver approves, as plain data (three queries: variants, segment, latest versions)."""
    variants = list(campaign.variants.order_by("position", "pk").values_list("name", "template_id", "weight"))
    template_ids = {campaign.template_id, *(template for _, template, _ in variants)}
    latest = latest_versions(template_ids)
    definition = campaign.segment.definition if campaign.segment_id else None

    def version_of(template_id):
        version = latest.get(template_id)
        return version.pk if version else None

    return {
        "template": campaign.template_id, "template_version": version_of(campaign.template_id),
        "segment": campaign.segment_id, "segment_definition": definition,
        "follow_up_of": campaign.follow_up_of_id, "follow_up_when": campaign.follow_up_when,
        "follow_up_after": campaign.follow_up_after,
        "purpose": campaign.purpose, "urgency": campaign.urgency, "channel_plan": campaign.channel_plan,
        "intent_key": campaign.intent_key, "scheduled_at": campaign.scheduled_at,
        "send_in_local_time": campaign.send_in_local_time, "local_time_passed": campaign.local_time_passed,
        "throttle_per_minute": campaign.throttle_per_minute, "expires_after": campaign.expires_after,
        "holdout_percent": campaign.holdout_percent, "test_percent": campaign.test_percent,
        "test_period": campaign.test_period, "test_metric": campaign.test_metric,
        "test_fallback": campaign.test_fallback,
        # The goal decides a goal-metric test's winner and whom a "not converted" follow-up reaches.
        "goal_event": campaign.goal_event, "goal_window": campaign.goal_window,
        "variants": [{"name": name, "template": template, "weight": weight, "version": version_of(template)}
                     for name, template, weight in variants],
    }


def campaign_digest(campaign: Campaign) -> str:
    """The digest of what an approver approves: the campaign's content, audience and variants."""
    return approval.digest_of(digest_content(campaign))


def approval_needed(campaign: Campaign, count: int | None = None) -> bool:
    """Marketing to an audience larger than settings.OMNI_CAMPAIGN_APPROVAL_MIN_AUDIENCE
    (`count`: the audience when the caller has counted it)."""
    if campaign.purpose != Purpose.MARKETING:
        return False
    count = audience_count(campaign) if count is None else count
    return count > settings.OMNI_CAMPAIGN_APPROVAL_MIN_AUDIENCE


def start_refusal(campaign: Campaign, count: int | None = None) -> approval.ApprovalRefused | None:
    """Why the campaign may not start as it is for want of approval; None when it may."""
    if not approval_needed(campaign, count):
        return None
    return approval.refusal(campaign, digest=campaign_digest(campaign))


def request_approval(campaign: Campaign, *, actor) -> None:
    """`actor` asks a marketing approver to approve the campaign as it is. Audited; a refusal too."""
    _step(campaign, actor, "request", lambda locked, digest: approval.request(locked, actor=actor, digest=digest))


def approve(campaign: Campaign, *, actor, seen_digest: str | None = None) -> None:
    """`actor` approves the requested campaign as they saw it (`seen_digest`, from the page).
    Refused, with the reason and audited, to someone without campaigns.approve_campaign, to the
    requester, without a request, or when the campaign changed."""
    _step(campaign, actor, "approve", lambda locked, digest: approval.approve(
        locked, actor=actor, digest=digest, seen_digest=seen_digest))


def reset_if_changed(campaign: Campaign, *, actor) -> bool:
    """After an edit: a request or approval whose digest no longer matches is reset, audited
    campaign.approval_reset. Returns whether one was."""
    with transaction.atomic():
        locked = _locked(campaign)
        was_reset = bool(locked.approval_requested_at) and approval.reset(
            locked, actor=actor, digest=campaign_digest(locked))
    _copy_approval(locked, campaign)
    return was_reset


def approval_state(campaign: Campaign, count: int | None = None) -> approval.ApprovalState:
    """omni.lib.approval.ApprovalState for the page (`count`: the audience when the caller has
    counted it)."""
    count = audience_count(campaign) if count is None else count
    if campaign.purpose != Purpose.MARKETING:
        because = "the campaign sends no marketing messages"
    else:
        because = (f"its audience ({count}) is not larger than {settings.OMNI_CAMPAIGN_APPROVAL_MIN_AUDIENCE} "
                   f"contacts (OMNI_CAMPAIGN_APPROVAL_MIN_AUDIENCE)")
    return approval.state(campaign, digest=campaign_digest(campaign), needed=approval_needed(campaign, count),
                          not_needed_because=because)


def _step(campaign: Campaign, actor, step: str, move) -> None:
    try:
        with transaction.atomic():
            locked = _locked(campaign)
            move(locked, campaign_digest(locked))
    except approval.ApprovalRefused as refused:
        approval.audit_refusal(campaign, refused, actor=actor, step=step)
        raise
    _copy_approval(locked, campaign)


def _locked(campaign: Campaign) -> Campaign:
    # NO KEY: recipients inserted by a start elsewhere hold KEY SHARE on the campaign row.
    of = {"of": ("self",)} if connection.features.has_select_for_update_of else {}
    return Campaign.objects.select_for_update(no_key=True, **of).select_related(
        "segment", "approval_requested_by", "approved_by").get(pk=campaign.pk)


def _copy_approval(source: Campaign, target: Campaign) -> None:
    for name in approval.APPROVAL_FIELDS:
        field = Campaign._meta.get_field(name)
        setattr(target, field.attname, getattr(source, field.attname))
