"""Auto-pause: campaigns and journeys that pause themselves when their sends bounce, draw
complaints or opt-outs, fail, or go unengaged; the figures on the page; a person resumes."""
from datetime import timedelta

import pytest
from django.template import Context, Template as DjangoTemplate
from django.urls import reverse

from channels.models import EventType, MessageSource
from channels.provider_reports import record_delivery_event, record_inbound_message
from compliance import links
from omni.models import AuditEntry
from templates.models import TemplateVersion

from campaigns import auto_pause
from campaigns.actions import resume_journey
from campaigns.campaign_sending import resume_campaign
from campaigns.models import CampaignRecipient, CampaignStatus, Enrollment, JourneyStatus, JourneyStepVisit
from campaigns.tasks import watch_sends_task
from campaigns.tick import tick

from .results_helpers import make_contacts, send_test_share, sending_campaign, sent_messages


@pytest.fixture
def template(welcome_templates):
    return welcome_templates[0]


def report(deliveries, event_type, now, permanent=True):
    """The provider reports `event_type` on each delivery (the real report path)."""
    for delivery in deliveries:
        record_delivery_event("sandbox", f"{event_type}-{delivery.pk}", delivery.provider_message_id, event_type,
                              now, recipient=delivery.to_address, permanent=permanent)


def campaign_sent_to(template, now, count, *, prefix="c", channel="email", **fields):
    """A campaign without an A/B test, `count` sends out and one recipient due in 30 days (so
    the campaign is still sending, as auto-pause only watches campaigns that are)."""
    campaign = sending_campaign(template, now, variants=(("A", 100),), name=f"Campaign {prefix}", **fields)
    variant = campaign.variants.get()
    CampaignRecipient.objects.create(campaign=campaign, contact=make_contacts(f"{prefix}-later", 1)[0],
                                     variant=variant, send_at=now + timedelta(days=30))
    if channel == "email":
        return campaign, send_test_share(campaign, variant, make_contacts(prefix, count), now)
    deliveries = sent_messages(make_contacts(prefix, count, channel="sms"), template_version=variant.template_version,
                               channel="sms", sent_at=now, key=f"campaign:{campaign.pk}")
    CampaignRecipient.objects.bulk_create([
        CampaignRecipient(campaign=campaign, contact_id=d.contact_id, variant=variant, outcome="sent",
                          message_id=d.message_id) for d in deliveries])
    return campaign, deliveries


# --- campaigns -------------------------------------------------------------------------------

def test_a_campaign_pauses_itself_when_its_bounces_pass_the_limit_after_the_sample(template, now):
    # given 19 sends of the 20 the sample needs, 2 of them bounced (10% against the 5% limit)
    campaign, deliveries = campaign_sent_to(template, now, 19, auto_pause_min_sample=20, max_bounce_rate=0.05)
    report(deliveries[:2], EventType.BOUNCED, now)

    # then the watch leaves it sending: too few sends to tell
    assert auto_pause.watch_sends(now) == 0
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING

    # when the 20th send goes out
    variant = campaign.variants.get()
    send_test_share(campaign, variant, make_contacts("late", 1), now)
    later = now + timedelta(minutes=1)
    assert auto_pause.watch_sends(later) == 1

    # then it paused itself, saying which rate, its value and the limit
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED
    assert campaign.auto_paused_at == later
    assert campaign.paused_reason == "Bounce rate 10.0% passed the limit of 5.0% (2 of 20 sends)."
    entry = AuditEntry.objects.get(action="campaign.auto_paused")
    assert entry.object_id == str(campaign.pk)
    assert entry.data["rule"] == "max_bounce_rate" and entry.data["threshold"] == 0.05
    assert entry.data["rate"] == pytest.approx(0.1)
    assert entry.data["figures"]["sent"] == 20 and entry.data["figures"]["bounced"] == 2
    assert (entry.data["from"], entry.data["to"]) == ("sending", "paused")
    # and a paused campaign is not paused again
    assert auto_pause.watch_sends(later + timedelta(minutes=1)) == 0


def test_the_settings_limits_apply_where_the_campaign_sets_none(template, now, settings):
    settings.OMNI_AUTO_PAUSE = {**settings.OMNI_AUTO_PAUSE, "min_sample": 10, "max_complaint_rate": 0.05}
    campaign, deliveries = campaign_sent_to(template, now, 10)
    report(deliveries[:1], EventType.COMPLAINED, now)

    auto_pause.watch_sends(now)

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED
    assert campaign.paused_reason.startswith("Complaint rate 10.0% passed the limit of 5.0%")


def test_a_campaign_own_limit_wins_over_the_settings(template, now, settings):
    settings.OMNI_AUTO_PAUSE = {**settings.OMNI_AUTO_PAUSE, "min_sample": 10, "max_complaint_rate": 0.05}
    campaign, deliveries = campaign_sent_to(template, now, 10, max_complaint_rate=0.2)
    report(deliveries[:1], EventType.COMPLAINED, now)

    assert auto_pause.watch_sends(now) == 0


def test_unsubscribes_through_the_link_count_as_the_campaign_opt_outs(template, now, client):
    # given 10 sends, two unsubscribed through their own links, one through a link of another send
    campaign, deliveries = campaign_sent_to(template, now, 10, auto_pause_min_sample=10, max_opt_out_rate=0.15)
    _, others = campaign_sent_to(template, now, 1, prefix="other", auto_pause_min_sample=1000)
    for delivery in deliveries[:2] + others:
        token = links.unsubscribe_token(delivery.contact_id, delivery.pk, delivery.message_id)
        response = client.post(reverse("compliance:unsubscribe", args=[token]), {"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200

    # when
    auto_pause.watch_sends(now)

    # then 2 of 10 (20%) passed 15%
    campaign.refresh_from_db()
    assert campaign.paused_reason == "Opt-out rate 20.0% passed the limit of 15.0% (2 of 10 sends)."
    assert auto_pause.campaign_health(campaign, now).figures.opted_out == 2


def test_a_stop_reply_counts_as_the_opt_out_of_the_send_it_answers(template, now, keyword_lists):
    campaign, deliveries = campaign_sent_to(template, now, 10, prefix="sms", channel="sms",
                                            auto_pause_min_sample=10, max_opt_out_rate=0.05)

    inbound, _ = record_inbound_message("twilio", "SMstop1", "sms", deliveries[3].to_address, "+15005550006", "STOP")

    assert inbound.in_reply_to_id == deliveries[3].pk
    auto_pause.watch_sends(now)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED
    assert campaign.paused_reason.startswith("Opt-out rate 10.0%")


def test_failures_pause_a_campaign(template, now):
    campaign, deliveries = campaign_sent_to(template, now, 10, auto_pause_min_sample=10, max_failure_rate=0.2)
    report(deliveries[:3], EventType.FAILED, now)

    auto_pause.watch_sends(now)

    campaign.refresh_from_db()
    assert campaign.paused_reason == "Failure rate 30.0% passed the limit of 20.0% (3 of 10 sends)."


def test_engagement_under_the_floor_pauses_only_once_the_sends_had_time(template, now, settings):
    settings.OMNI_AUTO_PAUSE = {**settings.OMNI_AUTO_PAUSE, "engagement_after_hours": 24}
    campaign, deliveries = campaign_sent_to(template, now, 10, auto_pause_min_sample=10, min_engagement_rate=0.2)
    report(deliveries[:1], EventType.OPENED, now)

    # the sends are new: not yet judged
    assert auto_pause.watch_sends(now) == 0

    auto_pause.watch_sends(now + timedelta(hours=25))
    campaign.refresh_from_db()
    assert campaign.paused_reason == "Engagement rate 10.0% fell below the floor of 20.0% (1 of 10 sends)."


def test_a_healthy_campaign_keeps_sending(template, now):
    campaign, deliveries = campaign_sent_to(template, now, 40, auto_pause_min_sample=20)
    report(deliveries[:1], EventType.BOUNCED, now)
    report(deliveries[1:10], EventType.CLICKED, now)

    assert auto_pause.watch_sends(now) == 0
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING and campaign.paused_reason == ""


def test_a_resumed_campaign_is_judged_only_on_the_sends_made_after_the_resume(template, now):
    # given a campaign that paused itself: 2 of its 20 sends bounced (10% against 5%)
    campaign, old = campaign_sent_to(template, now, 20, auto_pause_min_sample=20, max_bounce_rate=0.05)
    report(old[:2], EventType.BOUNCED, now)
    assert auto_pause.watch_sends(now) == 1

    # when a person resumes it, and more of the old sends' bounces come in afterwards
    resume_campaign(campaign, actor=None)
    resumed_at = campaign.watched_since
    later = resumed_at + timedelta(minutes=1)
    report(old[2:5], EventType.BOUNCED, later)

    # then the next watch leaves it sending: nothing was sent since the resume
    assert auto_pause.watch_sends(later) == 0
    campaign.refresh_from_db()
    assert (campaign.status, campaign.watched_since) == (CampaignStatus.SENDING, resumed_at)
    assert AuditEntry.objects.get(action="campaign.resumed").data["watched_since"] == resumed_at.isoformat()
    # and its page counts from the resume, not from the start
    html = render_health("campaign_health", campaign)
    assert "0 sends went out since it was resumed" in html and "The limits apply from 20 sends." in html
    assert 'data-auto-paused="no"' in html

    # when 19 new sends go out, 2 of them bounced: too few to tell, whatever the old ones did
    variant = campaign.variants.get()
    new = send_test_share(campaign, variant, make_contacts("after", 19), later)
    report(new[:2], EventType.BOUNCED, later)
    assert auto_pause.watch_sends(later) == 0

    # when the 20th new send goes out, the new sends alone breach the limit again
    send_test_share(campaign, variant, make_contacts("after-late", 1), later)
    assert auto_pause.watch_sends(later + timedelta(minutes=1)) == 1
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED
    assert campaign.paused_reason == "Bounce rate 10.0% passed the limit of 5.0% (2 of 20 sends)."


def test_watching_every_running_campaign_and_journey_takes_three_queries(template, now, welcome_journey,
                                                                       django_assert_num_queries):
    for prefix in ("x", "y", "z"):
        campaign_sent_to(template, now, 5, prefix=prefix)
    journey_sends(welcome_journey, make_contacts("j", 5), now)

    with django_assert_num_queries(3):
        auto_pause.watch_sends(now)


# --- journeys --------------------------------------------------------------------------------

def journey_sends(journey, contacts, sent_at):
    """Each contact enrolled in `journey` and sent its first step's message."""
    version = TemplateVersion.objects.filter(template__key="welcome-email").order_by("-number").first()
    deliveries = sent_messages(contacts, source=MessageSource.JOURNEY, sent_at=sent_at, template_version=version,
                               key=f"journey:{journey.pk}:{sent_at.timestamp()}")
    for delivery in deliveries:
        enrollment = Enrollment.objects.create(journey=journey, contact_id=delivery.contact_id,
                                               journey_version=journey.live_version, current_step_key="wait")
        JourneyStepVisit.objects.create(enrollment=enrollment, journey=journey, journey_version=journey.live_version,
                                        step_key="welcome-email", step_kind="send", visit_number=1,
                                        message_id=delivery.message_id, visited_at=sent_at)
    return deliveries


def test_a_journey_pauses_itself_over_its_recent_sends_and_resuming_clears_the_reason(welcome_journey, now,
                                                                                      settings):
    settings.OMNI_AUTO_PAUSE = {**settings.OMNI_AUTO_PAUSE, "min_sample": 10, "max_bounce_rate": 0.05,
                                "journey_window_hours": 24}
    # given old sends, all bounced, outside the window, and 10 recent sends with one bounce (10%)
    old = journey_sends(welcome_journey, make_contacts("old", 10), now - timedelta(hours=30))
    report(old, EventType.BOUNCED, now - timedelta(hours=29))
    recent = journey_sends(welcome_journey, make_contacts("new", 9), now)
    report(recent[:1], EventType.BOUNCED, now)

    # then 9 recent sends are too few, whatever the old ones did
    assert auto_pause.watch_sends(now) == 0
    welcome_journey.refresh_from_db()
    assert welcome_journey.status == JourneyStatus.ACTIVE

    # when the 10th goes out
    journey_sends(welcome_journey, make_contacts("newer", 1), now)
    assert auto_pause.watch_sends(now) == 1

    # then it paused itself with the figures
    welcome_journey.refresh_from_db()
    assert welcome_journey.status == JourneyStatus.PAUSED
    assert welcome_journey.paused_reason == "Bounce rate 10.0% passed the limit of 5.0% (1 of 10 sends)."
    entry = AuditEntry.objects.get(action="journey.auto_paused")
    assert entry.object_id == str(welcome_journey.pk)
    assert entry.data["figures"]["sent"] == 10 and entry.data["window_hours"] == 24
    html = render_health("journey_health", welcome_journey)
    assert "This journey paused itself" in html and "1 of 10" in html

    # and a person resumes it, which clears the reason
    resume_journey(welcome_journey)
    welcome_journey.refresh_from_db()
    assert (welcome_journey.status, welcome_journey.paused_reason) == (JourneyStatus.ACTIVE, "")


def test_a_resumed_journey_is_judged_only_on_the_sends_made_after_the_resume(welcome_journey, now, settings):
    settings.OMNI_AUTO_PAUSE = {**settings.OMNI_AUTO_PAUSE, "min_sample": 10, "max_bounce_rate": 0.05,
                                "journey_window_hours": 24}
    # given a journey that paused itself: 1 of its 10 recent sends bounced (10% against 5%)
    old = journey_sends(welcome_journey, make_contacts("old", 10), now)
    report(old[:1], EventType.BOUNCED, now)
    assert auto_pause.watch_sends(now) == 1

    # when a person resumes it
    resume_journey(welcome_journey)
    resumed_at = welcome_journey.watched_since
    later = resumed_at + timedelta(minutes=1)

    # then the next watch leaves it active, though the old sends are still in its window
    assert auto_pause.watch_sends(later) == 0
    welcome_journey.refresh_from_db()
    assert (welcome_journey.status, welcome_journey.watched_since) == (JourneyStatus.ACTIVE, resumed_at)
    assert AuditEntry.objects.get(action="journey.resumed").data["watched_since"] == resumed_at.isoformat()
    html = render_health("journey_health", welcome_journey)
    assert "0 sends went out since it was resumed" in html

    # when 9 new sends go out, one bounced: too few to tell (with the old ones they would be 19)
    new = journey_sends(welcome_journey, make_contacts("new", 9), later)
    report(new[:1], EventType.BOUNCED, later)
    assert auto_pause.watch_sends(later) == 0

    # when the 10th new send goes out, the new sends alone breach the limit again
    journey_sends(welcome_journey, make_contacts("newer", 1), later)
    assert auto_pause.watch_sends(later) == 1
    welcome_journey.refresh_from_db()
    assert welcome_journey.status == JourneyStatus.PAUSED
    assert welcome_journey.paused_reason == "Bounce rate 10.0% passed the limit of 5.0% (1 of 10 sends)."


# --- the page's Health section ---------------------------------------------------------------

def render_health(tag, subject) -> str:
    return DjangoTemplate("{% load campaign_results %}{% " + tag + " subject %}").render(Context({"subject": subject}))


def test_the_health_section_shows_the_figures_the_limits_and_the_reason(template, now):
    campaign, deliveries = campaign_sent_to(template, now, 20, auto_pause_min_sample=20, max_bounce_rate=0.05)
    report(deliveries[:2], EventType.BOUNCED, now)
    auto_pause.watch_sends(now)
    campaign.refresh_from_db()

    html = render_health("campaign_health", campaign)

    assert 'data-auto-paused="yes"' in html
    assert "This campaign paused itself" in html and campaign.paused_reason in html
    assert 'data-rule="max_bounce_rate" data-breached="yes"' in html
    assert "2 of 20" in html and "10.0%" in html and "above 5.0%" in html
    assert 'data-rule="min_engagement_rate" data-breached="no"' in html and "not watched" in html


def test_the_health_section_escapes_the_reason_and_tells_a_person_pause_apart(template, now):
    campaign, _ = campaign_sent_to(template, now, 1)
    campaign.paused_reason = "<b>odd</b>"

    html = render_health("campaign_health", campaign)

    assert "<b>odd</b>" not in html and "Paused: &lt;b&gt;odd&lt;/b&gt;" in html
    assert 'data-auto-paused="no"' in html and "paused itself" not in html


def test_the_journey_page_shows_why_it_paused_itself(admin_client, welcome_journey):
    from campaigns.actions import pause_journey

    pause_journey(welcome_journey, reason="Bounce rate 9.0% passed the limit of 5.0% (18 of 200 sends).",
                  action="journey.auto_paused")

    response = admin_client.get(reverse("admin:campaigns_journey_change", args=[welcome_journey.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="journey-health"' in page and 'data-auto-paused="yes"' in page
    assert "Bounce rate 9.0% passed the limit of 5.0% (18 of 200 sends). Look into it, then resume it." in page
    assert "This journey paused itself" in page


def test_auto_pause_runs_on_its_own_beat_entry_not_in_every_tick(template, now, settings, eager_celery):
    # given a campaign past its bounce limit
    campaign, deliveries = campaign_sent_to(template, now, 10, auto_pause_min_sample=10, max_bounce_rate=0.05)
    report(deliveries[:2], EventType.BOUNCED, now)

    # the tick claims due work only: it leaves the campaign sending
    tick(now)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING

    # the beat's own entry, every OMNI_AUTO_PAUSE_SECONDS, pauses it
    entry = settings.CELERY_BEAT_SCHEDULE["omni-auto-pause"]
    assert (entry["task"], entry["schedule"]) == ("campaigns.tasks.watch_sends_task", settings.OMNI_AUTO_PAUSE_SECONDS)
    assert watch_sends_task.delay().get() == 1
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED
