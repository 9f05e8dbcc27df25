"""Concurrent ticks never run the same step twice (PostgreSQL: FOR UPDATE SKIP LOCKED)."""
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from campaigns import engine
from campaigns.actions import activate_journey
from campaigns.models import Enrollment, Journey, JourneyStep, JourneyStepVisit, StepKind

from contacts.models import Contact
from omni.testing import run_concurrently

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SKIP LOCKED claiming needs PostgreSQL; set DATABASE_URL to run it (SQLite serializes writers instead)",
)


@pytest.fixture
def due_enrollments(transactional_db):
    journey = Journey.objects.create(name="Drip", slug="drip", trigger_event="x")
    JourneyStep.objects.create(journey=journey, key="pause", position=1, kind=StepKind.WAIT, config={"seconds": 3600})
    activate_journey(journey)
    contacts = Contact.objects.bulk_create(Contact(external_id=f"c{i}") for i in range(1200))
    past = timezone.now() - timedelta(minutes=1)
    Enrollment.objects.bulk_create(
        Enrollment(journey=journey, journey_version=journey.live_version, contact=c, current_step_key="pause",
                   next_run_at=past)
        for c in contacts
    )
    return journey


@pytest.mark.postgres
@needs_postgres
def test_two_workers_ticking_at_once_run_each_due_step_exactly_once(due_enrollments):
    now = timezone.now()

    reports, errors = run_concurrently(lambda: engine.tick(now))

    assert not errors
    assert sum(r.steps for r in reports) == 1200
    assert JourneyStepVisit.objects.count() == 1200
    assert JourneyStepVisit.objects.values("enrollment_id", "visit_number").distinct().count() == 1200
    assert set(Enrollment.objects.values_list("steps_taken", flat=True)) == {1}


def test_a_step_already_advanced_is_not_claimed_again(due_enrollments):
    now = timezone.now()
    first = engine.tick(now)
    second = engine.tick(now)

    assert (first.steps, second.steps) == (1200, 0)
