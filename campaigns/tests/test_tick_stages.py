"""Every stage of the tick runs in every tick: a backlog in one stage stops at its budget, and a
broker that is down while due enrollments are handed off costs the tick nothing but that batch."""
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import advancing, enrolling
from campaigns.models import Enrollment, JourneyStep, StepKind
from campaigns.actions import activate_journey
from campaigns.tasks import hand_off_enrollments
from campaigns.tick import tick
from channels import routing
from contacts.models import Contact, ContactEvent
from omni.tests.fakes import unreachable_broker
from templates.actions import current_version

from .conftest import make_contact, make_journey

pytestmark = pytest.mark.django_db


@pytest.fixture
def fallback_due(welcome_templates, now):
    """A message whose email stayed silent past its window: its fallback to SMS is due at `now`."""
    email_template, _ = welcome_templates
    ann = make_contact("ann", email="ann@example.com", phone="+14155550101")
    message, _ = routing.create_message(
        contact=ann, template_version=current_version(email_template), source="api",
        channel_plan=[{"channel": "email", "fallback_after_seconds": 60}, {"channel": "sms"}],
    )
    routing.dispatch(message, now=now - timedelta(seconds=60))
    return message


def test_an_event_backlog_does_not_starve_the_fallback_timers(fallback_due, now, settings, monkeypatch):
    # given more unprocessed events than the event stage may take in one tick
    settings.OMNI_TICK_STAGE_SECONDS = 0  # one batch per stage
    monkeypatch.setattr(enrolling, "EVENT_BATCH", 2)
    bob = Contact.objects.create(external_id="bob")
    for n in range(5):
        ContactEvent.objects.create(contact=bob, name="page.viewed", idempotency_key=f"view-{n}", source="test")

    # when the tick runs once
    report = tick(now)

    # then the fallback fired in this tick, and the events wait for the next ones
    assert report.fallbacks == 1
    assert list(fallback_due.deliveries.order_by("pk").values_list("channel", flat=True)) == ["email", "sms"]
    assert report.events == 2 and report.backlogged == ["events"]
    assert ContactEvent.objects.filter(processed_at__isnull=True).count() == 3

    # and the next ticks go on with the backlog until it is drained
    assert tick(now).events == 2
    last = tick(now)
    assert (last.events, last.backlogged) == (1, [])


@pytest.fixture
def due_enrollment(transactional_db):
    journey = make_journey(name="Drip", slug="drip", trigger_event="x")
    JourneyStep.objects.create(journey=journey, key="pause", position=1, kind=StepKind.WAIT, config={"seconds": 3600})
    activate_journey(journey)
    contact = Contact.objects.create(external_id="c1")
    return Enrollment.objects.create(journey=journey, journey_version=journey.live_version, contact=contact,
                                     current_step_key="pause", next_run_at=timezone.now() - timedelta(minutes=1))


def test_a_broker_outage_during_the_hand_off_leaves_the_later_stages_running(due_enrollment, fallback_due, now):
    # when the beat's tick hands off due enrollments while the broker is down
    with unreachable_broker():
        report = tick(now, hand_off_to=hand_off_enrollments)

    # then the tick returns, its claim stands, and the stages after it ran
    assert report.handed_off == 1
    assert report.fallbacks == 1
    due_enrollment.refresh_from_db()
    assert due_enrollment.claimed_at == now

    # and the batch is claimed again once its lease ends
    later = now + advancing.ENROLLMENT_LEASE + timedelta(seconds=1)
    with unreachable_broker():
        assert tick(later, hand_off_to=hand_off_enrollments).handed_off == 1
