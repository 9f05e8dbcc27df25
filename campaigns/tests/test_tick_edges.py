"""Edges of the tick's claims, hand-offs and quarantine."""
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse

from campaigns import advancing
from campaigns.actions import activate_journey
from campaigns.models import Enrollment, EnrollmentState, JourneyStep, JourneyStepVisit, JourneyVersion, StepKind
from campaigns.tick import tick
from contacts.models import Contact, ContactEvent

from .conftest import make_journey

pytestmark = pytest.mark.django_db


@pytest.fixture
def drip():
    """An active journey whose one step waits an hour, and a version of it whose wait cannot run."""
    journey = make_journey(name="Drip", slug="drip", trigger_event="x")
    JourneyStep.objects.create(journey=journey, key="pause", position=1, kind=StepKind.WAIT, config={"seconds": 3600})
    activate_journey(journey)
    good = journey.live_version
    broken = JourneyVersion.objects.create(
        journey=journey, number=good.number + 1, trigger_type=good.trigger_type, reentry=good.reentry,
        steps=[{**step, "config": {"seconds": "tomorrow"}} for step in good.steps],
    )
    return journey, good, broken


def test_an_enrollment_quarantined_by_a_worker_and_retried_in_the_admin_is_claimed_by_the_next_tick(
    admin_client, drip, now,
):
    # given a due enrollment pinned to a version whose step cannot run
    journey, good, broken = drip
    enrollment = Enrollment.objects.create(journey=journey, journey_version=broken,
                                           contact=Contact.objects.create(external_id="ann"),
                                           current_step_key="pause", next_run_at=now - timedelta(minutes=1))
    # and the beat's tick hands it to a worker, which quarantines it
    handed = []
    assert tick(now, hand_off_to=handed.extend).handed_off == 1
    advancing.run_claimed_enrollments([enrollment.pk], now)
    enrollment.refresh_from_db()
    assert enrollment.quarantined_at == now

    # when an operator fixes it and retries it from the admin
    Enrollment.objects.filter(pk=enrollment.pk).update(journey_version=good)
    admin_client.post(reverse("admin:campaigns_enrollment_changelist"),
                      {"action": "retry_quarantined", "_selected_action": [enrollment.pk]})

    # then the next tick claims it and a worker runs it, as the admin promised
    later = now + timedelta(seconds=10)
    assert tick(later, hand_off_to=handed.extend).handed_off == 1
    assert advancing.run_claimed_enrollments([enrollment.pk], later) == 1
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.quarantined_at, enrollment.claimed_at) == (EnrollmentState.ACTIVE, None, None)
    assert JourneyStepVisit.objects.filter(enrollment=enrollment).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_stage_that_fails_is_logged_and_named_and_the_stages_after_it_still_run(drip, now, caplog):
    # given a due enrollment, for the enrollments stage that comes after the events stage
    journey, good, _ = drip
    Enrollment.objects.create(journey=journey, journey_version=good, contact=Contact.objects.create(external_id="ann"),
                              current_step_key="pause", next_run_at=now - timedelta(minutes=1))
    # and the events stage's table gone from under it (as a lost connection or a deadlock would fail it)
    table = connection.ops.quote_name(ContactEvent._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO omni_events_away")
    try:
        # when the tick runs
        handed = []
        report = tick(now, hand_off_to=handed.extend)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE omni_events_away RENAME TO {table}")

    # then the failed stage is named and logged with its error, and the enrollments stage ran
    assert report.failed == ["events"]
    assert "The tick's events stage failed" in caplog.text
    assert report.handed_off == 1
