"""Due enrollments: claimed in batches and run here, or handed to workers.

The beat's tick only claims them: one UPDATE ... RETURNING per batch sets `claimed_at`, and the
batch's ids go to a worker (`hand_off_to`, campaigns.tasks), so any number of workers run
batches in parallel. A worker runs a batch with run_claimed_enrollments(ids): it locks the rows
still claimed, runs them and clears `claimed_at`, in one transaction. A batch whose task was
lost is due again once its claim is older than ENROLLMENT_LEASE; a task run twice finds its
rows already cleared (or locked) and does nothing. Without a hand-off, the tick claims and runs
each batch in the same process (tests, the benchmarks).
"""
from django.db import transaction
from django.utils import timezone

from omni.lib.claims import claim, claim_ids, excluding
from omni.lib.quarantine import quarantine, quarantine_failures, run_isolating_failures
from templates.models import TemplateVersion

from .models import RUNNING_JOURNEY_STATUSES, Enrollment, EnrollmentState, JourneyVersion
from .steps import MAX_STEPS_PER_RUN, run_enrollments
from .tick_report import TickReport

ENROLLMENT_BATCH = 1000
# A claimed batch not run within this long lost its task or its worker: the next tick claims it
# again. A worker runs a batch in about a second; the lease covers a queue backlog too.
ENROLLMENT_LEASE = timezone.timedelta(seconds=60)
# An enrollment still looping after this many consecutive ticks is quarantined: a loop in its
# version (or in hand-changed data) that activation could not catch.
MAX_LOOPING_TICKS = 3


def due_enrollments(now):
    """Active enrollments of active journeys whose step is due, not quarantined, and that no
    worker holds: never claimed (the enrollment_due index holds just those)."""
    return _runnable(now).filter(claimed_at__isnull=True, next_run_at__lte=now)


def lapsed_enrollments(now):
    """Due enrollments a worker claimed longer than ENROLLMENT_LEASE ago and never ran (its
    batch was lost): claimed again, like due ones."""
    return _runnable(now).filter(claimed_at__lt=now - ENROLLMENT_LEASE, next_run_at__lte=now)


def _runnable(now):
    return Enrollment.objects.filter(state=EnrollmentState.ACTIVE, journey__status__in=RUNNING_JOURNEY_STATUSES,
                                     quarantined_at__isnull=True)


def advance_enrollments_batch(now, report: TickReport, handled: set | None = None) -> int:
    """Claim a batch of due enrollments and run it here, in the same transaction. An enrollment
    whose step fails (a missing template, a bad wait, a broken condition) or that keeps looping
    is quarantined; the rest of the batch goes on."""
    with transaction.atomic():
        due = claim(excluding(due_enrollments(now) | lapsed_enrollments(now), handled)
                    .select_related("contact").order_by("next_run_at", "id"), ENROLLMENT_BATCH)
        if not due:
            return 0
        _run_locked(due, now, report)
        if handled is not None:
            handled.update(e.pk for e in due if e.state == EnrollmentState.ACTIVE and e.next_run_at
                           and e.next_run_at <= now)
        return len(due)


def hand_off_enrollments_batch(hand_off_to, now, report: TickReport, handled: set | None = None) -> int:
    """Claim a batch of due enrollments and give its ids to `hand_off_to(ids)` once committed.
    Claimed rows are leased (claimed_at), so this tick never claims them again; a hand-off that
    never reaches a worker is claimed again when the lease ends."""
    with transaction.atomic():
        ids = claim_ids(due_enrollments(now).order_by("next_run_at", "id"), ENROLLMENT_BATCH, claimed_at=now)
        if len(ids) < ENROLLMENT_BATCH:
            ids += claim_ids(lapsed_enrollments(now).order_by("claimed_at", "id"), ENROLLMENT_BATCH - len(ids),
                             claimed_at=now)
        if ids:
            transaction.on_commit(lambda: hand_off_to(ids), robust=True)
    report.handed_off += len(ids)
    return len(ids)


def run_claimed_enrollments(enrollment_ids: list[int], now=None) -> int:
    """Run the enrollments a tick handed off, those still claimed and no other worker holds.
    Returns the number of steps run; a batch already run (a duplicate task) runs nothing."""
    now = now or timezone.now()
    report = TickReport()
    with transaction.atomic():
        claimed = claim(
            Enrollment.objects.filter(
                pk__in=enrollment_ids, claimed_at__isnull=False, state=EnrollmentState.ACTIVE,
                journey__status__in=RUNNING_JOURNEY_STATUSES, quarantined_at__isnull=True,
            ).select_related("contact").order_by("id"),
            len(enrollment_ids),
        )
        if claimed:
            _run_locked(claimed, now, report)
    return report.steps


def _run_locked(enrollments: list[Enrollment], now, report: TickReport) -> None:
    # Each enrollment runs on the version it pinned: the versions of the whole batch in one
    # query, and every template version their send steps pinned in one more.
    versions = JourneyVersion.objects.select_related("journey").in_bulk(
        {e.journey_version_id for e in enrollments} - {None})
    template_versions = TemplateVersion.objects.in_bulk({
        step.template_version_id for version in versions.values() for step in version.plan.values()
        if step.template_version_id
    })
    steps = []
    failures = run_isolating_failures(
        enrollments, lambda rows: steps.append(run_enrollments(rows, versions, template_versions, now)))
    report.steps += sum(steps)
    if failures:
        # Their run rolled back, claim included: a quarantined row is no worker's any more, and
        # once retried it is due at once, not only when a lease it no longer holds ends.
        Enrollment.objects.filter(pk__in=[e.pk for e, _ in failures]).update(claimed_at=None)
    report.quarantined += quarantine_failures(Enrollment, failures, now, stage="enrollments")
    report.quarantined += quarantine_looping(enrollments, now)


def quarantine_looping(enrollments, now) -> int:
    """Quarantine the enrollments that ended MAX_LOOPING_TICKS ticks in a row still running steps."""
    looping = [e for e in enrollments if e.loop_ticks >= MAX_LOOPING_TICKS and e.quarantined_at is None]
    return quarantine(Enrollment, [
        (e, f"Loop: ran {MAX_STEPS_PER_RUN} steps without a wait in each of {e.loop_ticks} ticks "
            f"(now at step {e.current_step_key!r}).")
        for e in looping
    ], now, stage="enrollments")

