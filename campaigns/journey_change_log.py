"""A journey's change log, for its page: what people (and Omni) did to it, newest first, in words.

Read from the audit log (omni.audit.for_object): the entries about the journey (edits,
activations, pauses, resumes, contacts moved, approvals, clones, refusals) and those about its
versions (publishing is audited on the JourneyVersion it made). Two queries, whatever the number
of entries or versions. Entries about one contact (an enrollment refused) belong to that
contact's timeline, not here.
"""
from dataclasses import dataclass
from datetime import datetime

from omni import audit
from omni.models import AuditEntry

from .models import Journey, JourneyVersion

# Enough to see what happened lately; the audit log holds the rest.
CHANGE_LOG_LIMIT = 50
# Audited on the journey, but about one contact each.
NOT_CHANGES = ("journey.enrollment_refused",)
# What someone was refused, by the step journey.approval_refused names.
REFUSED_STEPS = {"activate": "could not activate the journey", "publish": "could not publish the draft",
                 "request": "could not request approval", "approve": "could not approve the draft"}


@dataclass(frozen=True)
class Change:
    occurred_at: datetime
    who: str
    what: str
    action: str


def journey_changes(journey: Journey, *, limit: int = CHANGE_LOG_LIMIT) -> tuple[list[Change], bool]:
    """The journey's latest `limit` changes, newest first, and whether there are older ones."""
    versions = [str(pk) for pk in JourneyVersion.objects.filter(journey=journey).values_list("pk", flat=True)]
    of_versions = AuditEntry.objects.filter(object_type=JourneyVersion._meta.label_lower, object_id__in=versions)
    entries = list(
        (audit.for_object(journey) | of_versions)
        .exclude(action__in=NOT_CHANGES)
        .order_by("-occurred_at", "-id")
        .only("occurred_at", "actor_label", "action", "reason", "data")[: limit + 1]
    )
    return [Change(e.occurred_at, e.actor_label, describe(e.action, e.reason, e.data or {}), e.action)
            for e in entries[:limit]], len(entries) > limit


def describe(action: str, reason: str, data: dict) -> str:
    """One audit entry of a journey's log in words."""
    version = data.get("version")
    on_version = f" (version {version})" if version else ""
    if action == "journey.draft_changed":
        detail = data.get("summary") or data.get("change") or data.get("what") or ""
        step = data.get("step") or data.get("step_key")
        return "edited the draft" + (f": {detail}" if detail else "") + (f" (step {step})" if step and not detail else "")
    if action == "journey.published":
        steps = data.get("steps")
        return f"published version {version}" + (f", {steps} step{'s' if steps != 1 else ''}" if steps else "")
    if action == "journey.activated":
        return f"activated the journey{on_version}"
    if action == "journey.paused":
        return "paused the journey"
    if action == "journey.resumed":
        return f"resumed the journey{on_version}"
    if action == "journey.contacts_moved":
        moved = data.get("moved", 0)
        return f"moved {moved} contact{'s' if moved != 1 else ''} to version {data.get('to_version')}"
    if action == "journey.approval_requested":
        return "requested approval of the draft"
    if action == "journey.approved":
        return "approved the draft"
    if action == "journey.approval_reset":
        was = "approval" if data.get("was") == "approval" else "request for approval"
        return f"reset the {was}: the draft changed"
    if action == "journey.approval_refused":
        doing = REFUSED_STEPS.get(data.get("step"), "could not go on")
        return f"{doing}: {data.get('message') or reason}"
    if action == "journey.activation_refused":
        return "could not activate the journey: " + " ".join(data.get("problems") or [reason])
    if action == "journey.publish_refused":
        return "could not publish the draft: " + " ".join(data.get("problems") or [reason])
    if action == "journey.cloned":
        source, copy = data.get("from") or data.get("source"), data.get("to") or data.get("clone")
        return "cloned the journey" + (f" from {source}" if source else "") + (f" as {copy}" if copy else "")
    if action == "journey.test_send":
        return "sent a test"
    if action == "journey.enrollment_wait_skipped":
        return "skipped a test contact's wait"
    words = action.split(".", 1)[-1].replace("_", " ")
    return words + (f" ({reason})" if reason else "")
