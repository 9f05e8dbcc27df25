"""Trying a journey with test contacts: find them, send one a test of a step, skip a test
contact's wait, and clone a journey (an active journey's draft is tried on its clone).

A journey is put into testing by campaigns.actions.start_testing_journey; in testing its published
version enrolls only test contacts (campaigns/admission.py), who then go through every rule as
anyone would. Only a test a member of staff sends by hand (send_test_message) passes frequency
caps and quiet hours (Exemption.TEST_SEND); consent and suppression still hold.
"""
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from channels import routing
from channels.models import Message, MessageSource
from contacts.models import Contact
from omni import audit
from omni.choices import Exemption, Urgency
from templates.models import TemplateVersion

from .models import (
    LIVE_ENROLLMENT_STATES,
    Enrollment,
    EnrollmentState,
    Journey,
    JourneyStatus,
    JourneyStep,
    PlannedStep,
    StepKind,
)

# How many test contacts a search lists.
SEARCH_LIMIT = 10
# The journey's own fields a clone copies: its draft (trigger, goal, re-entry, replies) and what
# describes it. Runtime state (status, versions, the date trigger's watermark) and its record
# (creator, dates, approvals) are the clone's own.
CLONED_FIELDS = ("description", "trigger_type", "trigger_event", "trigger_conditions", "trigger_segment",
                 "trigger_max_age_seconds", "trigger_date_attribute", "trigger_date_property",
                 "trigger_date_offset_days", "trigger_date_time", "goal_event", "reentry", "reentry_after_seconds",
                 "on_reply")
# Described, not run, so copied when the journey has them (ownership, Journeys II).
CLONED_IF_PRESENT = ("owner", "objective", "lifecycle_stage")
# What a step's copy does not take from the step: its identity and the links, remapped.
STEP_FIELDS_NOT_COPIED = ("id", "journey", "next_step", "else_step")


class NotATestContact(ValidationError):
    """Something only done for test contacts was asked for another contact."""


def find_test_contacts(query: str, *, limit: int = SEARCH_LIMIT) -> list[Contact]:
    """Test contacts whose name, email or phone holds every word of `query`; none for an empty query."""
    words = (query or "").split()
    if not words:
        return []
    found = Contact.objects.reachable().filter(is_test=True)
    for word in words:
        found = found.filter(Q(first_name__icontains=word) | Q(last_name__icontains=word)
                             | Q(email__icontains=word) | Q(phone__icontains=word.replace(" ", "")))
    return list(found.order_by("first_name", "last_name", "pk")[:limit])


def test_contact(contact_id) -> Contact:
    """The test contact with this id; NotATestContact for any other id."""
    contact = Contact.objects.filter(pk=contact_id).first() if str(contact_id or "").isdigit() else None
    if contact is None or not contact.is_test:
        raise NotATestContact("Choose a test contact (a contact marked as a test contact in its profile).",
                              code="not_a_test_contact")
    return contact


@dataclass
class Standing:
    """Where one test contact's live enrollment stands."""

    enrollment: Enrollment
    step: PlannedStep | None
    waiting: bool


def test_enrollments(journey: Journey, now=None) -> list[Standing]:
    """The live enrollments of test contacts in the journey, each with its step and whether it
    waits (so its wait may be skipped). Two queries."""
    now = now or timezone.now()
    enrollments = (Enrollment.objects.filter(journey=journey, contact__is_test=True, state__in=LIVE_ENROLLMENT_STATES)
                   .select_related("contact", "journey_version").order_by("entered_at", "pk"))
    return [Standing(e, e.journey_version.plan.get(e.current_step_key) if e.journey_version_id else None,
                     is_waiting(e, now))
            for e in enrollments]


def is_waiting(enrollment: Enrollment, now) -> bool:
    """Whether the enrollment waits for a later moment: active, and its step not yet due."""
    return (enrollment.state == EnrollmentState.ACTIVE and enrollment.next_run_at is not None
            and enrollment.next_run_at > now)


def skip_wait(enrollment: Enrollment, *, actor, now=None) -> Enrollment:
    """Make a test contact's waiting enrollment due now, as if its wait had run out (a wait for an
    event then takes its timeout branch): the next tick runs it. Audited as
    journey.enrollment_wait_skipped. Refuses another contact's enrollment and one not waiting."""
    now = now or timezone.now()
    contact = enrollment.contact
    if not contact.is_test:
        raise NotATestContact(f"{contact} is not a test contact: only a test contact's wait may be skipped.",
                              code="not_a_test_contact")
    with transaction.atomic():
        # Conditional: a tick that ran the step meanwhile has moved it on, and then nothing waits.
        skipped = Enrollment.objects.filter(pk=enrollment.pk, state=EnrollmentState.ACTIVE,
                                            next_run_at__gt=now).update(next_run_at=now)
        if not skipped:
            enrollment.refresh_from_db()
            raise ValidationError(f"{contact} in {enrollment.journey} is not waiting (it is "
                                  f"{enrollment.get_state_display().lower()}, at step "
                                  f"{enrollment.current_step_key or 'none'}): there is no wait to skip.",
                                  code="not_waiting")
        audit.record("journey.enrollment_wait_skipped", contact=contact, obj=enrollment, actor=actor,
                     data={"journey": enrollment.journey_id, "step": enrollment.current_step_key,
                           "was_due_at": enrollment.next_run_at.isoformat()})
    enrollment.next_run_at = now
    return enrollment


def send_test_message(template_version, channel_plan: list, contact: Contact, *, actor, about, action: str,
                      source: str, purpose: str = "", urgency: str = Urgency.NORMAL, variables: dict | None = None,
                      now=None) -> Message:
    """Send a test of `template_version` on `channel_plan` to a test contact now, for a member of
    staff (`actor`): consent and suppression apply, frequency caps and quiet hours do not
    (Exemption.TEST_SEND; the gate's decision records it). Audited as `action` on `about` (the
    journey or campaign tried). Refuses a contact that is not a test contact."""
    if not contact.is_test:
        raise NotATestContact(f"{contact} is not a test contact: tests are sent only to test contacts.",
                              code="not_a_test_contact")
    if not channel_plan:
        raise ValidationError("Choose a step with channels to send on.", code="no_channel_plan")
    with transaction.atomic():
        message, _ = routing.create_message(
            contact=contact, channel_plan=channel_plan, source=source, template_version=template_version,
            purpose=purpose, urgency=urgency, variables=variables or {}, exemption=Exemption.TEST_SEND)
        routing.dispatch(message, now=now)
        audit.record(action, contact=contact, obj=about, actor=actor,
                     data={"message": message.pk, "template_version": template_version.pk,
                           "channels": [entry["channel"] for entry in channel_plan]})
    message.refresh_from_db()
    return message


def send_steps(journey: Journey) -> list[PlannedStep]:
    """The send steps of the journey's published version, in order (what a test may send)."""
    version = journey.live_version
    if version is None:
        return []
    return [step for step in version.plan.values() if step.kind == StepKind.SEND]


def send_test_of_step(journey: Journey, step_key: str, contact: Contact, *, actor, now=None) -> Message:
    """send_test_message() of one send step of the journey's published version, as that version
    pinned it (template version, channel plan, purpose, urgency). Audited as journey.test_send."""
    step = next((s for s in send_steps(journey) if s.key == step_key), None)
    if step is None:
        raise ValidationError(f"{journey.name!r} has no published send step {step_key!r}: choose one of its send "
                              f"steps.", code="no_such_step")
    version = TemplateVersion.objects.get(pk=step.template_version_id)
    return send_test_message(version, step.channel_plan, contact, actor=actor, about=journey,
                             action="journey.test_send", source=MessageSource.JOURNEY,
                             purpose=step.purpose or version.purpose, urgency=step.urgency,
                             variables={"journey": journey.name, "trigger": {}}, now=now)


@transaction.atomic
def clone_journey(journey: Journey, *, actor) -> Journey:
    """A copy of the journey's draft (its fields, and its steps with their links: next, else, and
    the steps conditions, waits and split paths name by key) under a new unique slug, as a draft
    with no versions. Audited as journey.cloned."""
    values = {name: getattr(journey, name) for name in CLONED_FIELDS}
    values.update({name: getattr(journey, name) for name in CLONED_IF_PRESENT if hasattr(journey, name)})
    clone = Journey.objects.create(
        name=_clone_name(journey), slug=_free_slug(journey.slug), status=JourneyStatus.DRAFT,
        created_by=actor if getattr(actor, "is_authenticated", False) else None, **values)
    steps = list(journey.steps.order_by("position", "pk"))
    copied = {}
    for step in steps:
        copy = JourneyStep(journey=clone, **{field.attname: getattr(step, field.attname)
                                             for field in JourneyStep._meta.concrete_fields
                                             if field.name not in STEP_FIELDS_NOT_COPIED})
        copied[step.pk] = copy
    JourneyStep.objects.bulk_create(copied.values())
    for step in steps:
        copy = copied[step.pk]
        copy.next_step = copied.get(step.next_step_id)
        copy.else_step = copied.get(step.else_step_id)
    JourneyStep.objects.bulk_update(copied.values(), ["next_step", "else_step"])
    audit.record("journey.cloned", obj=clone, actor=actor,
                 data={"from_journey": journey.pk, "from_slug": journey.slug, "steps": len(steps)})
    return clone


def _clone_name(journey: Journey) -> str:
    suffix = " (copy)"
    return journey.name[:Journey._meta.get_field("name").max_length - len(suffix)] + suffix


def _free_slug(slug: str) -> str:
    """`<slug>-copy`, or `-copy-2`, `-copy-3`...: the first no journey has, within the field's length."""
    limit = Journey._meta.get_field("slug").max_length
    taken = set(Journey.objects.filter(slug__startswith=slug[:limit - 12]).values_list("slug", flat=True))
    number = 1
    while True:
        suffix = "-copy" if number == 1 else f"-copy-{number}"
        candidate = slug[:limit - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
        number += 1
