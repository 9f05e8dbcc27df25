"""Every field of a journey or a step that the engine reads is versioned: it is in
JourneyVersion.SNAPSHOT_FIELDS, in draft_snapshot() and (for steps) in PlannedStep, so contacts
run on what was published, never on a draft edited since. A field the engine never reads is
listed below with the reason; a new field in neither place fails here."""
from dataclasses import fields as dataclass_fields

import pytest

from campaigns.actions import draft_snapshot
from campaigns.models import Journey, JourneyStep, JourneyVersion, PlannedStep, StepKind

from .conftest import make_journey

pytestmark = pytest.mark.django_db

# Journey fields that are not versioned, and why.
JOURNEY_FIELDS_NOT_VERSIONED = {
    "id": "identity",
    "name": "a label: a rename shows on every version (the send step passes it to templates as it is now)",
    "slug": "identity in intent keys: renaming it is renaming the journey, for every version",
    "description": "never read by the engine",
    "status": "read live on purpose: pausing a journey holds every version at once",
    "live_version": "the pointer to the version new enrollments pin",
    "created_by": "never read by the engine",
    "created_at": "never read by the engine",
    "updated_at": "never read by the engine",
    "date_trigger_checked_until": "runtime state of the date trigger's tick stage, not a setting",
    "owner": "who answers for the journey: never read by the engine",
    "objective": "what the journey is for, in words: never read by the engine",
    "lifecycle_stage": "whom the journey is for, a label: never read by the engine",
    "approval_requested_by": "the approval of the draft (omni/lib/approval.py), checked before publishing",
    "approval_requested_at": "the approval of the draft, checked before publishing",
    "approved_by": "the approval of the draft, checked before publishing",
    "approved_at": "the approval of the draft, checked before publishing",
    "approval_digest": "the digest of the draft approved: the draft's own snapshot, hashed",
    "approval_reset_at": "when an edit last reset the approval",
    "draft_revision": "counts the draft's edits, so that an edit from a stale page is refused",
    "paused_reason": "why the journey paused itself (auto-pause), shown on its page; not how contacts run",
    "watched_since": "runtime state of auto-pause: its sends count from the last resume",
}
# JourneyStep fields that are not versioned, and why.
STEP_FIELDS_NOT_VERSIONED = {
    "id": "identity",
    "journey": "the version belongs to the journey",
}
# How a step's fields are named in a snapshot row.
STEP_ROW_NAMES = {"template": "template", "next_step": "next", "else_step": "else", "ends": "end"}
# Snapshot row keys that PlannedStep leaves out: the interpreter never reads them.
ROW_KEYS_NOT_PLANNED = {
    "position": "the order of the rows is the order of the steps",
    "template": "the template version is what runs (template_version)",
    "template_key": "shown on the version's page",
    "template_version_number": "shown on the version's page",
    "end": "folded into following (None: the journey ends)",
}
# How PlannedStep names the row keys it keeps.
PLANNED_NAMES = {"template_version": "template_version_id", "next": "following", "else": "else_key"}


def unversioned(model, versioned: set[str], not_versioned: dict, rename=None) -> set[str]:
    """The concrete fields of `model` neither versioned (under their snapshot names) nor listed
    as not versioned."""
    rename = rename or {}
    missing = set()
    for field in model._meta.concrete_fields:
        snapshot_name = rename.get(field.name, field.attname if field.is_relation else field.name)
        if field.name not in not_versioned and snapshot_name not in versioned:
            missing.add(field.name)
    return missing


@pytest.fixture
def draft(welcome_templates):
    email, _ = welcome_templates
    journey = make_journey(name="Every field", slug="every-field", trigger_event="signed_up")
    send = JourneyStep.objects.create(journey=journey, key="send", position=1, kind=StepKind.SEND, template=email,
                                      channel_plan=[{"channel": "email"}])
    done = JourneyStep.objects.create(journey=journey, key="done", position=2, kind=StepKind.EXIT, ends=True)
    send.next_step = send.else_step = done
    send.save()
    return journey


def test_every_journey_field_the_engine_reads_is_in_the_snapshot(draft):
    snapshot = draft_snapshot(draft)

    assert set(snapshot) == set(JourneyVersion.SNAPSHOT_FIELDS)
    assert unversioned(Journey, set(snapshot), JOURNEY_FIELDS_NOT_VERSIONED) == set()
    # and a version keeps each of them
    assert set(JourneyVersion.SNAPSHOT_FIELDS) <= {f.attname for f in JourneyVersion._meta.concrete_fields} | {"steps"}


def test_every_step_field_the_engine_reads_is_in_the_snapshot_rows_and_in_planned_step(draft):
    [row, last] = draft_snapshot(draft)["steps"]

    # (a row says "end" only when the step ends the journey)
    assert unversioned(JourneyStep, set(row) | set(last), STEP_FIELDS_NOT_VERSIONED, STEP_ROW_NAMES) == set()
    planned = {f.name for f in dataclass_fields(PlannedStep)}
    assert {PLANNED_NAMES.get(key, key) for key in row if key not in ROW_KEYS_NOT_PLANNED} == planned


def test_a_field_missing_from_the_snapshot_is_found():
    versioned = set(JourneyVersion.SNAPSHOT_FIELDS) - {"goal_event"}

    assert unversioned(Journey, versioned, JOURNEY_FIELDS_NOT_VERSIONED) == {"goal_event"}
    assert unversioned(Journey, versioned | {"goal_event"}, {}) == set(JOURNEY_FIELDS_NOT_VERSIONED)
