"""OMNI_DEMO_TIME_SCALE shortens the waits the engine computes: a journey's wait, a wait for an
event and its timeout, a date's offset and a channel plan's fallback timer."""
from datetime import timedelta

import pytest

from campaigns.tests.conftest import make_journey
from campaigns.actions import activate_journey, enroll_contact
from campaigns.models import Enrollment, Journey, JourneyStep, StepKind
from campaigns.tick import tick
from channels.models import Delivery
from contacts.ingest import ingest_event

from .conftest import build_welcome_journey, make_contact

pytestmark = pytest.mark.django_db

DAY = 24 * 3600
SCALE = 1440


@pytest.fixture
def demo_clock(settings, eager_celery):
    settings.OMNI_DEMO_TIME_SCALE = SCALE


def test_a_wait_of_three_days_lasts_three_minutes_at_scale_1440(demo_clock, welcome_templates, now):
    # given a journey that emails, then waits three days
    journey = build_welcome_journey(*welcome_templates, wait_seconds=3 * DAY)
    enroll_contact(journey, make_contact("ann", email="ann@example.com", phone="+14155550199"), now=now)

    # when the tick sends the email and starts the wait
    tick(now)

    # then the wait ends three days / 1440 later: three minutes
    enrollment = Enrollment.objects.get()
    assert enrollment.current_step_key == "opened"
    assert enrollment.next_run_at == now + timedelta(minutes=3)
    tick(now + timedelta(minutes=3) - timedelta(seconds=1))
    assert Enrollment.objects.get().current_step_key == "opened"
    tick(now + timedelta(minutes=3))
    assert Enrollment.objects.get().current_step_key != "opened"


def test_at_real_time_the_same_wait_lasts_three_days(settings, eager_celery, welcome_templates, now):
    settings.OMNI_DEMO_TIME_SCALE = 1
    journey = build_welcome_journey(*welcome_templates, wait_seconds=3 * DAY)
    enroll_contact(journey, make_contact("ann", email="ann@example.com"), now=now)

    tick(now)

    assert Enrollment.objects.get().next_run_at == now + timedelta(days=3)


def one_step_journey(kind, config, **fields) -> Journey:
    journey = make_journey(name="Scaled", slug="scaled", trigger_event="booked", **fields)
    JourneyStep.objects.create(journey=journey, key="the-wait", position=1, kind=kind, config=config)
    JourneyStep.objects.create(journey=journey, key="done", position=2, kind=StepKind.EXIT)
    return activate_journey(journey)


def test_a_wait_for_an_event_times_out_scaled(demo_clock, now):
    journey = one_step_journey(StepKind.WAIT_EVENT, {"event": "paid", "timeout_seconds": 2 * DAY})
    enroll_contact(journey, make_contact("ann", email="ann@example.com"), now=now)

    tick(now)

    enrollment = Enrollment.objects.get()
    assert (enrollment.waiting_for, enrollment.next_run_at) == ("event:paid", now + timedelta(minutes=2))


def test_a_dates_offset_is_scaled_and_the_date_is_not(demo_clock, now):
    # given a wait until a day before the date the trigger event carries, 10 minutes ahead
    one_step_journey(StepKind.WAIT_DATE, {"property": "at", "offset_seconds": -DAY})
    starts = (now + timedelta(minutes=10)).replace(microsecond=0)
    ingest_event(contact=make_contact("ann", email="ann@example.com"), name="booked", occurred_at=now,
                 properties={"at": starts.isoformat()}, idempotency_key="booking-1", source="test")

    # when the tick enrolls the contact and runs the wait
    tick(now)

    # then it waits until a minute (a day / 1440) before the date itself
    assert Enrollment.objects.get().next_run_at == starts - timedelta(minutes=1)


def test_a_fallback_timer_is_scaled(demo_clock, welcome_templates, now):
    email, _ = welcome_templates
    journey = make_journey(name="Fallback", slug="fallback", trigger_event="signed_up")
    JourneyStep.objects.create(journey=journey, key="hello", position=1, kind=StepKind.SEND, template=email,
                               channel_plan=[{"channel": "email", "fallback_after_seconds": DAY},
                                             {"channel": "sms"}])
    enroll_contact(activate_journey(journey), make_contact("ann", email="ann@example.com", phone="+14155550199"),
                   now=now)

    tick(now)

    delivery = Delivery.objects.get()
    assert delivery.fallback_due_at == delivery.queued_at + timedelta(minutes=1)
