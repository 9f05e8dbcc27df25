"""Who enters a journey: the re-entry rules, and the one set-based insert every trigger enrolls
through (events and dates in the tick; enroll_contact, for the API and by hand, asks the same rules).

A journey in testing enrolls only test contacts (only_test_contacts_in_testing): the others are
left out silently, as if the journey were not running for them.

What enrolled a contact is kept on their enrollment as context["trigger"] (TRIGGER_CONTEXT):
{"type": "event" | "api" | "date", "properties": {...}, ...}. Templates read its properties as
the `trigger` variable ({{ trigger.plan }}); branches read them from the enrollment's context.
"""
from dataclasses import dataclass

from django.utils import timezone

from contacts.models import Contact
from omni import audit
from omni.lib.demo_time import scaled

from .models import (
    LIVE_ENROLLMENT_STATES,
    TRIGGER_CONTEXT,
    Enrollment,
    EnrollmentState,
    JourneyStatus,
    JourneyVersion,
    ReentryPolicy,
)

# Why the re-entry rules refuse an enrollment (journey.enrollment_refused's reason).
ALREADY_ENROLLED = "already_enrolled"
REENTRY_NEVER = "reentry_never"
REENTRY_TOO_SOON = "reentry_too_soon"


@dataclass
class Wanted:
    """One contact a trigger enrolls in one journey (see enroll_many)."""

    version: JourneyVersion
    contact_id: int
    next_run_at: object
    # Kept on the enrollment as context["trigger"]: {"type", "properties", ...}.
    trigger: dict
    # The audit entry's reason ("event:12", "date:renewal_date") and data.
    reason: str
    data: dict
    trigger_event_id: int | None = None
    # Unique in the journey when set (Enrollment.trigger_key): a second enrollment with it is never made.
    trigger_key: str = ""


def enroll_many(wanted: list[Wanted], now, refused: list | None = None) -> int:
    """Enroll contacts, each in its version's journey, refusing what re-entry rules forbid (audited
    as journey.enrollment_refused with the reason, beside the `refused` entries the caller built).
    A fixed number of queries whatever their number. Returns how many were enrolled."""
    refused = list(refused or [])
    wanted = only_test_contacts_in_testing(wanted)
    history = {}
    if wanted:
        for journey_id, contact_id, state, entered_at in Enrollment.objects.filter(
            journey_id__in={w.version.journey_id for w in wanted}, contact_id__in={w.contact_id for w in wanted}
        ).values_list("journey_id", "contact_id", "state", "entered_at"):
            history.setdefault((journey_id, contact_id), []).append((state, entered_at))
    new, by_row = [], {}
    for w in wanted:
        version = w.version
        reason = reentry_refusal(version, history.get((version.journey_id, w.contact_id), []), now)
        if reason:
            refused.append(audit.build("journey.enrollment_refused", contact_id=w.contact_id, obj=version.journey,
                                       reason=reason, data=w.data))
            continue
        new.append(Enrollment(journey_id=version.journey_id, journey_version=version, contact_id=w.contact_id,
                              current_step_key=version.first_step_key, state=EnrollmentState.ACTIVE,
                              next_run_at=w.next_run_at, entered_at=now, trigger_event_id=w.trigger_event_id,
                              trigger_key=w.trigger_key, context={TRIGGER_CONTEXT: w.trigger}))
        by_row[(version.journey_id, w.contact_id, w.trigger_event_id, w.trigger_key)] = w
    # ignore_conflicts: another worker enrolling the same contact from a different event at the
    # same moment loses quietly to the partial unique constraint instead of failing the batch,
    # and so does a date (or API request) that already enrolled its contact (its trigger_key).
    Enrollment.objects.bulk_create(new, ignore_conflicts=True, batch_size=1000)
    created = [] if not new else [
        en for en in Enrollment.objects.filter(
            journey_id__in={e.journey_id for e in new}, contact_id__in={e.contact_id for e in new}, entered_at=now,
        ).only("pk", "journey_id", "contact_id", "trigger_event_id", "trigger_key")
        if (en.journey_id, en.contact_id, en.trigger_event_id, en.trigger_key) in by_row
    ]
    entries = []
    for en in created:
        w = by_row[(en.journey_id, en.contact_id, en.trigger_event_id, en.trigger_key)]
        entries.append(audit.build("journey.enrolled", contact_id=en.contact_id, obj=en, reason=w.reason,
                                   data={"journey": en.journey_id, **w.data}))
    audit.record_many(entries + refused)
    return len(entries)


def only_test_contacts_in_testing(wanted: list[Wanted]) -> list[Wanted]:
    """`wanted` without the contacts a journey in testing may not enroll: all but test contacts.
    One query, and only when a journey of `wanted` is in testing (each version's journey loaded)."""
    testing = [w for w in wanted if w.version.journey.status == JourneyStatus.TESTING]
    if not testing:
        return wanted
    tests = set(Contact.objects.filter(pk__in={w.contact_id for w in testing}, is_test=True)
                .values_list("pk", flat=True))
    return [w for w in wanted if w.version.journey.status != JourneyStatus.TESTING or w.contact_id in tests]


def reentry_refusal(version, past, now) -> str:
    """Why the version's re-entry rules refuse a contact whose enrollments in its journey are
    `past` [(state, entered_at)], or "" when they may enter."""
    if any(state in LIVE_ENROLLMENT_STATES for state, _ in past):
        return ALREADY_ENROLLED
    if not past or version.reentry == ReentryPolicy.ALWAYS:
        return ""
    if version.reentry == ReentryPolicy.NEVER:
        return REENTRY_NEVER
    last_entry = max(entered for _, entered in past)
    if now - last_entry < scaled(version.reentry_after_seconds or 0):
        return REENTRY_TOO_SOON
    return ""

