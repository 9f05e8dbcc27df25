"""The A/B winner rule at its edges (samples too small for the z-test, a variant with no send counted)
and a cancel meeting the tick on one campaign (choosing its winner, claiming its first batch)."""
import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from campaigns.ab_test import choose_winner
from campaigns.campaign_sending import RecipientClaims, cancel_campaign, due_recipients
from campaigns.models import Campaign, CampaignStatus, RecipientOutcome
from campaigns.models import TestFallback as Fallback, TestMetric as Metric
from campaigns.tick_report import TickReport

from .results_helpers import make_contacts, send_test_share, sending_campaign, waiting_rest
from .sending_helpers import reachable_contacts, started_campaign
from .test_ab_test import campaign_tested, click

pytestmark = pytest.mark.django_db

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="row locks between two connections need PostgreSQL; set DATABASE_URL to run it (SQLite serializes writers)",
)


@pytest.fixture
def template(welcome_templates):
    return welcome_templates[0]


def test_a_test_too_small_for_the_z_test_names_no_winner(template, now):
    # given 5 clicks of 100 on B against none of 100 on A: the z-test's p is 0.024, but with 2.5
    # clicks expected per variant its normal approximation does not hold (Fisher's exact p is 0.06)
    campaign = sending_campaign(template, now, test_fallback=Fallback.CONTROL)
    first, second = campaign.variants.order_by("position")
    send_test_share(campaign, first, make_contacts("a", 100), now)
    click(send_test_share(campaign, second, make_contacts("b", 100), now)[:5], now)
    waiting_rest(campaign, make_contacts("rest", 10))

    verdict = choose_winner(campaign, now)

    # then no variant won at 95% confidence: the marketer's fallback applies
    assert verdict.p < 0.05
    assert not verdict.significant
    assert verdict.winner.name == "A" and verdict.fallback == Fallback.CONTROL


@pytest.mark.parametrize("unmeasured_first", [True, False])
def test_a_variant_with_no_counted_send_does_not_hide_a_clear_winner(template, now, unmeasured_first):
    # given a test on opens where A's sends all went by SMS (which never reports an open), B was
    # opened by none of 100 and C by 30 of 100: C beats B clearly, whichever comes first
    names = ("A", "B", "C") if unmeasured_first else ("B", "A", "C")
    campaign = sending_campaign(template, now, test_metric=Metric.OPENS, test_fallback=Fallback.CONTROL,
                                variants=tuple((name, 34) for name in names))
    variants = {v.name: v for v in campaign.variants.all()}
    send_test_share(campaign, variants["A"], make_contacts("a", 100, channel="sms"), now, channel="sms")
    send_test_share(campaign, variants["B"], make_contacts("b", 100), now)
    click(send_test_share(campaign, variants["C"], make_contacts("c", 100), now)[:30], now)

    verdict = choose_winner(campaign, now)

    assert verdict.significant
    assert verdict.winner.name == "C"


def while_holding(lock, then, other) -> list:
    """In one transaction `lock`, then after a while `then`; meanwhile, once `lock` has its
    locks, `other` in a transaction of its own. The errors either raised."""
    locked, errors = threading.Event(), []

    def one():
        try:
            with transaction.atomic():
                lock()
                locked.set()
                time.sleep(1.5)  # `other` starts meanwhile
                then()
        except Exception as exc:  # surfaced through `errors`
            errors.append(exc)
        finally:
            locked.set()
            connections.close_all()

    def two():
        try:
            locked.wait(10)
            other()
        except Exception as exc:  # surfaced through `errors`
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one), threading.Thread(target=two)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_cancel_while_the_tick_chooses_the_winner_waits_for_it_rather_than_deadlocking(welcome_templates):
    # given a campaign whose test has ended, the tick choosing its winner (the campaign's row
    # locked, the rest not updated yet) when the marketer cancels it
    now = timezone.now()
    campaign = campaign_tested(welcome_templates[0], now)

    errors = while_holding(
        lambda: Campaign.objects.select_for_update().get(pk=campaign.pk),  # the lock choose_winner takes first
        lambda: choose_winner(Campaign.objects.get(pk=campaign.pk), now),
        lambda: cancel_campaign(Campaign.objects.get(pk=campaign.pk), actor=None))

    # then both went through, one after the other: the rest got the winner, then were cancelled
    assert not errors
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED and campaign.winner_chosen_at is not None
    assert set(campaign.recipients.filter(in_test=False).values_list("skip_reason", flat=True)) == {"cancelled"}


@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_cancel_while_the_tick_claims_a_scheduled_campaigns_first_batch_does_not_deadlock():
    # given a scheduled campaign whose first recipients the tick is claiming when it is cancelled
    now = timezone.now()
    campaign = started_campaign(reachable_contacts(3))

    errors = while_holding(
        lambda: list(due_recipients(now, [campaign.pk]).select_for_update()),  # the rows the claim takes first
        lambda: RecipientClaims(hand_off_to=lambda ids: None)(now, TickReport()),
        lambda: cancel_campaign(Campaign.objects.get(pk=campaign.pk), actor=None))

    # then the cancel waited for the claim, and skipped what it had claimed but not sent
    assert not errors
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED
    assert set(campaign.recipients.values_list("outcome", "skip_reason")) == {(RecipientOutcome.SKIPPED, "cancelled")}
