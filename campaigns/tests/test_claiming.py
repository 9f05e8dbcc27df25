"""Concurrent ticks never run the same step twice (PostgreSQL: FOR UPDATE SKIP LOCKED)."""
import math
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

import campaigns.tasks  # noqa: F401  (registers run_enrollments_task before a test's worker starts)
from campaigns import advancing, tick_report
from campaigns.actions import activate_journey
from campaigns.models import Enrollment, JourneyStep, JourneyStepVisit, StepKind
from campaigns.tasks import hand_off_enrollments
from campaigns.tick import tick
from contacts.models import Contact
from omni.tests.fakes import purge_queues, run_concurrently

from .conftest import make_journey

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SKIP LOCKED claiming needs PostgreSQL; set DATABASE_URL to run it (SQLite serializes writers instead)",
)


@pytest.fixture
def due_enrollments(transactional_db):
    journey = make_journey(name="Drip", slug="drip", trigger_event="x")
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

    reports, errors = run_concurrently(lambda: tick(now))

    assert not errors
    assert sum(r.steps for r in reports) == 1200
    assert JourneyStepVisit.objects.count() == 1200
    assert JourneyStepVisit.objects.values("enrollment_id", "visit_number").distinct().count() == 1200
    assert set(Enrollment.objects.values_list("steps_taken", flat=True)) == {1}


def test_a_step_already_advanced_is_not_claimed_again(due_enrollments, settings):
    # The whole stage in one tick however slow the machine: the time budget is not under test.
    settings.OMNI_TICK_STAGE_SECONDS = 600
    now = timezone.now()
    first = tick(now)
    second = tick(now)

    assert (first.steps, second.steps) == (1200, 0)


def _handed_off_batches(django_capture_on_commit_callbacks, now) -> tuple[tick_report.TickReport, list[list[int]]]:
    """The beat's tick at `now`, and the id batches it handed to run_enrollments_task (not run)."""
    from celery.signals import before_task_publish

    batches = []

    def keep(sender=None, body=None, **kwargs):
        if sender == "campaigns.tasks.run_enrollments_task":
            batches.append(body[0][0])

    before_task_publish.connect(keep, weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            report = tick(now, hand_off_to=hand_off_enrollments)
    finally:
        before_task_publish.disconnect(keep)
        purge_queues()  # no later test's worker picks these up
    return report, batches


def test_the_beat_tick_only_claims_and_hands_batches_of_ids_to_workers(due_enrollments,
                                                                       django_capture_on_commit_callbacks):
    now = timezone.now()

    report, batches = _handed_off_batches(django_capture_on_commit_callbacks, now)

    assert (report.handed_off, report.steps) == (1200, 0)
    full, rest = divmod(1200, advancing.ENROLLMENT_BATCH)
    assert [len(b) for b in batches] == [advancing.ENROLLMENT_BATCH] * full + [rest]
    assert not JourneyStepVisit.objects.exists()
    assert Enrollment.objects.filter(claimed_at=now).count() == 1200


def test_a_handed_off_batch_runs_once_even_when_its_task_runs_twice(due_enrollments,
                                                                    django_capture_on_commit_callbacks):
    now = timezone.now()
    _, batches = _handed_off_batches(django_capture_on_commit_callbacks, now)

    first = [advancing.run_claimed_enrollments(ids, now) for ids in batches]
    again = [advancing.run_claimed_enrollments(ids, now) for ids in batches]

    assert (sum(first), sum(again)) == (1200, 0)
    assert JourneyStepVisit.objects.count() == 1200
    assert not Enrollment.objects.filter(claimed_at__isnull=False).exists()


def test_a_lost_batch_is_claimed_again_once_its_lease_ends(due_enrollments, django_capture_on_commit_callbacks):
    now = timezone.now()
    _handed_off_batches(django_capture_on_commit_callbacks, now)  # and their tasks are lost

    within_lease, _ = _handed_off_batches(django_capture_on_commit_callbacks, now + timedelta(seconds=30))
    after_lease, batches = _handed_off_batches(
        django_capture_on_commit_callbacks, now + advancing.ENROLLMENT_LEASE + timedelta(seconds=1))

    assert (within_lease.handed_off, after_lease.handed_off) == (0, 1200)
    assert sum(advancing.run_claimed_enrollments(ids, now) for ids in batches) == 1200


def test_a_batch_runs_on_one_worker_only(due_enrollments, django_assert_max_num_queries,
                                         django_capture_on_commit_callbacks):
    now = timezone.now()
    _, batches = _handed_off_batches(django_capture_on_commit_callbacks, now)

    # Two workers given the same batch (a redelivered task) at once.
    if connection.vendor == "postgresql":
        results, errors = run_concurrently(lambda: advancing.run_claimed_enrollments(batches[0], now))
        # SKIP LOCKED may split the batch between them; each enrollment still runs once.
        assert not errors
        assert sum(results) == advancing.ENROLLMENT_BATCH
    # SQLite's limit on query parameters splits the bulk writes into chunks of a hundred rows.
    with django_assert_max_num_queries(8 if connection.vendor == "postgresql" else 20):
        advancing.run_claimed_enrollments(batches[1], now)

    visits = JourneyStepVisit.objects.values("enrollment_id", "visit_number")
    assert visits.count() == visits.distinct().count()


@pytest.mark.celery_worker
def test_a_real_worker_runs_what_the_beat_tick_hands_off(due_enrollments, celery_worker, finished_tasks):
    from campaigns.tasks import run_enrollments_task, tick_task

    tick_task.delay()

    finished_tasks.wait_for(run_enrollments_task, math.ceil(1200 / advancing.ENROLLMENT_BATCH), timeout=60)
    assert JourneyStepVisit.objects.count() == 1200
    assert set(Enrollment.objects.values_list("steps_taken", "claimed_at").distinct()) == {(1, None)}


@pytest.mark.postgres
@needs_postgres
def test_each_batch_claim_reads_the_due_index_in_order_and_stops_at_the_batch(due_enrollments,
                                                                             django_capture_on_commit_callbacks):
    # Claimed rows leave enrollment_due: the tick's tenth batch does not step over the nine
    # before it, nor sort every due row to take the first ones.
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        _handed_off_batches(django_capture_on_commit_callbacks, timezone.now())
    claim = next(q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "campaigns_enrollment"'))

    with connection.cursor() as cursor:
        # A table this small is read whole whatever its indexes; ask what the index allows.
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("EXPLAIN " + claim)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    assert "Index Scan using enrollment_due" in plan, plan
    assert "Sort" not in plan, plan
