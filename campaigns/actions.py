"""Changes to journeys that people make: activate, pause, resume, enroll by hand."""
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from omni import audit
from templates.actions import current_version

from .models import Enrollment, EnrollmentState, Journey, JourneyStatus, StepKind


def validate_journey(journey: Journey) -> list[str]:
    """Problems that would stop the journey from running, in words a marketer can act on."""
    problems = []
    steps = list(journey.steps.all())
    if not steps:
        problems.append("The journey has no steps.")
    if journey.trigger_type == "event" and not journey.trigger_event:
        problems.append("An event-triggered journey needs a trigger event name.")
    keys = {s.key for s in steps}
    ids = {s.pk for s in steps}
    for step in steps:
        if step.kind == StepKind.SEND and (not step.template_id or not step.channel_plan):
            problems.append(f"Send step {step.key!r} needs a template and a channel plan.")
        if step.kind == StepKind.WAIT and int((step.config or {}).get("seconds", 0) or 0) <= 0:
            problems.append(f'Wait step {step.key!r} needs config {{"seconds": N}} with N > 0.')
        if step.kind == StepKind.CONDITION and (step.config or {}).get("step") not in keys:
            problems.append(f"Condition step {step.key!r} refers to a step that does not exist.")
        for target in (step.next_step_id, step.else_step_id):
            if target and target not in ids:
                problems.append(f"Step {step.key!r} points at a step of another journey.")
    return problems


def activate_journey(journey: Journey, actor=None) -> Journey:
    """Start running a journey, refusing one that cannot run, with the reasons."""
    return _set_running(journey, "journey.activated", actor)


def resume_journey(journey: Journey, actor=None) -> Journey:
    """Run a paused journey again; enrollments carry on from where they stopped."""
    return _set_running(journey, "journey.resumed", actor)


@transaction.atomic
def pause_journey(journey: Journey, actor=None) -> Journey:
    """Stop running steps; enrollments stay where they are until resumed."""
    journey.status = JourneyStatus.PAUSED
    journey.save(update_fields=["status", "updated_at"])
    audit.record("journey.paused", obj=journey, actor=actor)
    return journey


@transaction.atomic
def _set_running(journey: Journey, action: str, actor) -> Journey:
    problems = validate_journey(journey)
    if problems:
        raise ValidationError(problems)
    for step in journey.steps.filter(kind=StepKind.SEND).select_related("template"):
        current_version(step.template)  # a journey never sends an unpublished draft
    journey.status = JourneyStatus.ACTIVE
    journey.save(update_fields=["status", "updated_at"])
    audit.record(action, obj=journey, actor=actor)
    return journey


@transaction.atomic
def enroll_contact(journey: Journey, contact, *, actor=None, actor_label="") -> Enrollment:
    """Put one contact into a journey now (API or admin), refusing a second live enrollment."""
    if journey.status != JourneyStatus.ACTIVE:
        raise ValidationError(f"Journey {journey.name!r} is not active.")
    if Enrollment.objects.filter(journey=journey, contact=contact, state__in=["active", "paused"]).exists():
        raise ValidationError(f"{contact} is already in {journey.name!r}.")
    now = timezone.now()
    enrollment = Enrollment.objects.create(journey=journey, journey_version=journey.version, contact=contact,
                                           current_step=journey.first_step(),
                                           state=EnrollmentState.ACTIVE, next_run_at=now, entered_at=now)
    audit.record("journey.enrolled", contact=contact, obj=enrollment, actor=actor, actor_label=actor_label,
                 reason="manual", data={"journey": journey.pk})
    return enrollment
