"""Two ticks at once over every new kind of step never run a step twice (PostgreSQL: FOR UPDATE
SKIP LOCKED on the enrollments, and the wake locking the enrollments it wakes)."""
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from campaigns.actions import activate_journey
from campaigns.models import Enrollment, EnrollmentState, JourneyStep, JourneyStepVisit, StepKind
from campaigns.tick import tick
from contacts.models import Contact, ContactEvent
from omni.models import AuditEntry
from omni.tests.fakes import run_concurrently

from .conftest import make_journey

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SKIP LOCKED claiming needs PostgreSQL; set DATABASE_URL to run it (SQLite serializes writers instead)",
)
# More than one batch (advancing.ENROLLMENT_BATCH), so both workers claim some.
CONTACTS = 1500


@pytest.fixture
def due_at_a_split(transactional_db):
    """CONTACTS contacts due at a split: path A sets an attribute then waits for an event, path B
    waits until 09:00 on their clock."""
    journey = make_journey(name="Race", slug="race", trigger_event="x")
    split = JourneyStep.objects.create(journey=journey, key="ab", position=1, kind=StepKind.SPLIT, config={
        "paths": [{"name": "A", "weight": 1, "step": "tag"}, {"name": "B", "weight": 1, "step": "morning"}]})
    tag = JourneyStep.objects.create(journey=journey, key="tag", position=2, kind=StepKind.UPDATE,
                                     config={"attribute": "raced", "value": True})
    JourneyStep.objects.create(journey=journey, key="await", position=3, kind=StepKind.WAIT_EVENT,
                               config={"event": "came_back", "timeout_seconds": 86400})
    done = JourneyStep.objects.create(journey=journey, key="done", position=4, kind=StepKind.EXIT)
    JourneyStep.objects.create(journey=journey, key="morning", position=5, kind=StepKind.WAIT_UNTIL,
                               config={"time": "09:00"}, next_step=done)
    assert split and tag
    activate_journey(journey)
    contacts = Contact.objects.bulk_create(Contact(external_id=f"c{i}") for i in range(CONTACTS))
    past = timezone.now() - timedelta(minutes=1)
    Enrollment.objects.bulk_create(
        Enrollment(journey=journey, journey_version=journey.live_version, contact=c, current_step_key="ab",
                   next_run_at=past, entered_at=past)
        for c in contacts
    )
    return journey


def assert_each_visit_once():
    assert not (JourneyStepVisit.objects.values("enrollment_id", "visit_number").order_by()
                .annotate(n=Count("id")).filter(n__gt=1).exists())
    assert not (JourneyStepVisit.objects.values("enrollment_id", "step_key").order_by()
                .annotate(n=Count("id")).filter(n__gt=1).exists())


@pytest.mark.postgres
@needs_postgres
def test_two_ticks_at_once_run_each_split_update_and_wait_once_and_wake_each_waiting_contact_once(due_at_a_split):
    # when two workers tick at once over the due contacts
    now = timezone.now()
    reports, errors = run_concurrently(lambda: tick(now))

    # then each ran its split and its next step once: A updated and waits for the event, B waits for 09:00
    assert not errors
    assert_each_visit_once()
    path_a = set(JourneyStepVisit.objects.filter(step_key="ab", outcome="split:A").values_list("enrollment_id", flat=True))
    assert JourneyStepVisit.objects.filter(step_key="ab").count() == CONTACTS and 600 < len(path_a) < 900
    assert sum(r.steps for r in reports) == JourneyStepVisit.objects.count() == 2 * CONTACTS
    assert AuditEntry.objects.filter(action="contact.updated").count() == len(path_a)
    waiting = Enrollment.objects.filter(waiting_for="event:came_back")
    assert set(waiting.values_list("pk", flat=True)) == path_a

    # when every waiting contact comes back and two workers tick at once again
    ContactEvent.objects.bulk_create(
        ContactEvent(contact_id=contact_id, name="came_back", idempotency_key=f"back-{contact_id}", source="test")
        for contact_id in waiting.values_list("contact_id", flat=True))
    reports, errors = run_concurrently(lambda: tick(now + timedelta(seconds=1)))

    # then each was woken once and ran its wait's end and its exit once
    assert not errors
    assert sum(r.woken for r in reports) == len(path_a)
    assert_each_visit_once()
    ended = Enrollment.objects.filter(pk__in=path_a)
    assert set(ended.values_list("state", "end_reason")) == {(EnrollmentState.EXITED, "exit:done")}
    assert JourneyStepVisit.objects.filter(step_key="await", outcome="event:came_back").count() == len(path_a)
