"""Edges of journeys a marketer relies on, through the real tick: a goal reached in the same batch
as the trigger or while the journey is paused, a date wait on an API enrollment's properties, and
a booking without its date next to one with it."""
from datetime import UTC, datetime, timedelta

import pytest

from campaigns.actions import enroll_contact_once, pause_journey, resume_journey
from campaigns.models import Enrollment, EnrollmentState, StepKind, TriggerType
from campaigns.tick import tick
from channels.models import Message
from contacts.models import ContactEvent

from .conftest import make_contact
from .test_step_kinds import EXIT, OTHER_EXIT, build_journey
from .test_triggers import build_journey as build_trigger_journey, event as booked

pytestmark = pytest.mark.django_db


def event(contact, name, occurred_at, **properties):
    return ContactEvent.objects.create(contact=contact, name=name, properties=properties, occurred_at=occurred_at,
                                       idempotency_key=f"{name}-{contact.external_id}-{occurred_at.isoformat()}",
                                       source="test")


def test_a_goal_reached_after_the_trigger_in_the_same_batch_converts_the_new_enrollment(welcome_journey, now):
    ann = make_contact("ann", email="ann@example.com", phone="+14155550101")
    # given: she signed up, then bought, and both events arrive before the tick looks
    event(ann, "signed_up", now - timedelta(seconds=30))
    event(ann, "purchased", now - timedelta(seconds=10))

    tick(now)

    enrollment = Enrollment.objects.get(contact=ann)
    assert (enrollment.state, enrollment.end_reason) == (EnrollmentState.CONVERTED, "goal:purchased")
    assert not Message.objects.filter(contact=ann).exists()


def test_a_goal_reached_before_the_trigger_in_the_same_batch_does_not_convert(welcome_journey, now):
    ann = make_contact("ann", email="ann@example.com", phone="+14155550101")
    event(ann, "purchased", now - timedelta(seconds=30))
    event(ann, "signed_up", now - timedelta(seconds=10))

    tick(now)

    enrollment = Enrollment.objects.get(contact=ann)
    assert enrollment.state == EnrollmentState.ACTIVE
    assert Message.objects.filter(contact=ann).count() == 1


def test_a_goal_reached_while_the_journey_is_paused_converts_and_nothing_more_is_sent(welcome_journey, now):
    ann = make_contact("ann", email="ann@example.com", phone="+14155550101")
    event(ann, "signed_up", now - timedelta(seconds=1))
    tick(now)
    pause_journey(welcome_journey)

    # when: she buys while the journey is paused, and it is resumed after the wait ran out
    event(ann, "purchased", now + timedelta(seconds=10))
    tick(now + timedelta(seconds=20))
    resume_journey(welcome_journey)
    tick(now + timedelta(seconds=120))

    enrollment = Enrollment.objects.get(contact=ann)
    assert (enrollment.state, enrollment.end_reason) == (EnrollmentState.CONVERTED, "goal:purchased")
    assert Message.objects.filter(contact=ann).count() == 1


def test_wait_date_reads_a_property_the_api_request_enrolled_the_contact_with():
    journey = build_journey(
        ("day-before", StepKind.WAIT_DATE, {"config": {"property": "appointment_at", "offset_seconds": -86400},
                                            "else": "other"}),
        EXIT, OTHER_EXIT, slug="api-reminder", trigger_type=TriggerType.API)
    ann = make_contact("ann", email="ann@example.com")
    # given: the booking system enrolls her through the API with the appointment's time
    enrollment, _ = enroll_contact_once(journey, ann, idempotency_key="booking-1",
                                        properties={"appointment_at": "2030-05-10T15:30:00Z"})

    tick(enrollment.next_run_at)

    enrollment.refresh_from_db()
    assert enrollment.next_run_at == datetime(2030, 5, 9, 15, 30, tzinfo=UTC)
    assert (enrollment.state, enrollment.current_step_key) == (EnrollmentState.ACTIVE, "done")


def test_a_booking_without_its_date_does_not_hide_a_dated_one_of_the_same_contact_in_the_batch(now):
    # given a reminder journey on the booking's date, and two bookings of Ann in one batch: the
    # first without the date, the second with it
    build_trigger_journey(slug="reminder", trigger_event="appointment.booked", trigger_date_property="appointment_at")
    ann = make_contact("ann")
    booked(ann, "appointment.booked", occurred_at=now - timedelta(seconds=20))
    dated = booked(ann, "appointment.booked", occurred_at=now - timedelta(seconds=10),
                   appointment_at=(now + timedelta(days=3)).isoformat())

    tick(now)

    enrollment = Enrollment.objects.get(contact=ann)
    assert enrollment.trigger_event_id == dated.pk
    assert enrollment.next_run_at == now + timedelta(days=3)


def test_what_the_journey_still_held_for_a_contact_who_reached_its_goal_is_cancelled(welcome_journey):
    from datetime import time

    from compliance.models import QuietHours

    # given quiet nights: Ann signs up at 23:00 on her phone's clock, her welcome waits for morning
    QuietHours.objects.create(name="Nights", start=time(21), end=time(8))
    night = datetime(2026, 6, 2, 6, tzinfo=UTC)  # 23:00 in Los Angeles
    ann = make_contact("ann", email="ann@example.com", phone="+14155550101")
    event(ann, "signed_up", night - timedelta(seconds=10))
    tick(night)
    held = Message.objects.get(contact=ann)
    assert held.status == "deferred"

    # when she buys before it goes out
    event(ann, "purchased", night + timedelta(seconds=10))
    tick(night + timedelta(seconds=20))

    # then the welcome that still asks her to buy is cancelled, and not sent in the morning
    held.refresh_from_db()
    assert (held.status, held.status_reason) == ("cancelled", "journey_converted")
    tick(night + timedelta(hours=12))
    held.refresh_from_db()
    assert held.status == "cancelled" and not held.deliveries.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_goal_reached_while_a_worker_ends_the_enrollment_leaves_the_workers_end_standing(welcome_templates):
    from django.utils import timezone

    from campaigns import enrollment_state
    from campaigns.tests.conftest import build_welcome_journey
    from omni.models import AuditEntry

    from .test_ab_test_edges import while_holding

    # given a contact enrolled in a journey whose goal is a purchase
    build_welcome_journey(*welcome_templates, goal_event="purchased")
    now = timezone.now()
    ann = make_contact("ann", email="ann@example.com", phone="+14155550101")
    event(ann, "signed_up", now - timedelta(seconds=5))
    tick(now)
    enrollment = Enrollment.objects.get(contact=ann)
    event(ann, "purchased", now + timedelta(seconds=1))

    def worker_ends_it():
        # a worker running her last step holds her enrollment and completes it
        locked = Enrollment.objects.select_for_update().get(pk=enrollment.pk)
        entry = enrollment_state.end(locked, EnrollmentState.COMPLETED, "done", now)
        enrollment_state.save([locked], [entry])

    # when the tick's events stage reads her purchase meanwhile
    errors = while_holding(lambda: Enrollment.objects.select_for_update().get(pk=enrollment.pk), worker_ends_it,
                           lambda: tick(now + timedelta(seconds=2)))

    # then the worker's end stands: the tick waited for it and found nothing live to convert
    assert not errors
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.end_reason) == (EnrollmentState.COMPLETED, "done")
    assert not AuditEntry.objects.filter(action="journey.converted").exists()
