"""One approval pattern for what marketers send: journeys now, campaigns next.

The shape: an abstract model, `Approvable`, puts the approval's current state on the approved
row itself (who asked and when, who approved and when, and the digest of what was asked for and
approved), and plain functions move it: request(), approve(), reset(), and refusal() ("may it
run?"). Fields on the row rather than a shared Approval table, because the approval is one
current state per object, read with the object on every list and every activation check without
a join; its history is the audit log, which already says who did what and when:
`<prefix>.approval_requested`, `<prefix>.approved`, `<prefix>.approval_reset` and
`<prefix>.approval_refused` (with the reason), the prefix being the model's AUDIT_PREFIX.

The rules, the same for every approvable:
- The requester is whoever asks. Anyone allowed to edit the object may ask.
- The approver holds the object's APPROVE_PERMISSION and is not the requester (four eyes), and
  approves only a pending request, for the content they saw (`seen_digest`): a page opened
  before an edit cannot approve what the edit made.
- What was approved is a digest (digest_of()) of the object as it would run: for a journey its
  draft_snapshot, for a campaign what its start would send. An edit that changes the digest
  resets a request or an approval (reset(), audited); refusal() never accepts an approval whose
  digest is not the current one, even if no edit reset it (a template published since changes
  a journey's digest too).

The functions take the object as the caller locked it, inside the caller's transaction, and the
digest of its current content; they save only the approval fields and raise ApprovalRefused (a
ValidationError whose code says why) without writing anything. The caller audits a refusal once
its transaction is over, so the refusal's entry is not rolled back with it (see audit_refusal).
"""
import hashlib
import json
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.timezone import localtime

from omni import audit

APPROVAL_FIELDS = ["approval_requested_by", "approval_requested_at", "approved_by", "approved_at",
                   "approval_digest", "approval_reset_at"]

# Why an approval step was refused (the audit entry's reason).
NOT_ALLOWED = "not_allowed"
OWN_REQUEST = "own_request"
NOT_REQUESTED = "not_requested"
CHANGED_SINCE_SEEN = "changed_since_seen"
ALREADY_REQUESTED = "already_requested"
ALREADY_APPROVED = "already_approved"
NOT_APPROVED = "not_approved"


class Approvable(models.Model):
    """The approval state of a row that needs a second person's yes before it runs."""

    # Set by each model: the permission that lets someone approve, e.g. "campaigns.approve_journey";
    # and the prefix of its audit actions, e.g. "journey".
    APPROVE_PERMISSION = ""
    AUDIT_PREFIX = ""

    approval_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, editable=False, on_delete=models.SET_NULL, related_name="+")
    approval_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, editable=False, on_delete=models.SET_NULL, related_name="+")
    approved_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The digest of what was asked for, and once approved of what was approved (digest_of()).
    approval_digest = models.CharField(max_length=64, blank=True, default="", editable=False)
    # When an edit last reset a request or an approval; cleared by the next request.
    approval_reset_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        abstract = True


class ApprovalRefused(ValidationError):
    """An approval step refused; `reason` (also the ValidationError's code) says why, the message in words."""

    def __init__(self, reason: str, message: str):
        super().__init__(message, code=reason)
        self.reason = reason


def digest_of(content) -> str:
    """A stable SHA-256 of `content` (JSON-shaped: dicts, lists, strings, numbers; dates and times
    as their text): equal content, equal digest, whatever the order of a dict's keys."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def who(user) -> str:
    """A user as the page and the messages name them."""
    if user is None:
        return "a user since removed"
    return user.get_full_name() or user.get_username()


def when(moment) -> str:
    return date_format(localtime(moment), "DATETIME_FORMAT")


def request(obj: Approvable, *, actor, digest: str, now=None) -> None:
    """`actor` asks for approval of the object as it is now (`digest`). Refused when it is already
    requested or approved as it is."""
    if obj.approval_digest == digest and obj.approved_at:
        raise ApprovalRefused(ALREADY_APPROVED, f"{_name(obj)} is already approved as it is, by "
                                                f"{who(obj.approved_by)} at {when(obj.approved_at)}.")
    if obj.approval_digest == digest and obj.approval_requested_at:
        raise ApprovalRefused(ALREADY_REQUESTED, f"Approval of {_name(obj)} as it is was already requested by "
                                                 f"{who(obj.approval_requested_by)} at "
                                                 f"{when(obj.approval_requested_at)}.")
    now = now or timezone.now()
    _set(obj, approval_requested_by=actor, approval_requested_at=now, approved_by=None, approved_at=None,
         approval_digest=digest, approval_reset_at=None)
    audit.record(f"{obj.AUDIT_PREFIX}.approval_requested", obj=obj, actor=actor, data={"digest": digest})


def approve(obj: Approvable, *, actor, digest: str, seen_digest: str | None = None, now=None) -> None:
    """`actor` approves the pending request, for the content they saw (`seen_digest`, by default
    the current one). Refused to whoever lacks the approve permission, to the requester, without a
    request, and when the content changed since it was requested or seen."""
    if not actor.has_perm(obj.APPROVE_PERMISSION):
        raise ApprovalRefused(NOT_ALLOWED, f"{who(actor)} may not approve {_name(obj)}: that needs the permission "
                                           f"{obj.APPROVE_PERMISSION!r} (the Marketing approvers group).")
    if obj.approved_at and obj.approval_digest == digest:
        raise ApprovalRefused(ALREADY_APPROVED, f"{_name(obj)} is already approved as it is, by "
                                                f"{who(obj.approved_by)} at {when(obj.approved_at)}.")
    if not obj.approval_requested_at or obj.approval_digest != digest:
        raise ApprovalRefused(NOT_REQUESTED, f"Nobody has asked for approval of {_name(obj)} as it is now: "
                                             f"its author requests approval first.")
    if obj.approval_requested_by_id == actor.pk:
        raise ApprovalRefused(OWN_REQUEST, f"{who(actor)} asked for this approval, so someone else must give it: "
                                           f"another member of the Marketing approvers group.")
    if seen_digest is not None and seen_digest != digest:
        raise ApprovalRefused(CHANGED_SINCE_SEEN, f"{_name(obj)} changed after you opened the page: nothing was "
                                                  f"approved. Review it as it is now, then approve.")
    now = now or timezone.now()
    _set(obj, approved_by=actor, approved_at=now)
    audit.record(f"{obj.AUDIT_PREFIX}.approved", obj=obj, actor=actor,
                 data={"digest": digest, "requested_by": obj.approval_requested_by_id})


def reset(obj: Approvable, *, actor, digest: str, now=None) -> bool:
    """Clear a request or an approval made for other content than `digest` (an edit changed it),
    audited. Returns whether there was one to reset."""
    if not obj.approval_requested_at or obj.approval_digest == digest:
        return False
    was = "approval" if obj.approved_at else "request"
    data = {"was": was, "approved_digest" if obj.approved_at else "requested_digest": obj.approval_digest,
            "digest": digest, "requested_by": obj.approval_requested_by_id, "approved_by": obj.approved_by_id}
    _set(obj, approval_requested_by=None, approval_requested_at=None, approved_by=None, approved_at=None,
         approval_digest="", approval_reset_at=now or timezone.now())
    audit.record(f"{obj.AUDIT_PREFIX}.approval_reset", obj=obj, actor=actor, reason="changed", data=data)
    return True


def restated(obj: Approvable, *, before: str, after: str) -> None:
    """The object's content was written anew without changing what it does (its digest went from
    `before` to `after`): a request or approval of `before` becomes one of `after`."""
    if obj.approval_requested_at and obj.approval_digest == before and before != after:
        _set(obj, approval_digest=after)


def refusal(obj: Approvable, *, digest: str) -> ApprovalRefused | None:
    """May it run as it is (`digest`)? None when approved as it is; else why not, in words."""
    if obj.approved_at and obj.approval_digest == digest:
        return None
    if obj.approved_at:
        return ApprovalRefused(NOT_APPROVED, f"{_name(obj)} changed after {who(obj.approved_by)} approved it: "
                                             f"request approval of it as it is now.")
    if obj.approval_requested_at and obj.approval_digest == digest:
        return ApprovalRefused(NOT_APPROVED, f"{_name(obj)} awaits approval, requested by "
                                             f"{who(obj.approval_requested_by)} at "
                                             f"{when(obj.approval_requested_at)}: a marketing approver approves it "
                                             f"first.")
    return ApprovalRefused(NOT_APPROVED, f"{_name(obj)} needs approval before it runs: request approval, then "
                                         f"a marketing approver (someone other than the requester) approves it.")


def audit_refusal(obj: Approvable, refused: ApprovalRefused, *, actor, step: str) -> None:
    """Record a refused `step` (request, approve, activate...) with its reason. Call it outside the
    transaction the refusal rolled back."""
    audit.record(f"{obj.AUDIT_PREFIX}.approval_refused", obj=obj, actor=actor, reason=refused.reason,
                 data={"step": step, "message": " ".join(refused.messages)})


@dataclass(frozen=True)
class ApprovalState:
    """Where an object's approval stands, for its page: `status` is one of not_needed, needed,
    requested, approved, stale (approved, then changed without an edit resetting it) or reset."""

    status: str
    words: str
    requested_by_id: int | None = None


def state(obj: Approvable, *, digest: str, needed: bool, not_needed_because: str = "") -> ApprovalState:
    """The approval of `obj` as it is now (`digest`), in words."""
    if not needed:
        return ApprovalState("not_needed", f"Approval is not needed: {not_needed_because or 'nothing asks for it'}.")
    if obj.approved_at and obj.approval_digest == digest:
        return ApprovalState("approved", f"Approved by {who(obj.approved_by)} at {when(obj.approved_at)}, for this "
                                         f"draft (requested by {who(obj.approval_requested_by)} at "
                                         f"{when(obj.approval_requested_at)}).", obj.approval_requested_by_id)
    if obj.approved_at:
        return ApprovalState("stale", f"Approved by {who(obj.approved_by)} at {when(obj.approved_at)} for an "
                                      f"earlier version: what it sends has changed since (a template published "
                                      f"anew?). Request approval again.")
    if obj.approval_requested_at and obj.approval_digest == digest:
        return ApprovalState("requested", f"Approval requested by {who(obj.approval_requested_by)} at "
                                          f"{when(obj.approval_requested_at)}; awaiting a marketing approver.",
                             obj.approval_requested_by_id)
    if obj.approval_reset_at:
        return ApprovalState("reset", f"Needed. The last request or approval was reset at "
                                      f"{when(obj.approval_reset_at)} because the draft changed: request approval "
                                      f"again.")
    return ApprovalState("needed", "Needed before it can be activated: nobody has requested it yet.")


def _set(obj: Approvable, **values) -> None:
    for name, value in values.items():
        setattr(obj, name, value)
    type(obj).objects.filter(pk=obj.pk).update(**values)


def _name(obj) -> str:
    return f"{obj._meta.verbose_name.capitalize()} {str(obj)!r}"
