"""Campaigns and journeys that pause themselves when their sends go wrong.

Its own beat entry (watch_sends_task) counts, for every campaign sending and every active journey (over
its sends of the last OMNI_AUTO_PAUSE["journey_window_hours"]), its deliveries that went out and
how many of them bounced, drew a complaint, failed, drew an opt-out, or were engaged with. Once
at least the minimum sample went out, a rate over its limit (or engagement under its floor)
pauses the campaign (campaign_state.move_campaign, audited campaign.auto_paused) or the journey
(actions.pause_journey, audited journey.auto_paused), with the rate, its value and the limit in
paused_reason. A person looks, then resumes it, which clears the reason and sets watched_since:
from then on only the sends made after the resume are counted (queued since, for a campaign;
visited since, for a journey), so the breach it paused for cannot pause it again, and the
minimum sample must go out anew before any rate is judged.

An opt-out counts for a delivery when the consent revocation names it in its evidence as
delivery_id (a carrier's opt-out, Twilio 21610, as delivery): the unsubscribe link's token
carries it, a STOP reply its in_reply_to. A complaint revokes consent too, but counts as a
complaint only. Engagement is counted over deliveries sent at least
engagement_after_hours ago, so a campaign that has just gone out is not paused for not having
been opened yet.

One grouped query counts every running campaign (another every active journey), however many.
"""
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import CharField, Count, Exists, F, OuterRef, Q
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from channels.models import ENGAGED_DELIVERY_STATUSES, Delivery, DeliveryStatus
from compliance.models import ConsentChange, ConsentSource, ConsentStatus

from .campaign_state import move_campaign
from .models import Campaign, CampaignStatus, Journey, JourneyStatus

D = DeliveryStatus
# Deliveries the provider never had: not counted.
NOT_SENT = (D.QUEUED, D.SENDING, D.UNCERTAIN, D.CANCELLED)


@dataclass(frozen=True)
class Rule:
    key: str  # the Campaign field and the OMNI_AUTO_PAUSE key
    label: str
    counted: str  # the figure counted
    floor: bool = False  # a minimum (engagement) rather than a maximum


RULES = (
    Rule("max_bounce_rate", "Bounce rate", "bounced"),
    Rule("max_complaint_rate", "Complaint rate", "complained"),
    Rule("max_opt_out_rate", "Opt-out rate", "opted_out"),
    Rule("max_failure_rate", "Failure rate", "failed"),
    Rule("min_engagement_rate", "Engagement rate", "engaged", floor=True),
)


@dataclass
class Figures:
    sent: int = 0
    bounced: int = 0
    complained: int = 0
    opted_out: int = 0
    failed: int = 0
    # Engagement, over the deliveries sent long enough ago to have been engaged with.
    engaged: int = 0
    engagement_sample: int = 0

    def sample_of(self, rule: Rule) -> int:
        return self.engagement_sample if rule.floor else self.sent

    def rate(self, rule: Rule) -> float:
        sample = self.sample_of(rule)
        return getattr(self, rule.counted) / sample if sample else 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Line:
    """One watched rate as the page shows it."""
    rule: Rule
    count: int
    sample: int
    rate: float
    threshold: float | None
    breached: bool

    @property
    def rate_text(self) -> str:
        return f"{self.rate:.1%}" if self.sample else "no sends yet"

    @property
    def threshold_text(self) -> str:
        if self.threshold is None:
            return "not watched"
        return f"{'below' if self.rule.floor else 'above'} {self.threshold:.1%}"


@dataclass
class Health:
    figures: Figures
    thresholds: dict
    min_sample: int
    lines: list[Line] = field(default_factory=list)
    paused_reason: str = ""
    auto_paused_at: object = None
    # Set when the figures count from a person's resume rather than from the start (or the
    # journey's window): the page says so.
    watched_since: object = None

    @property
    def paused_itself(self) -> bool:
        """Auto-pause stopped it (a person's pause may give a reason too, but sets no auto_paused_at)."""
        return bool(self.paused_reason) and self.auto_paused_at is not None

    @property
    def sampled(self) -> bool:
        return self.figures.sent >= self.min_sample


def defaults() -> dict:
    return settings.OMNI_AUTO_PAUSE


def thresholds_of(campaign: Campaign | None) -> tuple[dict, int]:
    """The limits that apply to `campaign` (its own where set, else the settings'), and the
    minimum sample; a journey (None) has the settings'."""
    base = defaults()
    limits = {}
    for rule in RULES:
        own = getattr(campaign, rule.key, None) if campaign is not None else None
        limits[rule.key] = own if own is not None else base[rule.key]
    own_sample = campaign.auto_pause_min_sample if campaign is not None else None
    return limits, own_sample if own_sample is not None else base["min_sample"]


def breach(figures: Figures, limits: dict, min_sample: int) -> tuple[Rule, float, float] | None:
    """The first rate past its limit once the sample is large enough: (rule, rate, limit)."""
    for rule in RULES:
        limit = limits.get(rule.key)
        # A floor of 0 and a missing limit watch nothing.
        if limit is None or (rule.floor and not limit) or figures.sample_of(rule) < max(min_sample, 1):
            continue
        rate = figures.rate(rule)
        if (rate < limit) if rule.floor else (rate > limit):
            return rule, rate, limit
    return None


def reason_for(rule: Rule, rate: float, limit: float, figures: Figures) -> str:
    count, sample = getattr(figures, rule.counted), figures.sample_of(rule)
    passed = f"fell below the floor of {limit:.1%}" if rule.floor else f"passed the limit of {limit:.1%}"
    return f"{rule.label} {rate:.1%} {passed} ({count} of {sample} sends)."


def _opted_out():
    """An expression on Delivery: a revocation of the contact's consent names this delivery."""
    return Exists(ConsentChange.objects.filter(
        contact=OuterRef("contact_id"), status=ConsentStatus.REVOKED, occurred_at__gte=OuterRef("queued_at"),
    ).exclude(source=ConsentSource.COMPLAINT).annotate(named=Coalesce(Cast(KT("evidence__delivery_id"), CharField()),
                              Cast(KT("evidence__delivery"), CharField()))).filter(
        named=Cast(OuterRef("pk"), CharField())))


def _counts(deliveries, group_by: str, now, recent=Q()) -> dict[int, Figures]:
    """Figures per `group_by` value over `deliveries` (the rates but engagement over those `recent`
    only): one grouped query."""
    engaged_before = now - timedelta(hours=defaults()["engagement_after_hours"])
    out = ~Q(status__in=NOT_SENT)
    old_enough = out & Q(sent_at__lte=engaged_before)
    out &= recent
    rows = (deliveries.annotate(opted=_opted_out()).values(group_by).annotate(
        sent=Count("pk", filter=out),
        bounced=Count("pk", filter=recent & Q(status=D.BOUNCED)),
        complained=Count("pk", filter=recent & Q(status=D.COMPLAINED)),
        failed=Count("pk", filter=recent & Q(status__in=(D.FAILED, D.UNDELIVERED))),
        opted_out=Count("pk", filter=out & Q(opted=True)),
        engaged=Count("pk", filter=old_enough & Q(status__in=ENGAGED_DELIVERY_STATUSES)),
        engagement_sample=Count("pk", filter=old_enough),
    ).order_by())
    return {row.pop(group_by): Figures(**row) for row in rows}


def campaign_figures(campaign_ids, now) -> dict[int, Figures]:
    """Over each campaign's deliveries queued since a person last resumed it (all of them if never)."""
    watched_since = F("message__campaign_recipient__campaign__watched_since")
    # One filter() call: the conditions must share the one join to the recipient.
    return _counts(Delivery.objects.filter(Q(message__campaign_recipient__campaign__watched_since=None)
                                           | Q(queued_at__gte=watched_since),
                                           message__campaign_recipient__campaign__in=campaign_ids),
                   "message__campaign_recipient__campaign", now)


def journey_window_start(now):
    return now - timedelta(hours=defaults()["journey_window_hours"])


def journey_figures(journey_ids, now) -> dict[int, Figures]:
    """Over each journey's sends of the window, or since a person last resumed it if that is later.
    Engagement is judged over sends old enough to have been engaged with, so over the window moved
    back by engagement_after_hours: else, with a window no longer than that wait, never."""
    watched_since = F("message__journey_visit__journey__watched_since")
    engagement_start = journey_window_start(now) - timedelta(hours=defaults()["engagement_after_hours"])
    # By the visit's time: visit_journey_step indexes it with the journey. One filter() call: the
    # conditions must share the one join to the visit.
    return _counts(Delivery.objects.filter(Q(message__journey_visit__journey__watched_since=None)
                                           | Q(message__journey_visit__visited_at__gte=watched_since),
                                           message__journey_visit__journey__in=journey_ids,
                                           message__journey_visit__visited_at__gte=engagement_start),
                   "message__journey_visit__journey", now,
                   recent=Q(message__journey_visit__visited_at__gte=journey_window_start(now)))


def _health(figures: Figures, limits: dict, min_sample: int, paused_reason="", auto_paused_at=None,
            watched_since=None) -> Health:
    lines = []
    for rule in RULES:
        limit = limits.get(rule.key)
        watched = limit is not None and not (rule.floor and not limit)
        sample = figures.sample_of(rule)
        rate = figures.rate(rule)
        breached = watched and sample >= max(min_sample, 1) and ((rate < limit) if rule.floor else (rate > limit))
        lines.append(Line(rule, getattr(figures, rule.counted), sample, rate, limit if watched else None, breached))
    return Health(figures, limits, min_sample, lines, paused_reason, auto_paused_at, watched_since)


def campaign_health(campaign, now=None) -> Health:
    """The rates auto-pause watches, with their thresholds, for the page. One query."""
    now = now or timezone.now()
    figures = campaign_figures([campaign.pk], now).get(campaign.pk, Figures()) if campaign.pk else Figures()
    limits, min_sample = thresholds_of(campaign)
    return _health(figures, limits, min_sample, campaign.paused_reason, campaign.auto_paused_at,
                   campaign.watched_since)


def journey_health(journey, now=None) -> Health:
    """The same for a journey, over its sends of the window (or since it was resumed, if later)."""
    now = now or timezone.now()
    figures = journey_figures([journey.pk], now).get(journey.pk, Figures())
    limits, min_sample = thresholds_of(None)
    # Only auto-pause gives a journey a reason; it has no auto_paused_at of its own.
    paused_at = journey.updated_at if journey.paused_reason else None
    resumed_in_window = journey.watched_since and journey.watched_since > journey_window_start(now)
    return _health(figures, limits, min_sample, journey.paused_reason, paused_at,
                   journey.watched_since if resumed_in_window else None)


def auto_pause_campaign(campaign: Campaign, figures: Figures, found: tuple, now) -> bool:
    rule, rate, limit = found
    reason = reason_for(rule, rate, limit, figures)
    return move_campaign(campaign, CampaignStatus.PAUSED, action="campaign.auto_paused", now=now, refuse=False,
                         fields={"paused_reason": reason, "auto_paused_at": now},
                         data={"rule": rule.key, "rate": round(rate, 6), "threshold": limit, "reason": reason,
                               "figures": figures.as_dict()})


def auto_pause_journey(journey: Journey, figures: Figures, found: tuple, now) -> bool:
    from .actions import pause_journey

    rule, rate, limit = found
    reason = reason_for(rule, rate, limit, figures)
    with transaction.atomic():
        locked = Journey.objects.select_for_update().filter(pk=journey.pk, status=JourneyStatus.ACTIVE).first()
        if locked is None:
            return False
        pause_journey(locked, reason=reason, action="journey.auto_paused",
                      data={"rule": rule.key, "rate": round(rate, 6), "threshold": limit, "reason": reason,
                            "window_hours": defaults()["journey_window_hours"], "figures": figures.as_dict()})
    journey.status, journey.paused_reason = locked.status, locked.paused_reason
    return True


def watch_sends(now) -> int:
    """Pause every sending campaign and active journey whose sends breach a limit; return how
    many paused. Its own beat entry runs it every OMNI_AUTO_PAUSE_SECONDS, not every tick: its
    grouped counts read all of a running campaign's deliveries, which grow with the campaign.
    Two queries when nothing sends (the campaigns, the journeys' figures), three otherwise."""
    campaigns = {c.pk: c for c in Campaign.objects.filter(status=CampaignStatus.SENDING)}
    paused = 0
    if campaigns:
        for pk, figures in campaign_figures(list(campaigns), now).items():
            limits, min_sample = thresholds_of(campaigns[pk])
            found = breach(figures, limits, min_sample)
            if found and auto_pause_campaign(campaigns[pk], figures, found, now):
                paused += 1
    limits, min_sample = thresholds_of(None)
    active = Journey.objects.filter(status=JourneyStatus.ACTIVE).values("pk")
    breaches = {pk: (figures, breach(figures, limits, min_sample))
                for pk, figures in journey_figures(active, now).items()}
    breaches = {pk: value for pk, value in breaches.items() if value[1]}
    for journey in Journey.objects.filter(pk__in=list(breaches)) if breaches else ():
        if auto_pause_journey(journey, *breaches[journey.pk], now):
            paused += 1
    return paused
