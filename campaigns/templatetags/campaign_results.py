"""The campaign page's A/B test and Health sections (campaigns/ab_test.py, campaigns/auto_pause.py),
and the journey page's auto-pause section."""
from django import template
from django.conf import settings

from campaigns import ab_test, auto_pause
from campaigns.results_chart import draw_rates

register = template.Library()


@register.inclusion_tag("campaigns/campaign_page/ab_results.html")
def ab_results(campaign):
    """Each variant's rate with its 95% interval (chart and table), the metric, the test's end,
    and the winner or "no winner yet". Nothing for a campaign without two variants."""
    if campaign is None or campaign.pk is None:
        return {"shown": False}
    results = ab_test.variant_results(campaign)
    if len(results) < 2:
        return {"shown": False}
    winner_id = campaign.winner_id
    return {
        "shown": True,
        "campaign": campaign,
        "results": results,
        "winner": next((r.variant for r in results if r.variant.pk == winner_id), None),
        "decided": campaign.winner_chosen_at is not None,
        "chart": draw_rates(results, dom_id=f"ab-chart-{campaign.pk}", winner_id=winner_id,
                            title=f"{campaign.get_test_metric_display()} rate of each variant, with its 95% interval"),
    }


@register.inclusion_tag("campaigns/campaign_page/health.html")
def campaign_health(campaign):
    """The rates auto-pause watches with their limits, and why the campaign paused itself."""
    if campaign is None or campaign.pk is None:
        return {"shown": False}
    return {"shown": True, "health": auto_pause.campaign_health(campaign), "subject": "campaign",
            "dom_id": "campaign-health"}


@register.inclusion_tag("campaigns/campaign_page/health.html")
def journey_health(journey):
    """The journey's watched rates over its recent sends, and why it paused itself."""
    if journey is None or journey.pk is None:
        return {"shown": False}
    return {"shown": True, "health": auto_pause.journey_health(journey), "subject": "journey",
            "dom_id": "journey-health", "window_hours": settings.OMNI_AUTO_PAUSE["journey_window_hours"]}
