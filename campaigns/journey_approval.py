"""A journey's approval: omni/lib/approval.py's pattern, given a journey's digest (its draft as
it would run, actions.draft_snapshot) and its rule (actions.journey_needs_approval: marketing
sends, with OMNI_JOURNEY_APPROVAL_REQUIRED on).

A marketer requests approval of the draft; a marketing approver (campaigns.approve_journey, not
the requester) approves it; activation (and publishing changes to a running journey) checks it in
campaigns/actions.py. Every draft edit calls draft_edited(), which resets a request or approval
the edit made stale. Each step, and each refusal, is audited.
"""
from django.conf import settings
from django.db import connection, transaction

from omni.lib import approval

from .actions import draft_snapshot, journey_digest, journey_needs_approval
from .models import Journey


def draft_edited(journey: Journey, *, actor) -> None:
    """Called at the end of every draft edit's transaction: resets an approval the edit made stale."""
    with transaction.atomic():
        locked = _locked(journey)
        if locked.approval_requested_at:
            approval.reset(locked, actor=actor, digest=journey_digest(draft_snapshot(locked)))
    _copy_approval(locked, journey)


def restated(journey: Journey, restate) -> None:
    """Run `restate()`, which writes the locked journey's draft anew without changing what it does
    (steps written before the builder, whose empty next meant the next position, made explicit):
    a request or approval of the draft as it was is one of the draft as it is written now, so that
    an edit that changes nothing afterwards keeps it."""
    before = journey_digest(draft_snapshot(journey)) if journey.approval_requested_at else None
    restate()
    if before is not None:
        approval.restated(journey, before=before, after=journey_digest(draft_snapshot(journey)))


def request_journey_approval(journey: Journey, *, actor) -> Journey:
    """`actor` asks a marketing approver to approve the journey's draft as it is. Audited; a
    refusal (already requested or approved as it is) too, with its reason."""
    return _step(journey, actor, "request", lambda locked, digest: approval.request(locked, actor=actor,
                                                                                     digest=digest))


def approve_journey(journey: Journey, *, actor, seen_digest: str | None = None) -> Journey:
    """`actor` approves the requested draft as they saw it (`seen_digest`, from the page they
    approved on). Refused, with the reason and audited, to someone without
    campaigns.approve_journey, to the requester, without a request, or when the draft changed."""
    return _step(journey, actor, "approve", lambda locked, digest: approval.approve(
        locked, actor=actor, digest=digest, seen_digest=seen_digest))


def journey_approval_state(journey: Journey, snapshot: dict | None = None) -> approval.ApprovalState:
    """Where the journey's approval stands, for its page."""
    snapshot = snapshot if snapshot is not None else draft_snapshot(journey)
    if not settings.OMNI_JOURNEY_APPROVAL_REQUIRED:
        because = "approval of journeys is turned off here (OMNI_JOURNEY_APPROVAL_REQUIRED)"
    else:
        because = "the journey sends no marketing messages"
    return approval.state(journey, digest=journey_digest(snapshot), needed=journey_needs_approval(snapshot),
                          not_needed_because=because)


def _step(journey: Journey, actor, step: str, move) -> Journey:
    try:
        with transaction.atomic():
            locked = _locked(journey)
            move(locked, journey_digest(draft_snapshot(locked)))
    except approval.ApprovalRefused as refused:
        approval.audit_refusal(journey, refused, actor=actor, step=step)
        raise
    _copy_approval(locked, journey)
    return journey


def _locked(journey: Journey) -> Journey:
    # NO KEY, as actions._lock: a tick inserting visits holds KEY SHARE on the journey row.
    of = {"of": ("self",)} if connection.features.has_select_for_update_of else {}
    return Journey.objects.select_for_update(no_key=True, **of).select_related(
        "approval_requested_by", "approved_by").get(pk=journey.pk)


def _copy_approval(source: Journey, target: Journey) -> None:
    for name in approval.APPROVAL_FIELDS:
        field = Journey._meta.get_field(name)
        setattr(target, field.attname, getattr(source, field.attname))
