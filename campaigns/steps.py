"""The step interpreter: runs enrollments' journey steps (send, wait, condition, exit) in bulk."""
from django.utils import timezone

from channels import routing
from channels.models import ENGAGED_DELIVERY_STATUSES, Delivery, DeliveryStatus, Message, MessageSource
from omni import audit
from omni.lib.bulk import bulk_update, insert_rows
from templates.models import TemplateVersion

from . import enrollment_state
from .models import TRIGGER_CONTEXT, Enrollment, EnrollmentState, JourneyStepVisit, JourneyVersion, StepKind

# A journey that loops without a wait must not spin inside one tick.
MAX_STEPS_PER_RUN = 25

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
        at = {e.pk: _step_of(e, versions) for e in active}
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


def _step_of(enrollment, versions):
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
            # What enrolled the contact, for {{ trigger.<property> }} (campaigns/admission.py).
            variables={"journey": journey.name,
                       "trigger": (enrollment.context.get(TRIGGER_CONTEXT) or {}).get("properties") or {}},
            intent_key=step.intent_key or f"journey:{journey.slug}:{step.key}",
            # The same enrollment reaching the same step on the same visit is the same message.
            idempotency_key=f"enrollment:{enrollment.pk}:{enrollment.steps_taken + 1}:{step.key}",
        ))
    messages, created = routing.create_messages(unsaved)
    routing.dispatch_many(created, now=now)
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
    return enrollment_state.end(enrollment, state, reason, now)

