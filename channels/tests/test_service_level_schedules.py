"""The configured business hours read as Schedules for each channel's service level."""
from datetime import UTC, date, datetime, time, timedelta

import pytest

from channels.business_hours import ALWAYS_OPEN
from channels.inbound_settings import configured_schedules
from channels.models import END_OF_DAY, BusinessHours, Holiday, OpeningHours, ServiceLevel

pytestmark = pytest.mark.django_db


@pytest.fixture
def office_hours():
    hours = BusinessHours.objects.create(name="Office", timezone="Europe/London")
    OpeningHours.objects.bulk_create(
        [OpeningHours(business_hours=hours, weekday=day, opens=time(9), closes=time(17)) for day in range(5)]
        + [OpeningHours(business_hours=hours, weekday=5, opens=time(10), closes=END_OF_DAY)]
    )
    Holiday.objects.create(business_hours=hours, date=date(2026, 12, 25), name="Christmas")
    return hours


def test_a_channels_service_level_counts_in_its_business_hours(office_hours, django_assert_num_queries):
    ServiceLevel.objects.create(channel="sms", business_hours=office_hours, first_response_minutes=60)

    with django_assert_num_queries(3):
        schedule, level = configured_schedules(["sms"])["sms"]

    assert level.first_response_minutes == 60
    # Thursday 16:30: half an hour left, Christmas Friday closed, Saturday opens at 10:00.
    assert schedule.add_business_time(datetime(2026, 12, 24, 16, 30, tzinfo=UTC), timedelta(hours=1)) == \
        datetime(2026, 12, 26, 10, 30, tzinfo=UTC)
    # 23:59 closes at midnight.
    assert schedule.is_open(datetime(2026, 12, 26, 23, 59, 30, tzinfo=UTC))


def test_a_channel_without_service_level_runs_around_the_clock(django_assert_num_queries):
    with django_assert_num_queries(1):
        assert configured_schedules(["email"]) == {"email": (ALWAYS_OPEN, None)}


def test_business_hours_without_openings_say_so(office_hours):
    office_hours.openings.all().delete()

    with pytest.raises(ValueError):
        office_hours.schedule()


def test_a_channel_whose_business_hours_are_unusable_counts_no_due_times(office_hours):
    ServiceLevel.objects.create(channel="sms", business_hours=office_hours)
    ServiceLevel.objects.create(channel="whatsapp")
    office_hours.openings.all().delete()

    assert configured_schedules(["sms", "whatsapp"]) == {
        "sms": (None, None), "whatsapp": (ALWAYS_OPEN, ServiceLevel.objects.get(channel="whatsapp"))}
