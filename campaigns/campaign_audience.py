"""Who a campaign is for and on which channels: its audience (a segment, or for a follow-up the
earlier campaign's recipients who did not open, click or convert) and its plan's channels.

Read by the start (campaigns/campaign_start.py) and the approval (campaign_approval.py), so
both count and digest the same audience and plan.
"""
from django.db.models import Exists, OuterRef
from django.utils import timezone

from channels.models import DefaultChannelPlan, DeliveryEvent, EventType, MessageStatus
from contacts import segments
from contacts.models import Contact, ContactEvent

from .models import CampaignRecipient, CampaignStatus, FollowUpWhen, RecipientOutcome

# The delivery events that prove the message was opened (a click or a read proves it too) or clicked.
OPENED_EVENTS = (EventType.OPENED, EventType.READ, EventType.CLICKED)
CLICKED_EVENTS = (EventType.CLICKED,)
# A recipient was sent the earlier campaign's message once it went out: not one suppressed,
# cancelled, expired, dropped by arbitration or still deferred (nobody can have opened that).
WENT_OUT = (MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.ENGAGED)


def audience(campaign, now=None):
    """The contacts the campaign is for, erased ones included (the start records them as left
    out), as one query: its segment's, or for a follow-up its source's recipients to follow up."""
    now = now or timezone.now()
    if campaign.follow_up_of_id:
        return Contact.objects.filter(pk__in=follow_up_recipients(campaign, now).values("contact_id"))
    if campaign.segment_id is None:
        return Contact.objects.none()
    return segments.matching(campaign.segment.definition, now)


def audience_count(campaign, now=None) -> int:
    """How many contacts the campaign's audience holds now (one query)."""
    try:
        return audience(campaign, now).count()
    except segments.InvalidDefinition:
        return 0


def follow_up_recipients(campaign, now=None):
    """The earlier campaign's recipients a follow-up is for: sent a message (one that went out)
    at least `follow_up_after` ago, who did not open it / click in it / reach the earlier
    campaign's goal event within its goal window (follow_up_when)."""
    now = now or timezone.now()
    earlier = campaign.follow_up_of
    after = campaign.follow_up_after or timezone.timedelta(0)
    sent = CampaignRecipient.objects.filter(campaign=earlier, outcome=RecipientOutcome.SENT,
                                            message__status__in=WENT_OUT, message__created_at__lte=now - after)
    when = campaign.follow_up_when
    if when in (FollowUpWhen.NOT_OPENED, FollowUpWhen.NOT_CLICKED):
        kinds = OPENED_EVENTS if when == FollowUpWhen.NOT_OPENED else CLICKED_EVENTS
        engaged = DeliveryEvent.objects.filter(delivery__message_id=OuterRef("message_id"), event_type__in=kinds)
        return sent.exclude(Exists(engaged))
    if when == FollowUpWhen.NOT_CONVERTED:
        goal = ContactEvent.objects.filter(contact_id=OuterRef("contact_id"), name=earlier.goal_event,
                                           occurred_at__gte=OuterRef("message__created_at"))
        if earlier.goal_window:
            goal = goal.filter(occurred_at__lte=OuterRef("message__created_at") + earlier.goal_window)
        return sent.exclude(Exists(goal))
    return sent


def follow_up_problem(campaign, now=None) -> str:
    """Why a follow-up cannot start yet ("" when it can): its earlier campaign must have sent (or
    been cancelled after it began: then it follows up those it did send to), and
    `follow_up_after` must have passed since it finished."""
    now = now or timezone.now()
    earlier = campaign.follow_up_of
    if not campaign.follow_up_when:
        return "Choose whom it follows up: those who did not open, did not click, or did not reach the goal."
    if earlier.status == CampaignStatus.CANCELLED and earlier.started_at is None:
        return (f"It follows up {earlier.name!r}, which was cancelled before it sent anything: there is nobody "
                f"to follow up.")
    if earlier.status not in (CampaignStatus.SENT, CampaignStatus.CANCELLED):
        return (f"It follows up {earlier.name!r}, which has not finished sending (it is "
                f"{CampaignStatus(earlier.status).label.lower()}): start it once that campaign is sent.")
    finished = earlier.finished_at or earlier.started_at or now
    ready_at = finished + (campaign.follow_up_after or timezone.timedelta(0))
    if ready_at > now:
        return (f"It follows up {earlier.name!r} {_duration(campaign.follow_up_after)} after its sends: it can "
                f"start from {timezone.localtime(ready_at):%Y-%m-%d %H:%M}.")
    if campaign.follow_up_when == FollowUpWhen.NOT_CONVERTED and not earlier.goal_event:
        return f"{earlier.name!r} has no goal event, so nobody can be told apart as not having reached it."
    return ""


def plan(campaign, defaults: dict | None = None) -> list:
    """The campaign's channel plan: its own, else the default plan for its purpose and urgency."""
    if campaign.channel_plan:
        return campaign.channel_plan
    if defaults is None:
        defaults = DefaultChannelPlan.plans()
    return defaults.get((campaign.purpose, campaign.urgency)) or []


def plan_channels(campaign, defaults: dict | None = None) -> list[str]:
    return [entry["channel"] for entry in plan(campaign, defaults)]


def _duration(delta) -> str:
    if not delta:
        return "at once"
    days, seconds = delta.days, delta.seconds
    if days and not seconds:
        return f"{days} day{'s' if days != 1 else ''}"
    hours = round(delta.total_seconds() / 3600, 1)
    return f"{hours:g} hours"
