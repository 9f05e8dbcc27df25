"""The orchestration engine: the beat tick and the journey steps it runs.

Every piece of due work is claimed from the database in batches, inside a transaction, with
SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL, so any number of workers can run the tick
and no two ever handle the same row. A batch commits as a whole: a worker that dies midway
leaves its rows unclaimed for the next tick, and the idempotency keys of the messages it
would have created make the retry safe. On SQLite, IMMEDIATE transactions serialize writers,
which gives the same guarantee for the embedded default.

Due enrollments are claimed apart from being run. The beat's tick (`tick(hand_off=True)`)
only claims them: one UPDATE ... RETURNING per batch sets `claimed_at`, and the batch's ids go
to `run_enrollments_task` on the JOURNEY_QUEUE, so any number of workers run batches in
parallel. A worker runs a batch with `run_claimed_enrollments(ids)`: it locks the rows still
claimed, runs them and clears `claimed_at`, in one transaction. A batch whose task was lost is
due again once its claim is older than ENROLLMENT_LEASE; a task run twice finds its rows
already cleared (or locked) and does nothing. `tick()` without hand_off claims and runs in the
same process, batch by batch (tests, `manage.py tick`).
"""
import logging
from dataclasses import asdict, dataclass

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from channels import actions as channel_actions
from channels.publishing import republish_lost_deliveries
from channels.models import (
    ENGAGED_DELIVERY_STATUSES,
    FAILED_DELIVERY_STATUSES,
    Delivery,
    DeliveryStatus,
    Message,
    MessageSource,
    MessageStatus,
)
from omni import audit
from omni.lib.bulk import bulk_update, insert_rows
from omni.lib.quarantine import quarantine, quarantine_failures, run_isolating_failures
from contacts.models import ContactEvent
from templates.models import TemplateVersion

from .models import (
    LIVE_ENROLLMENT_STATES,
    Enrollment,
    EnrollmentState,
    JourneyStatus,
    JourneyStepVisit,
    JourneyVersion,
    ReentryPolicy,
    StepKind,
    TriggerType,
)

log = logging.getLogger(__name__)

# Rows claimed per transaction. Large enough that a tick's fixed costs (the claim query, the
# commit) are spread thin; small enough that a batch commits in well under a second.
EVENT_BATCH = 1000
ENROLLMENT_BATCH = 1000
MESSAGE_BATCH = 500
# A claimed batch not run within this long lost its task or its worker: the next tick claims it
# again. A worker runs a batch in about a second; the lease covers a queue backlog too.
ENROLLMENT_LEASE = timezone.timedelta(seconds=60)
# The Celery queue of run_enrollments_task, apart from sends so a send backlog never holds up steps.
JOURNEY_QUEUE = "journeys"
# A journey that loops without a wait must not spin inside one tick.
MAX_STEPS_PER_RUN = 25
# An enrollment still looping after this many consecutive ticks is quarantined: a loop in its
# version (or in hand-changed data) that activation could not catch.
MAX_LOOPING_TICKS = 3


@dataclass
class TickReport:
    events: int = 0
    enrolled: int = 0
    converted: int = 0
    steps: int = 0
    redispatched: int = 0
    fallbacks: int = 0
    requeued: int = 0
    # Enrollments claimed and handed to workers (tick(hand_off=True)); their steps are counted there.
    handed_off: int = 0
    quarantined: int = 0

    def as_dict(self):
        return asdict(self)


def claim(queryset, limit: int) -> list:
    """Lock and return up to `limit` rows no other transaction holds. Call inside atomic()."""
    if connection.features.has_select_for_update_skip_locked:
        queryset = queryset.select_for_update(skip_locked=True, of=("self",))
    return list(queryset[:limit])


def claim_ids(queryset, limit: int, **values) -> list[int]:
    """Lock up to `limit` rows no other transaction holds, write `values` on them and return
    their ids. One UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING on
    PostgreSQL. Call inside atomic()."""
    model = queryset.model
    if connection.vendor != "postgresql":
        ids = claim(queryset.values_list("pk", flat=True), limit)
        model.objects.filter(pk__in=ids).update(**values)
        return ids
    select = queryset.select_for_update(skip_locked=True, of=("self",)).values_list("pk", flat=True)[:limit]
    sql, params = select.query.sql_with_params()
    quote = connection.ops.quote_name
    fields = [model._meta.get_field(name) for name in values]
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE {quote(model._meta.pk.column)} IN ({sql}) "
            f"RETURNING {quote(model._meta.pk.column)}",
            [*(f.get_db_prep_save(values[f.name], connection) for f in fields), *params],
        )
        return [row[0] for row in cursor.fetchall()]


def tick(now=None, *, hand_off: bool = False) -> TickReport:
    """One pass over all due work. Each stage runs batches until nothing is due, and returns.

    With `hand_off`, due enrollments are claimed and handed to run_enrollments_task in batches
    rather than run here (the beat's tick)."""
    now = now or timezone.now()
    report = TickReport()
    run_stage(process_events_batch, EVENT_BATCH, now, report)
    run_stage(hand_off_enrollments_batch if hand_off else advance_enrollments_batch, ENROLLMENT_BATCH, now, report)
    run_stage(redispatch_deferred_batch, MESSAGE_BATCH, now, report)
    run_stage(fire_fallback_timers_batch, MESSAGE_BATCH, now, report)
    report.requeued = requeue_stale_deliveries(now)
    return report


def run_stage(batch, size: int, now, report: TickReport) -> None:
    """Run one stage's batches until a batch comes back short.

    `batch(now, report, handled)` adds to `handled` the rows it ran that are still due (a loop
    without a wait, a wait of zero seconds) and never claims those again: otherwise the same
    rows would be claimed batch after batch and the tick would never return. They are looked at
    again on the next tick.
    """
    handled = set()
    while batch(now, report, handled) == size:
        pass


def _unhandled(queryset, handled):
    return queryset.exclude(pk__in=handled) if handled else queryset


# --- Events: enroll and convert ----------------------------------------------------------------

def _matches(conditions: dict, properties: dict) -> bool:
    return all(properties.get(key) == value for key, value in (conditions or {}).items())


def process_events_batch(now, report: TickReport, handled: set | None = None) -> int:
    """Claim unprocessed events: enroll contacts in journeys they trigger, convert goals. An
    event that cannot be processed is quarantined; the rest of the batch goes on."""
    with transaction.atomic():
        events = claim(
            _unhandled(ContactEvent.objects.filter(processed_at__isnull=True, quarantined_at__isnull=True), handled)
            .order_by("received_at", "id"),
            EVENT_BATCH,
        )
        if not events:
            return 0
        failures = run_isolating_failures(events, lambda rows: _process_events(rows, now, report))
        report.quarantined += quarantine_failures(ContactEvent, failures, now, stage="events")
        return len(events)


def _process_events(events, now, report: TickReport) -> None:
    # The request that stored an event wrote nothing else; its audit entry is written here,
    # dated when it was received, and commits with what the event caused.
    audit.record_many([
        audit.build("event.received", contact_id=e.contact_id, obj=e, actor_label=e.sent_by or e.source,
                    data={"name": e.name}, occurred_at=e.received_at)
        for e in events
    ])
    names = {e.name for e in events}
    # The live versions these events trigger, and any version (enrollments keep older ones)
    # whose goal they reach: one query.
    versions = list(
        JourneyVersion.objects.filter(journey__status=JourneyStatus.ACTIVE)
        .filter(Q(trigger_type=TriggerType.EVENT, trigger_event__in=names, journey__live_version=F("pk"))
                | Q(goal_event__in=names))
        .select_related("journey")
    )
    converted = enrolled = 0
    if versions:
        converted = _convert_goals(events, versions, now)
        enrolled = _enroll_from_events(events, versions, now)
    ContactEvent.objects.filter(pk__in=[e.pk for e in events]).update(processed_at=now)
    report.converted += converted
    report.enrolled += enrolled
    report.events += len(events)


def _convert_goals(events, versions, now) -> int:
    """End live enrollments whose own version's goal event just happened."""
    by_goal = {}
    for version in versions:
        if version.goal_event:
            by_goal.setdefault(version.goal_event, []).append(version.pk)
    pairs = [(e.contact_id, vid, e) for e in events for vid in by_goal.get(e.name, [])]
    if not pairs:
        return 0
    live = Enrollment.objects.filter(
        state__in=LIVE_ENROLLMENT_STATES,
        contact_id__in={c for c, _, _ in pairs},
        journey_version_id__in={v for _, v, _ in pairs},
    )
    wanted = {(c, v): e for c, v, e in pairs}
    converted = [en for en in live if (en.contact_id, en.journey_version_id) in wanted]
    for enrollment in converted:
        enrollment.state = EnrollmentState.CONVERTED
        enrollment.ended_at = now
        enrollment.end_reason = f"goal:{wanted[(enrollment.contact_id, enrollment.journey_version_id)].name}"
        enrollment.next_run_at = None
    Enrollment.objects.bulk_update(converted, ["state", "ended_at", "end_reason", "next_run_at"])
    audit.record_many([
        audit.build("journey.converted", contact_id=en.contact_id, obj=en, reason=en.end_reason,
                    data={"journey": en.journey_id, "event": wanted[(en.contact_id, en.journey_version_id)].pk})
        for en in converted
    ])
    return len(converted)


def _enroll_from_events(events, versions, now) -> int:
    """Enroll contacts in the journeys their events trigger, each on the journey's live version."""
    triggered = [
        v for v in versions
        if v.journey.live_version_id == v.pk and v.trigger_type == TriggerType.EVENT and v.trigger_event
        and v.first_step_key
    ]
    if not triggered:
        return 0
    candidates = {}
    for event in events:
        for version in triggered:
            if version.trigger_event == event.name and _matches(version.trigger_conditions, event.properties):
                candidates.setdefault((version.journey_id, event.contact_id), event)
    if not candidates:
        return 0
    contact_ids = {c for _, c in candidates}
    journey_ids = {j for j, _ in candidates}
    history = {}
    for journey_id, contact_id, state, entered_at in Enrollment.objects.filter(
        journey_id__in=journey_ids, contact_id__in=contact_ids
    ).values_list("journey_id", "contact_id", "state", "entered_at"):
        history.setdefault((journey_id, contact_id), []).append((state, entered_at))
    versions_by_journey = {v.journey_id: v for v in triggered}

    new, refused = [], []
    for (journey_id, contact_id), event in candidates.items():
        version = versions_by_journey[journey_id]
        past = history.get((journey_id, contact_id), [])
        reason = _reentry_refusal(version, past, now)
        if reason:
            refused.append(audit.build("journey.enrollment_refused", contact_id=contact_id, obj=version.journey,
                                       reason=reason, data={"event": event.pk}))
            continue
        new.append(Enrollment(journey_id=journey_id, journey_version=version, contact_id=contact_id,
                              current_step_key=version.first_step_key,
                              state=EnrollmentState.ACTIVE, next_run_at=now, entered_at=now, trigger_event=event))
    # ignore_conflicts: another worker enrolling the same contact from a different event at the
    # same moment loses quietly to the partial unique constraint instead of failing the batch.
    Enrollment.objects.bulk_create(new, ignore_conflicts=True, batch_size=1000)
    created = Enrollment.objects.filter(trigger_event_id__in=[e.trigger_event_id for e in new], entered_at=now)
    entries = [
        audit.build("journey.enrolled", contact_id=en.contact_id, obj=en, reason=f"event:{en.trigger_event_id}",
                    data={"journey": en.journey_id, "event": en.trigger_event_id})
        for en in created
    ]
    audit.record_many(entries + refused)
    return len(entries)


def _reentry_refusal(version, past, now) -> str:
    if any(state in LIVE_ENROLLMENT_STATES for state, _ in past):
        return "already_enrolled"
    if not past or version.reentry == ReentryPolicy.ALWAYS:
        return ""
    if version.reentry == ReentryPolicy.NEVER:
        return "reentry_never"
    last_entry = max(entered for _, entered in past)
    if now - last_entry < timezone.timedelta(seconds=version.reentry_after_seconds or 0):
        return "reentry_too_soon"
    return ""


# --- Enrollments: run due steps ----------------------------------------------------------------

def due_enrollments(now):
    """Active enrollments of active journeys whose step is due, not quarantined, and that no
    worker holds: never claimed (the enrollment_due index holds just those)."""
    return _runnable(now).filter(claimed_at__isnull=True, next_run_at__lte=now)


def lapsed_enrollments(now):
    """Due enrollments a worker claimed longer than ENROLLMENT_LEASE ago and never ran (its
    batch was lost): claimed again, like due ones."""
    return _runnable(now).filter(claimed_at__lt=now - ENROLLMENT_LEASE, next_run_at__lte=now)


def _runnable(now):
    return Enrollment.objects.filter(state=EnrollmentState.ACTIVE, journey__status=JourneyStatus.ACTIVE,
                                     quarantined_at__isnull=True)


def advance_enrollments_batch(now, report: TickReport, handled: set | None = None) -> int:
    """Claim a batch of due enrollments and run it here, in the same transaction. An enrollment
    whose step fails (a missing template, a bad wait, a broken condition) or that keeps looping
    is quarantined; the rest of the batch goes on."""
    with transaction.atomic():
        due = claim(_unhandled(due_enrollments(now) | lapsed_enrollments(now), handled)
                    .select_related("contact").order_by("next_run_at", "id"), ENROLLMENT_BATCH)
        if not due:
            return 0
        _run_locked(due, now, report)
        if handled is not None:
            handled.update(e.pk for e in due if e.state == EnrollmentState.ACTIVE and e.next_run_at
                           and e.next_run_at <= now)
        return len(due)


def hand_off_enrollments_batch(now, report: TickReport, handled: set | None = None) -> int:
    """Claim a batch of due enrollments and hand its ids to run_enrollments_task once committed.
    Claimed rows are leased (claimed_at), so this tick never claims them again."""
    from .tasks import run_enrollments_task

    with transaction.atomic():
        ids = claim_ids(due_enrollments(now).order_by("next_run_at", "id"), ENROLLMENT_BATCH, claimed_at=now)
        if len(ids) < ENROLLMENT_BATCH:
            ids += claim_ids(lapsed_enrollments(now).order_by("claimed_at", "id"), ENROLLMENT_BATCH - len(ids),
                             claimed_at=now)
        if ids:
            transaction.on_commit(lambda: run_enrollments_task.apply_async((ids,), queue=JOURNEY_QUEUE))
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
                journey__status=JourneyStatus.ACTIVE, quarantined_at__isnull=True,
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


VISIT_FIELDS = ["enrollment_id", "journey_id", "journey_version_id", "step_key", "step_kind", "visit_number",
                "message_id", "outcome", "visited_at"]
ENROLLMENT_FIELDS = ["current_step_key", "next_run_at", "steps_taken", "context", "state", "end_reason", "ended_at",
                     "claimed_at", "loop_ticks"]


def run_enrollments(enrollments: list[Enrollment], versions: dict[int, JourneyVersion],
                    template_versions: dict[int, TemplateVersion], now) -> int:
    """Run enrollments' steps, each on its pinned version, until each waits or ends. Returns the
    number of steps run.

    The batch moves forward one step at a time, all together: every enrollment at a send step
    sends in one bulk pass, every one at a condition is evaluated from one query, so a batch
    costs a fixed number of queries per step rather than per enrollment.
    """
    entries, visits, ran = [], [], 0
    active = list(enrollments)
    for _ in range(MAX_STEPS_PER_RUN):
        if not active:
            break
        at = {e.pk: _current_step(e, versions) for e in active}
        messages = _send_steps([e for e in active if _kind(at[e.pk]) == StepKind.SEND], at, versions,
                               template_versions, now)
        results = _evaluate_conditions([e for e in active if _kind(at[e.pk]) == StepKind.CONDITION], at)
        still_running = []
        for enrollment in active:
            step = at[enrollment.pk]
            if step is None:
                entries.append(_end(enrollment, *_why_no_step(enrollment, versions), now))
                continue
            ran += 1
            enrollment.steps_taken += 1
            outcome, next_key = _transition(enrollment, step, messages, results)
            message = messages.get(enrollment.pk) if step.kind == StepKind.SEND else None
            visits.append((enrollment.pk, enrollment.journey_id, enrollment.journey_version_id, step.key, step.kind,
                           enrollment.steps_taken, message.pk if message else None, outcome[:100], now))
            if step.kind == StepKind.EXIT:
                entries.append(_end(enrollment, EnrollmentState.EXITED, f"exit:{step.key}", now))
                continue
            enrollment.current_step_key = next_key or ""
            if step.kind == StepKind.WAIT:
                enrollment.next_run_at = now + timezone.timedelta(seconds=int(step.config["seconds"]))
                continue
            still_running.append(enrollment)
        active = still_running
    looping = {e.pk for e in active}
    for enrollment in enrollments:
        # Count the consecutive ticks it ends still running steps (quarantine_looping).
        enrollment.loop_ticks = enrollment.loop_ticks + 1 if enrollment.pk in looping else 0
    for enrollment in active:
        # Too many steps without a wait: look again next tick rather than spin (run_stage does
        # not claim it again in this one).
        enrollment.next_run_at = now
    for enrollment in enrollments:
        enrollment.claimed_at = None
    bulk_update(enrollments, ENROLLMENT_FIELDS)
    insert_rows(JourneyStepVisit, VISIT_FIELDS, visits)
    audit.record_many(entries)
    return ran


def _kind(step):
    return step.kind if step is not None else None


def _current_step(enrollment, versions):
    version = versions.get(enrollment.journey_version_id)
    return version.plan.get(enrollment.current_step_key) if version is not None else None


def _why_no_step(enrollment, versions) -> tuple[str, str]:
    """How an enrollment with no step to run ends: (state, reason)."""
    if enrollment.journey_version_id not in versions:
        return EnrollmentState.FAILED, "no_journey_version"
    if enrollment.current_step_key:
        # Only a hand-made change can leave it at a step its version does not have.
        return EnrollmentState.FAILED, f"missing_step:{enrollment.current_step_key}"
    return EnrollmentState.COMPLETED, "end_of_journey"


def _transition(enrollment, step, messages, results):
    """What one step did and the key of the step the enrollment goes to next: (outcome, key or None)."""
    if step.kind == StepKind.SEND:
        return messages[enrollment.pk].status, step.following
    if step.kind == StepKind.WAIT:
        return f"wait:{step.config['seconds']}s", step.following
    if step.kind == StepKind.CONDITION:
        if results[enrollment.pk]:
            return "true", step.following
        return "false", step.else_key
    return "exit", None


def _send_steps(enrollments, at, versions, template_versions, now) -> dict[int, Message]:
    """Create and dispatch the messages of every enrollment at a send step, in bulk, each with
    the template version its journey version pinned."""
    if not enrollments:
        return {}
    unsaved = []
    for enrollment in enrollments:
        step = at[enrollment.pk]
        # The journey comes with its version, loaded once per batch, not joined to every enrollment.
        journey = versions[enrollment.journey_version_id].journey
        version = template_versions[step.template_version_id]
        unsaved.append(Message(
            contact=enrollment.contact,
            template_version=version,
            channel_plan=step.channel_plan,
            source=MessageSource.JOURNEY,
            purpose=step.purpose or version.purpose,
            urgency=step.urgency,
            variables={"journey": journey.name},
            intent_key=step.intent_key or f"journey:{journey.slug}:{step.key}",
            # The same enrollment reaching the same step on the same visit is the same message.
            idempotency_key=f"enrollment:{enrollment.pk}:{enrollment.steps_taken + 1}:{step.key}",
        ))
    messages, created = channel_actions.create_messages(unsaved)
    channel_actions.dispatch_many(created, now=now)
    for enrollment, message in zip(enrollments, messages):
        enrollment.context.setdefault("messages", {})[at[enrollment.pk].key] = message.pk
    return {enrollment.pk: message for enrollment, message in zip(enrollments, messages)}


def _evaluate_conditions(enrollments, at) -> dict[int, bool]:
    """Each condition's result: engagement with an earlier message of the enrollment, or an attribute."""
    if not enrollments:
        return {}
    message_ids = {
        enrollment.context.get("messages", {}).get(at[enrollment.pk].config.get("step"))
        for enrollment in enrollments
    } - {None}
    statuses = {}
    for message_id, status in Delivery.objects.filter(message_id__in=message_ids).values_list("message_id", "status"):
        statuses.setdefault(message_id, set()).add(status)
    return {enrollment.pk: evaluate_condition(enrollment, at[enrollment.pk].config, statuses) for enrollment in enrollments}


def evaluate_condition(enrollment, config: dict, delivery_statuses: dict[int, set]) -> bool:
    """One condition, given the delivery statuses of the enrollment's messages by message id."""
    check = config.get("check", "engaged")
    if check in ("engaged", "delivered"):
        message_id = enrollment.context.get("messages", {}).get(config.get("step"))
        wanted = set(ENGAGED_DELIVERY_STATUSES)
        if check == "delivered":
            wanted.add(DeliveryStatus.DELIVERED)
        return bool(delivery_statuses.get(message_id, set()) & wanted)
    if check == "attribute":
        return enrollment.contact.attributes.get(config.get("name")) == config.get("equals")
    raise ValueError(f"Unknown condition {check!r}.")


def _end(enrollment, state, reason, now):
    """End the enrollment in memory; returns the audit entry saying so."""
    enrollment.state = state
    enrollment.end_reason = reason
    enrollment.ended_at = now
    enrollment.next_run_at = None
    return audit.build(f"journey.{state}", contact=enrollment.contact, obj=enrollment, reason=reason,
                       data={"journey": enrollment.journey_id})


# --- Messages: deferred ones and fallback timers -------------------------------------------------

def redispatch_deferred_batch(now, report: TickReport, handled: set | None = None) -> int:
    """Route again the deferred messages whose time has come; one that fails is quarantined."""
    with transaction.atomic():
        due = claim(
            _unhandled(Message.objects.filter(status=MessageStatus.DEFERRED, defer_until__lte=now,
                                              quarantined_at__isnull=True), handled)
            .select_related("contact", "template_version").order_by("defer_until", "id"),
            MESSAGE_BATCH,
        )
        failures = run_isolating_failures(due, lambda rows: channel_actions.dispatch_many(rows, now=now))
        report.quarantined += quarantine_failures(Message, failures, now, stage="deferred messages")
        report.redispatched += len(due) - len(failures)
        if handled is not None:
            handled.update(m.pk for m in due if m.status == MessageStatus.DEFERRED
                           and (m.defer_until is None or m.defer_until <= now))
        return len(due)


def fire_fallback_timers_batch(now, report: TickReport, handled: set | None = None) -> int:
    """Move on to the next channel where a delivery failed (its webhook marked the fallback due)
    or did not succeed within its window. A timer that fails is quarantined with its delivery."""
    with transaction.atomic():
        due = _unhandled(Delivery.objects.filter(fallback_due_at__lte=now, quarantined_at__isnull=True), handled)
        if connection.features.has_select_for_update_skip_locked:
            # Claimed by their messages' rows: the message is locked before its deliveries, as
            # everywhere (channels/state.py), and one held by a webhook waits for the next tick.
            due = due.select_for_update(skip_locked=True, of=("message",))
        due = list(due.select_related("message").order_by("fallback_due_at")[:MESSAGE_BATCH])
        if not due:
            return 0
        failures = run_isolating_failures(due, lambda rows: _fire_fallback_timers(rows, now, report))
        report.quarantined += quarantine_failures(Delivery, failures, now, stage="fallback timers")
        return len(due)


def _fire_fallback_timers(due, now, report: TickReport) -> None:
    Delivery.objects.filter(pk__in=[d.pk for d in due]).update(fallback_due_at=None)
    fired = 0
    for delivery in due:
        if delivery.status in FAILED_DELIVERY_STATUSES:
            reason = delivery.status
        elif channel_actions.fallback_condition_met(delivery):
            continue
        else:
            reason = "fallback_timeout"
        channel_actions.fall_back(delivery, reason, now=now)
        fired += 1
    report.fallbacks += fired


def requeue_stale_deliveries(now) -> int:
    """Publish again the sends lost on the way (a broker error, a worker killed mid-batch)."""
    return republish_lost_deliveries(now)
