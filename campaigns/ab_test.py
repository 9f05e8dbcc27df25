"""A campaign's A/B test: the winner chosen by a two-proportion z-test after the test period.

The test share of the audience (CampaignRecipient.in_test) is sent first, split by weight; the
rest wait with no variant and no send_at. When test_ends_at has passed, the tick's "campaign
winners" stage compares the variants' rates on the campaign's test metric:

- the best rate against the runner-up's (with more than two variants too: the best must beat
  the second best at 95% confidence, and then it beats the rest by at least as wide a margin in
  rate; a variant with no send counted has no rate and ranks last). p < 0.05, two-sided, with
  the best rate strictly higher and samples large enough for the z-test, is a winner;
- otherwise the marketer's fallback (Campaign.test_fallback): the first variant by position,
  the higher rate anyway, or the rest split by weight.

The winner's pinned version then goes to the rest, due now or, for a campaign sent in local time,
when its scheduled wall clock next comes round on each one's clock, spread by the throttle as at
the start: one UPDATE of the waiting recipients (or, with a throttle, a split or local time, bulk
updates of a thousand rows), audited campaign.winner_chosen with the counts, rates, z and p.
"""
import math
from dataclasses import dataclass
from django.db import transaction
from django.db.models import Count, DateTimeField, DurationField, Exists, ExpressionWrapper, OuterRef, Q, Value
from django.utils import timezone

from channels.models import Delivery, DeliveryEvent, EventType, InboundMessage, MessageStatus
from contacts.models import ContactEvent
from omni import audit
from omni.choices import OPENS_REPORTED_ON

from .campaign_start import scheduled_wall_clock, variant_drawn
from .models import (
    Campaign, CampaignRecipient, CampaignStatus, CampaignVariant, RecipientOutcome, TestFallback, TestMetric,
)
from .timing import contact_zone, next_wall_clock, throttled

CONFIDENCE = 0.95
# The normal quantile of a two-sided 95% interval.
Z_95 = 1.959963984540054
# Campaigns looked at per batch of the tick's stage; each is a handful of queries.
WINNER_BATCH = 20
# Rows per bulk UPDATE when each waiting recipient gets its own variant or send time.
UPDATE_BATCH = 1000
# The z-test's normal approximation holds once each of the two variants expects at least this
# many successes and as many failures at their pooled rate (the textbook rule). Below it the
# z-test finds winners an exact test does not: 5 clicks of 100 against none of 100 is p = 0.024
# by the z-test, 0.06 by Fisher's exact test.
MIN_EXPECTED = 5

# A message that went out to a provider: the rates are counted over these.
SENT_MESSAGE_STATUSES = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.ENGAGED, MessageStatus.FAILED)
# A click counts as an open too: many mail clients block the open pixel but not the link.
METRIC_EVENTS = {
    TestMetric.CLICKS: (EventType.CLICKED,),
    TestMetric.OPENS: (EventType.OPENED, EventType.CLICKED, EventType.READ),
}


def two_proportion_z_test(successes_a: int, n_a: int, successes_b: int, n_b: int) -> tuple[float, float]:
    """The pooled two-proportion z statistic of rate a against rate b, and its two-sided p-value.
    With an empty sample or no variance (0% or 100% everywhere) nothing can be told: (0, 1)."""
    if not n_a or not n_b:
        return 0.0, 1.0
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return 0.0, 1.0
    z = (successes_a / n_a - successes_b / n_b) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def large_enough(successes_a: int, n_a: int, successes_b: int, n_b: int) -> bool:
    """Whether two samples are large enough for the z-test's p to be trusted (MIN_EXPECTED)."""
    if not n_a or not n_b:
        return False
    pooled = (successes_a + successes_b) / (n_a + n_b)
    return min(n_a, n_b) * min(pooled, 1 - pooled) >= MIN_EXPECTED


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a rate (95% by default): sound near 0% and 100% and for small
    samples, where the normal interval runs past the ends."""
    if not n:
        return 0.0, 1.0
    rate = successes / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class VariantResult:
    variant: CampaignVariant
    sent: int
    successes: int

    @property
    def rate(self) -> float:
        return self.successes / self.sent if self.sent else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.sent)

    @property
    def rate_text(self) -> str:
        return f"{self.rate:.1%}" if self.sent else "no sends yet"

    @property
    def interval_text(self) -> str:
        low, high = self.interval
        return f"{low:.1%} to {high:.1%}"

    def figures(self) -> dict:
        low, high = self.interval
        return {"variant": self.variant.pk, "name": self.variant.name, "sent": self.sent,
                "successes": self.successes, "rate": round(self.rate, 6),
                "interval": [round(low, 6), round(high, 6)]}


def _success(campaign: Campaign):
    """An expression on CampaignRecipient: its message succeeded by the campaign's test metric."""
    metric = campaign.test_metric
    if metric == TestMetric.REPLIES:
        return Exists(InboundMessage.objects.filter(in_reply_to__message=OuterRef("message_id")))
    if metric == TestMetric.GOAL:
        if not campaign.goal_event:
            return Value(False)
        events = ContactEvent.objects.filter(contact=OuterRef("contact_id"), name=campaign.goal_event,
                                             occurred_at__gte=OuterRef("message__created_at"))
        if campaign.goal_window:
            events = events.filter(occurred_at__lte=ExpressionWrapper(
                OuterRef("message__created_at") + Value(campaign.goal_window, output_field=DurationField()),
                output_field=DateTimeField()))
        return Exists(events)
    return Exists(DeliveryEvent.objects.filter(delivery__message=OuterRef("message_id"),
                                               event_type__in=METRIC_EVENTS[metric]))


def variant_results(campaign) -> list[VariantResult]:
    """Each variant's sends (in the test share: messages that went out, for opens on a channel
    that reports them), successes by the test metric, rate and 95% interval, in position order.
    Two queries, however large the test."""
    variants = list(campaign.variants.all())
    went_out = Q(message__status__in=SENT_MESSAGE_STATUSES)
    recipients = CampaignRecipient.objects.filter(campaign=campaign, in_test=True, variant__isnull=False)
    if campaign.test_metric == TestMetric.OPENS:
        # Opens are rated over the sends that could report one: an SMS is never known to be read.
        recipients = recipients.filter(Exists(Delivery.objects.filter(message=OuterRef("message_id"),
                                                                      channel__in=OPENS_REPORTED_ON)))
    counts = {
        row["variant_id"]: row for row in
        recipients
        .annotate(succeeded=_success(campaign))
        .values("variant_id")
        .annotate(sent=Count("pk", filter=went_out), successes=Count("pk", filter=went_out & Q(succeeded=True)))
        .order_by()
    }
    empty = {"sent": 0, "successes": 0}
    return [VariantResult(variant, counts.get(variant.pk, empty)["sent"], counts.get(variant.pk, empty)["successes"])
            for variant in variants]


@dataclass
class Verdict:
    """What the test decided: the variant the rest get (None: split by weight), whether it won
    at 95% confidence, and the figures behind it."""
    results: list[VariantResult]
    winner: CampaignVariant | None
    significant: bool
    z: float
    p: float
    fallback: str = ""


def decide(campaign: Campaign, results: list[VariantResult]) -> Verdict:
    """The winner rule (see the module's docstring), pure over the results."""
    ranked = sorted(results, key=lambda r: (not r.sent, -r.rate, r.variant.position, r.variant.pk))
    if len(ranked) < 2:
        winner = ranked[0].variant if ranked else None
        return Verdict(results, winner, False, 0.0, 1.0, fallback="" if winner else campaign.test_fallback)
    best, runner_up = ranked[0], ranked[1]
    z, p = two_proportion_z_test(best.successes, best.sent, runner_up.successes, runner_up.sent)
    if (p < 1 - CONFIDENCE and best.rate > runner_up.rate
            and large_enough(best.successes, best.sent, runner_up.successes, runner_up.sent)):
        return Verdict(results, best.variant, True, z, p)
    fallback = campaign.test_fallback
    if fallback == TestFallback.HIGHER_RATE:
        winner = best.variant
    elif fallback == TestFallback.SPLIT:
        winner = None
    else:
        winner = min((r.variant for r in results), key=lambda v: (v.position, v.pk))
    return Verdict(results, winner, False, z, p, fallback=fallback)


def _waiting(campaign: Campaign):
    return CampaignRecipient.objects.filter(campaign=campaign, in_test=False, variant__isnull=True,
                                            outcome=RecipientOutcome.PENDING, send_at__isnull=True,
                                            quarantined_at__isnull=True)


def send_to_the_rest(campaign: Campaign, winner: CampaignVariant | None, now) -> int:
    """Give the waiting recipients `winner` (None: each their variant by weight) and a send time,
    spread by the throttle as at the start: now, or for a campaign sent in local time the next
    time its scheduled wall clock comes round on each contact's clock. Returns how many."""
    waiting = _waiting(campaign)
    throttle = campaign.throttle_per_minute
    wall = scheduled_wall_clock(campaign)
    if winner is not None and not throttle and wall is None:
        return waiting.update(variant=winner, send_at=now)
    variants = [v for v in campaign.variants.all() if v.weight] if winner is None else []
    if winner is None and not variants:
        raise ValueError(f"{campaign} has no variant with a weight to split the rest by.")
    if wall is None:
        rows = list(waiting.order_by("pk").only("pk", "contact_id"))
        due = [(now, row.contact_id) for row in rows]
    else:
        rows = list(waiting.select_related("contact").order_by("pk")
                    .only("pk", "contact_id", "contact__timezone", "contact__phone"))
        due = [(next_wall_clock(wall.date(), wall.time(), contact_zone(row.contact), now), row.contact_id)
               for row in rows]
    for row, send_at in zip(rows, throttled(due, throttle)):
        row.variant = winner or variant_drawn(campaign.pk, row.contact_id, variants)
        row.send_at = send_at
    CampaignRecipient.objects.bulk_update(rows, ["variant", "send_at"], batch_size=UPDATE_BATCH)
    return len(rows)


def choose_winner(campaign: Campaign, now=None) -> Verdict | None:
    """Decide the campaign's test and send the rest; audited campaign.winner_chosen. None when
    another worker decided it first, or the campaign is no longer sending."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = (Campaign.objects.select_for_update(skip_locked=True)
                  .filter(pk=campaign.pk, status=CampaignStatus.SENDING, winner_chosen_at__isnull=True).first())
        if locked is None:
            return None
        verdict = decide(locked, variant_results(locked))
        rest = send_to_the_rest(locked, verdict.winner, now)
        Campaign.objects.filter(pk=locked.pk).update(winner=verdict.winner, winner_chosen_at=now, updated_at=now)
        campaign.winner, campaign.winner_chosen_at = verdict.winner, now
        audit.record("campaign.winner_chosen", obj=locked, actor_label="tick", data={
            "metric": locked.test_metric, "variants": [r.figures() for r in verdict.results],
            "winner": verdict.winner.pk if verdict.winner else None,
            "winner_name": verdict.winner.name if verdict.winner else "",
            "significant": verdict.significant, "z": round(verdict.z, 6), "p": round(verdict.p, 6),
            "fallback": verdict.fallback, "rest": rest,
        })
    return verdict


def choose_winners_batch(now, report, handled: set | None = None) -> int:
    """A tick stage: campaigns sending whose test period has ended without a decision."""
    handled = handled if handled is not None else set()
    due = list(Campaign.objects.filter(status=CampaignStatus.SENDING, test_ends_at__lte=now,
                                       winner_chosen_at__isnull=True).exclude(pk__in=handled)
               .order_by("test_ends_at", "pk")[:WINNER_BATCH])
    for campaign in due:
        handled.add(campaign.pk)
        if choose_winner(campaign, now) is not None:
            report.winners_chosen += 1
    return len(due)
