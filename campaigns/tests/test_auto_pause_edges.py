"""Edges of auto-pause and of the throttle: a journey's engagement floor with the default windows,
and send times spread so that no rolling minute holds more than the throttle."""
from datetime import UTC, datetime, timedelta

import pytest

from campaigns import auto_pause
from campaigns.campaign_start import start_campaign
from campaigns.models import JourneyStatus, LocalTimePassed
from contacts.models import Segment

from .conftest import make_contact
from .results_helpers import make_contacts
from .test_auto_pause import journey_sends
from .test_campaign_start import make_campaign

pytestmark = pytest.mark.django_db


def test_a_journey_nobody_engages_with_falls_below_its_floor(welcome_journey, now, settings):
    # given the default windows (engagement judged after 24 hours, a journey watched over 24 hours)
    # and a floor of 10%: 10 sends of 25 hours ago and 10 of 23 hours ago, none engaged with
    settings.OMNI_AUTO_PAUSE = {**settings.OMNI_AUTO_PAUSE, "min_sample": 10, "min_engagement_rate": 0.1,
                                "journey_window_hours": 24, "engagement_after_hours": 24}
    journey_sends(welcome_journey, make_contacts("day-old", 10), now - timedelta(hours=25))
    journey_sends(welcome_journey, make_contacts("recent", 10), now - timedelta(hours=23))

    # when the watch runs
    paused = auto_pause.watch_sends(now)

    # then the journey paused itself for its engagement
    welcome_journey.refresh_from_db()
    assert (paused, welcome_journey.status) == (1, JourneyStatus.PAUSED)
    assert welcome_journey.paused_reason.startswith("Engagement rate 0.0% fell below the floor of 10.0%")


def test_the_throttle_holds_in_every_rolling_minute(welcome_templates, settings):
    # given a campaign at 09:00 on each contact's clock, 2 a minute, started at 08:59:30 UTC: two
    # contacts in Tokyo, past their 09:00, go at once, two in UTC at 09:00:00, 30 seconds later
    settings.TIME_ZONE = "UTC"
    now = datetime(2026, 6, 15, 8, 59, 30, tzinfo=UTC)
    for n in range(2):
        make_contact(f"tokyo{n}", email=f"tokyo{n}@example.com", timezone="Asia/Tokyo")
        make_contact(f"utc{n}", email=f"utc{n}@example.com", timezone="UTC")
    campaign = make_campaign(welcome_templates[0], Segment.objects.create(name="Everyone", definition={}),
                             send_in_local_time=True, scheduled_at=datetime(2026, 6, 15, 9, 0, tzinfo=UTC),
                             local_time_passed=LocalTimePassed.SEND_NOW, throttle_per_minute=2)

    # when it starts
    start_campaign(campaign, actor=None, now=now)

    # then no minute, wherever it begins, holds more than 2 sends
    times = sorted(campaign.recipients.values_list("send_at", flat=True))
    assert len(times) == 4
    assert all(sum(start <= t < start + timedelta(minutes=1) for t in times) <= 2 for start in times)
