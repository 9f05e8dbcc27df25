"""The A/B test: the z-test, the winner rule and its fallbacks, the rest sent the winner's
version, the audit, and the page's A/B section."""
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import pytest
from django.template import Context, Template as DjangoTemplate

from channels.models import EventType
from channels.provider_reports import record_delivery_event, record_inbound_message
from contacts.models import Contact
from contacts.ingest import store_events
from omni.models import AuditEntry

from campaigns.ab_test import choose_winner, two_proportion_z_test, variant_results, wilson_interval
from campaigns.campaign_start import variant_drawn
from campaigns.models import CampaignRecipient
from campaigns.models import TestFallback as Fallback, TestMetric as Metric
from campaigns.tick import tick

from .results_helpers import make_contacts, send_test_share, sending_campaign, waiting_rest


def click(deliveries, now, event_type=EventType.CLICKED):
    """The provider reports engagement with each delivery (the real report path)."""
    for delivery in deliveries:
        record_delivery_event("sandbox", f"{event_type}-{delivery.pk}", delivery.provider_message_id, event_type, now)


@pytest.fixture
def template(welcome_templates):
    return welcome_templates[0]


def campaign_tested(template, now, *, a=(20, 100), b=(40, 100), rest=30, **fields):
    """A campaign whose test share saw a[0] of a[1] clicks on A and b[0] of b[1] on B, with `rest`
    recipients waiting."""
    campaign = sending_campaign(template, now, **fields)
    first, second = campaign.variants.order_by("position")
    for variant, (clicks, sent) in ((first, a), (second, b)):
        contacts = make_contacts(f"{variant.name.lower()}{campaign.pk}", sent)
        deliveries = send_test_share(campaign, variant, contacts, now)
        click(deliveries[:clicks], now)
    waiting_rest(campaign, make_contacts(f"rest{campaign.pk}", rest))
    return campaign


# --- the statistics --------------------------------------------------------------------------

def test_the_z_test_gives_the_textbook_numbers():
    # 20% of 100 against 40% of 100: pooled 30%, standard error 0.0648, z = -3.086, p = 0.00203
    z, p = two_proportion_z_test(20, 100, 40, 100)
    assert z == pytest.approx(-3.0861, abs=1e-4)
    assert p == pytest.approx(0.002028, abs=1e-5)
    # |z| = 1.96 is p = 0.05: 50% of 1,000 against 45.6% of 1,000 (pooled 47.8%, z = 1.9696) is just past it
    z, p = two_proportion_z_test(500, 1000, 456, 1000)
    assert z == pytest.approx(1.9696, abs=1e-4)
    assert p == pytest.approx(0.0489, abs=1e-4)


def test_the_z_test_tells_nothing_without_a_sample_or_a_difference():
    assert two_proportion_z_test(0, 0, 5, 10) == (0.0, 1.0)
    assert two_proportion_z_test(0, 50, 0, 50) == (0.0, 1.0)
    assert two_proportion_z_test(7, 50, 7, 50) == (0.0, 1.0)


def test_the_wilson_interval_gives_the_textbook_numbers():
    low, high = wilson_interval(20, 100)
    assert (low, high) == (pytest.approx(0.1334, abs=1e-4), pytest.approx(0.2888, abs=1e-4))
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


# --- the winner rule -------------------------------------------------------------------------

def test_a_significant_winner_goes_to_the_rest(template, now):
    # given B clicked 40% against A's 20%, 30 waiting
    campaign = campaign_tested(template, now)
    first, second = campaign.variants.order_by("position")

    # when the tick runs after the test period
    report = tick(now)

    # then B won and the rest are due now on B's pinned version
    campaign.refresh_from_db()
    assert report.winners_chosen == 1
    assert (campaign.winner, campaign.winner_chosen_at) == (second, now)
    rest = CampaignRecipient.objects.filter(campaign=campaign, in_test=False)
    assert rest.count() == 30
    assert set(rest.values_list("variant", "send_at")) == {(second.pk, now)}
    assert second.template_version_id is not None
    # and the audit has the counts, rates, z and p
    entry = AuditEntry.objects.get(action="campaign.winner_chosen")
    assert entry.object_id == str(campaign.pk)
    assert entry.data["significant"] is True
    assert entry.data["winner"] == second.pk and entry.data["fallback"] == ""
    assert entry.data["p"] == pytest.approx(0.002028, abs=1e-5)
    assert entry.data["z"] == pytest.approx(3.0861, abs=1e-4)
    assert [(v["name"], v["sent"], v["successes"]) for v in entry.data["variants"]] == [("A", 100, 20), ("B", 100, 40)]
    assert entry.data["rest"] == 30


def test_the_winner_is_chosen_once_and_not_before_the_test_ends(template, now):
    campaign = campaign_tested(template, now, test_ends_in=timedelta(hours=1))

    assert tick(now).winners_chosen == 0
    assert CampaignRecipient.objects.filter(campaign=campaign, send_at__isnull=True).count() == 30

    later = now + timedelta(hours=2)
    assert tick(later).winners_chosen == 1
    assert tick(later + timedelta(minutes=1)).winners_chosen == 0
    assert AuditEntry.objects.filter(action="campaign.winner_chosen").count() == 1


@pytest.mark.parametrize("fallback, expected", [(Fallback.CONTROL, "A"), (Fallback.HIGHER_RATE, "B")])
def test_without_significance_the_fallback_picks_the_variant(template, now, fallback, expected):
    # given B's 25% against A's 20% of 100: p = 0.40
    campaign = campaign_tested(template, now, a=(20, 100), b=(25, 100), test_fallback=fallback)

    verdict = choose_winner(campaign, now)

    assert not verdict.significant
    assert verdict.p == pytest.approx(0.3972, abs=1e-4)
    campaign.refresh_from_db()
    assert campaign.winner.name == expected
    rest = CampaignRecipient.objects.filter(campaign=campaign, in_test=False)
    assert set(rest.values_list("variant__name", flat=True)) == {expected}
    entry = AuditEntry.objects.get(action="campaign.winner_chosen")
    assert (entry.data["significant"], entry.data["fallback"], entry.data["winner_name"]) == (False, fallback, expected)


def test_without_significance_the_split_fallback_splits_the_rest_by_weight(template, now):
    campaign = campaign_tested(template, now, a=(20, 100), b=(22, 100), rest=400, test_fallback=Fallback.SPLIT,
                      variants=(("A", 75), ("B", 25)))

    verdict = choose_winner(campaign, now)

    campaign.refresh_from_db()
    assert verdict.winner is None and campaign.winner is None and campaign.winner_chosen_at == now
    rest = CampaignRecipient.objects.filter(campaign=campaign, in_test=False)
    counts = {name: rest.filter(variant__name=name).count() for name in ("A", "B")}
    assert sum(counts.values()) == 400 and not rest.filter(send_at__isnull=True).exists()
    # 75:25, drawn by hash: about 300 to 100
    assert 250 < counts["A"] < 350
    # the same contact always draws the same variant
    variants = list(campaign.variants.all())
    assert all(variant_drawn(campaign.pk, r.contact_id, variants).pk == r.variant_id for r in rest)
    # and the stage does not decide it again
    assert tick(now + timedelta(minutes=1)).winners_chosen == 0


def test_with_three_variants_the_best_must_beat_the_runner_up(template, now):
    # given C beats A clearly but B only narrowly
    campaign = sending_campaign(template, now, variants=(("A", 34), ("B", 33), ("C", 33)),
                                test_fallback=Fallback.CONTROL)
    for variant, clicks in zip(campaign.variants.order_by("position"), (10, 38, 40)):
        click(send_test_share(campaign, variant, make_contacts(f"v{variant.name}", 100), now)[:clicks], now)

    verdict = choose_winner(campaign, now)

    assert not verdict.significant
    assert verdict.winner.name == "A"


def test_a_throttle_spreads_the_rest_a_minute_at_a_time(template, now):
    campaign = campaign_tested(template, now, rest=25, throttle_per_minute=10)

    choose_winner(campaign, now)

    send_times = sorted(CampaignRecipient.objects.filter(campaign=campaign, in_test=False)
                        .values_list("send_at", flat=True))
    assert send_times.count(now) == 10
    assert send_times.count(now + timedelta(minutes=1)) == 10
    assert send_times.count(now + timedelta(minutes=2)) == 5


def test_a_local_time_campaigns_rest_goes_at_its_wall_clock_on_each_ones_clock_next_time_it_comes(template):
    # given a campaign sent at 09:00 local time, whose test ends at 12:00 UTC on 10 March 2026
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    campaign = campaign_tested(template, now, rest=0, send_in_local_time=True, throttle_per_minute=1,
                               scheduled_at=datetime(2026, 3, 10, 9, 0, tzinfo=UTC))
    paris = [Contact.objects.create(external_id=f"paris-{i}", email=f"paris-{i}@example.com",
                                    timezone="Europe/Paris") for i in range(2)]
    new_york = Contact.objects.create(external_id="ny", email="ny@example.com", timezone="America/New_York")
    waiting_rest(campaign, [*paris, new_york])

    choose_winner(campaign, now)

    send_at = dict(CampaignRecipient.objects.filter(campaign=campaign, in_test=False)
                   .values_list("contact_id", "send_at"))
    # 09:00 in Paris (UTC+1) passed at 08:00 UTC: tomorrow's, one a minute by the throttle;
    # 09:00 in New York (UTC-4 since 8 March) is still to come today, at 13:00 UTC
    assert sorted(send_at[c.pk] for c in paris) == [datetime(2026, 3, 11, 8, 0, tzinfo=UTC),
                                                    datetime(2026, 3, 11, 8, 1, tzinfo=UTC)]
    assert send_at[new_york.pk] == datetime(2026, 3, 10, 13, 0, tzinfo=UTC)


def test_a_campaign_that_is_not_sending_is_left_alone(template, now):
    from campaigns.campaign_state import move_campaign
    from campaigns.models import CampaignStatus

    campaign = campaign_tested(template, now)
    move_campaign(campaign, CampaignStatus.PAUSED, action="campaign.paused")

    assert tick(now).winners_chosen == 0
    assert choose_winner(campaign, now) is None


# --- the metrics -----------------------------------------------------------------------------

def test_opens_count_opens_and_clicks_once_each(template, now):
    campaign = sending_campaign(template, now, test_metric=Metric.OPENS)
    first, second = campaign.variants.order_by("position")
    a = send_test_share(campaign, first, make_contacts("a", 10), now)
    send_test_share(campaign, second, make_contacts("b", 10), now)
    click(a[:4], now, EventType.OPENED)
    click(a[2:6], now, EventType.CLICKED)

    results = variant_results(campaign)

    assert [(r.variant.name, r.sent, r.successes) for r in results] == [("A", 10, 6), ("B", 10, 0)]
    assert results[0].rate == pytest.approx(0.6)


def test_opens_are_rated_over_the_sends_on_channels_that_report_them(template, now):
    campaign = sending_campaign(template, now, test_metric=Metric.OPENS)
    first, second = campaign.variants.order_by("position")
    a = send_test_share(campaign, first, make_contacts("a", 10), now)
    send_test_share(campaign, first, make_contacts("a-sms", 10, channel="sms"), now, channel="sms")
    send_test_share(campaign, second, make_contacts("b", 10), now)
    click(a[:4], now, EventType.OPENED)

    results = variant_results(campaign)

    # A's ten SMS could never report an open: A opened 4 of 10, not 4 of 20
    assert [(r.variant.name, r.sent, r.successes) for r in results] == [("A", 10, 4), ("B", 10, 0)]


def test_replies_count_the_inbound_messages_that_answer_a_send(template, now, keyword_lists):
    campaign = sending_campaign(template, now, test_metric=Metric.REPLIES)
    first, second = campaign.variants.order_by("position")
    a = send_test_share(campaign, first, make_contacts("a", 10), now)
    b = send_test_share(campaign, second, make_contacts("b", 10), now)

    for number, delivery in enumerate(a[:3] + b[:1]):
        inbound, _ = record_inbound_message("ses", f"reply-{number}", "email", delivery.to_address,
                                            "offers@example.com", "Yes please, tell me more")
        assert inbound.in_reply_to_id == delivery.pk

    assert [(r.variant.name, r.successes) for r in variant_results(campaign)] == [("A", 3), ("B", 1)]


def test_the_goal_counts_within_its_window_after_the_send(template, now):
    campaign = sending_campaign(template, now, test_metric=Metric.GOAL, goal_event="purchased",
                                goal_window=timedelta(days=2))
    first, second = campaign.variants.order_by("position")
    sent = now - timedelta(days=4)
    a = send_test_share(campaign, first, make_contacts("a", 10), sent)
    send_test_share(campaign, second, make_contacts("b", 10), sent)
    events = [(a[0], sent + timedelta(hours=1)), (a[1], sent + timedelta(days=1)),
              (a[2], sent + timedelta(days=3)),  # after the window
              (a[3], sent - timedelta(hours=1))]  # before the send
    store_events([{"contact_id": d.contact_id, "name": "purchased", "idempotency_key": f"p-{d.pk}",
                   "occurred_at": at, "properties": {}} for d, at in events], source="api")
    store_events([{"contact_id": a[4].contact_id, "name": "browsed", "idempotency_key": "other",
                   "occurred_at": sent + timedelta(hours=1), "properties": {}}], source="api")

    assert [(r.variant.name, r.successes) for r in variant_results(campaign)] == [("A", 2), ("B", 0)]


def test_variant_results_take_two_queries_however_many_recipients(template, now, django_assert_num_queries):
    campaign = campaign_tested(template, now, a=(5, 60), b=(9, 60), rest=10)
    with django_assert_num_queries(2):
        results = variant_results(campaign)
    assert [(r.sent, r.successes) for r in results] == [(60, 5), (60, 9)]


# --- the page's A/B section ------------------------------------------------------------------

def render_ab(campaign) -> str:
    section = DjangoTemplate("{% load campaign_results %}{% ab_results campaign %}")
    return section.render(Context({"campaign": campaign}))


def svg_of(html: str) -> ElementTree.Element:
    start, end = html.index("<svg"), html.index("</svg>") + len("</svg>")
    return ElementTree.fromstring(html[start:end])


def test_the_page_shows_each_variant_rate_with_its_interval_as_a_chart(template, now):
    campaign = campaign_tested(template, now, test_ends_in=timedelta(hours=1))
    variant = campaign.variants.get(name="B")
    variant.name = 'B <script>"&'
    variant.save()

    html = render_ab(campaign)

    assert "No winner yet." in html
    assert "<script>" not in html and "B &lt;script&gt;&quot;&amp;" in html
    svg = svg_of(html)
    rows = svg.findall("{http://www.w3.org/2000/svg}g")
    assert [row.get("data-variant") for row in rows] == [str(v.pk) for v in campaign.variants.order_by("position")]
    texts = ["".join(row.itertext()) for row in rows]
    assert texts[1].startswith('B <script>"&') and "40.0% (30.9% to 49.8%), 40 of 100" in texts[1]
    assert "20.0%" in html and "13.3% to 28.9%" in html


def test_the_page_names_the_winner_once_chosen(template, now):
    campaign = campaign_tested(template, now)
    choose_winner(campaign, now)

    html = render_ab(campaign)

    assert "Winner: <strong>B</strong>" in html
    svg_of(html)


def test_the_page_shows_no_ab_section_without_a_test(template, now):
    campaign = sending_campaign(template, now, variants=())
    assert render_ab(campaign).strip() == ""


def test_the_page_sections_take_a_fixed_number_of_queries(template, now, django_assert_num_queries):
    campaign = campaign_tested(template, now, a=(5, 50), b=(9, 50), rest=10)
    renderer = DjangoTemplate("{% load campaign_results %}{% ab_results campaign %}{% campaign_health campaign %}")

    # the variants and their counts; the deliveries' figures
    with django_assert_num_queries(3):
        renderer.render(Context({"campaign": campaign}))
