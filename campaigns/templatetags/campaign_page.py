"""The campaign page's sections above the form: what stops it starting (and why its last start
did not happen), its approval, its progress (while it starts: since when, asked by whom; once
started: what the start did) and the buttons this user may press.
{% load campaign_page %}{% campaign_page original %}"""
from django import template
from django.urls import reverse
from unfold.widgets import BUTTON_CLASSES

from omni.lib.approval import when, who

from campaigns import campaign_approval, campaign_progress, campaign_sending, campaign_start
from campaigns.campaign_state import can_move
from campaigns.models import Campaign, CampaignStatus

register = template.Library()

# How often the open page asks for fresh progress figures.
REFRESH_SECONDS = 3

SECONDARY_BUTTON_CLASSES = ("border border-base-200 bg-white cursor-pointer font-medium px-3 py-2 rounded-default "
                            "shadow-xs text-sm whitespace-nowrap dark:bg-base-900 dark:border-base-700")


@register.inclusion_tag("campaigns/campaign/page_top.html", takes_context=True)
def campaign_page(context, campaign: Campaign):
    user = context["request"].user
    may_change = user.has_perm("campaigns.change_campaign")
    # The audience, counted once for both the approval and what stops the start.
    count = campaign_start.audience_count(campaign)
    state = campaign_approval.approval_state(campaign, count)
    digest = campaign_approval.campaign_digest(campaign)
    draft = campaign.status == CampaignStatus.DRAFT
    starting = campaign.status == CampaignStatus.STARTING
    problems = campaign_start.start_problems(campaign, count=count) if draft else []
    refused = campaign.start_refused_problems if draft else []
    return {
        "campaign": campaign,
        "csrf_token": context.get("csrf_token"),
        "problems": problems,
        "draft": draft,
        "starting": starting,
        "start_requested": _start_requested_words(campaign),
        "start_refused": bool(refused),
        # What still stops it is listed once, under what stops it now.
        "start_refused_problems": [problem for problem in refused if problem not in problems],
        "start_summary": _start_summary_words(campaign),
        "approval": state,
        "approved_version": digest[:12] if state.status == "approved" else "",
        "digest": digest,
        "may_request": may_change and draft and state.status in ("needed", "reset", "stale"),
        "may_approve": (user.has_perm(Campaign.APPROVE_PERMISSION) and state.status == "requested"
                        and state.requested_by_id != user.pk),
        "approver_is_requester": (state.status == "requested" and state.requested_by_id == user.pk
                                  and user.has_perm(Campaign.APPROVE_PERMISSION)),
        "request_url": _url("approval_request", campaign),
        "approve_url": _url("approval_approve", campaign),
        "progress": campaign_progress.campaign_progress(campaign),
        "progress_url": _url("progress", campaign),
        "refresh_seconds": REFRESH_SECONDS,
        "buttons": buttons(campaign) if may_change else [],
        "button_classes": " ".join(BUTTON_CLASSES),
        "secondary_classes": SECONDARY_BUTTON_CLASSES,
    }


def buttons(campaign: Campaign) -> list[dict]:
    """The buttons a marketer may press on the campaign as it stands: each POSTs to its view, but
    cancel and follow-up, which first open a page (a confirmation, a small form)."""
    status = campaign.status
    shown = []
    if status == CampaignStatus.DRAFT:
        shown.append(("start", "Start", True))
    if can_move(campaign, CampaignStatus.PAUSED):
        shown.append(("pause", "Pause", False))
    if status == CampaignStatus.PAUSED:
        shown.append(("resume", "Resume", True))
    shown.append(("test_send", "Send a test to the test contacts", False))
    shown.append(("clone", "Clone", False))
    if campaign.started_at is not None:
        shown.append(("follow_up", "Follow up…", False))
    if campaign_sending.cancellable(campaign):
        shown.append(("cancel", "Cancel…", False))
    return [{"name": name, "label": label, "primary": primary, "url": _url(name, campaign),
             "opens_page": name in ("cancel", "follow_up")} for name, label, primary in shown]


def _start_requested_words(campaign: Campaign) -> str:
    """E.g. "asked for by mara at 5 Dec 2026, 14:02"."""
    if not campaign.start_requested_at:
        return ""
    return f"asked for by {who(campaign.start_requested_by)} at {when(campaign.start_requested_at)}"


def _start_summary_words(campaign: Campaign) -> str:
    """What its start did, once started: "Started at ...: 120 in the audience; 100 to send; ..."."""
    if not (campaign.started_at and campaign.start_summary):
        return ""
    by = f" (asked for by {who(campaign.start_requested_by)})" if campaign.start_requested_at else ""
    return (f"Started at {when(campaign.started_at)}{by}: "
            + campaign_start.StartSummary.from_data(campaign.start_summary).words())


def _url(name: str, campaign: Campaign) -> str:
    return reverse(f"admin:campaigns_campaign_{name}", args=[campaign.pk])
