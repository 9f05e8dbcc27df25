"""Where an enrollment's state may go, and the one place it changes.

Enrollment.state changes through the functions here and nowhere else: each one changes an
enrollment in memory, refusing a move its state does not allow, and returns the audit entry
that says so; the caller writes the rows (save(), or the step interpreter's own bulk write) and
the entries in one transaction, holding the rows' locks. New enrollments start active
(actions.enroll_contact, and admission.enroll_many for events and dates).

A paused enrollment keeps its step and its next_run_at: it leaves the due index while paused,
and once resumed a wait that ran out meanwhile is due at once.
"""
from omni import audit
from omni.lib.bulk import bulk_update

from .models import EnrollmentState

S = EnrollmentState

TRANSITIONS = {
    S.ACTIVE: {S.PAUSED, S.COMPLETED, S.CONVERTED, S.EXITED, S.FAILED},
    S.PAUSED: {S.ACTIVE, S.CONVERTED, S.EXITED},
    S.COMPLETED: set(),
    S.CONVERTED: set(),
    S.EXITED: set(),
    S.FAILED: set(),
}

# Every column the moves below write.
FIELDS = ["state", "next_run_at", "claimed_at", "ended_at", "end_reason", "paused_at", "paused_by_label",
          "pause_reason", "paused_for_conversation_id", "waiting_for", "woken_at"]

# The audit reasons of pauses and resumes a conversation caused, and of those staff made;
# staff's own words are kept beside the entry as personal data (they may name the customer).
CONVERSATION_OPEN = "conversation_open"
CONVERSATION_CLOSED = "conversation_closed"
MANUAL = "manual"


class EnrollmentMoveRefused(ValueError):
    pass


def can_move(enrollment, to: str) -> bool:
    return to in TRANSITIONS.get(enrollment.state, set())


def _check(enrollment, to: str) -> None:
    if not can_move(enrollment, to):
        raise EnrollmentMoveRefused(f"Enrollment {enrollment.pk} is {enrollment.state}; it cannot become {to}.")


def end(enrollment, state: str, reason: str, now, *, actor=None, actor_label="", data: dict | None = None):
    """End the enrollment (completed, converted, exited or failed) with its reason."""
    _check(enrollment, state)
    enrollment.state = state
    enrollment.end_reason = reason
    enrollment.ended_at = now
    enrollment.next_run_at = None
    enrollment.claimed_at = None
    # It waits for nothing any more (and leaves the enrollment_waiting index).
    enrollment.waiting_for = ""
    enrollment.woken_at = None
    return audit.build(f"journey.{state}", contact_id=enrollment.contact_id, obj=enrollment, reason=reason,
                       actor=actor, actor_label=actor_label,
                       data={"journey": enrollment.journey_id, **(data or {})})


def pause(enrollment, *, reason: str, now, conversation_id: int | None = None, actor=None, actor_label=""):
    """Hold an active enrollment at its step. `conversation_id`: the conversation whose opening
    paused it, the only one whose closing resumes it (or hands it over, see hand_over())."""
    _check(enrollment, S.PAUSED)
    enrollment.state = S.PAUSED
    enrollment.paused_at = now
    enrollment.paused_by_label = _label(actor, actor_label)[:150]
    enrollment.pause_reason = reason[:200]
    enrollment.paused_for_conversation_id = conversation_id
    # A claim a worker has not run yet is void: the worker only runs claimed active rows.
    enrollment.claimed_at = None
    return audit.build("journey.enrollment_paused", contact_id=enrollment.contact_id, obj=enrollment, actor=actor,
                       actor_label=actor_label, **_why(reason, CONVERSATION_OPEN if conversation_id else ""),
                       data={"journey": enrollment.journey_id, "step": enrollment.current_step_key,
                             "conversation": conversation_id})


def hand_over(enrollment, conversation_id: int):
    """Pass a paused enrollment on to `conversation_id`, another conversation of the contact still
    open when the one that paused it closed: that one's closing resumes it. It stays paused."""
    if enrollment.state != S.PAUSED or enrollment.paused_for_conversation_id is None:
        raise EnrollmentMoveRefused(f"Enrollment {enrollment.pk} is not paused by a conversation; no other "
                                    f"conversation can hold it.")
    closed = enrollment.paused_for_conversation_id
    enrollment.paused_for_conversation_id = conversation_id
    return audit.build("journey.enrollment_pause_handed_over", contact_id=enrollment.contact_id, obj=enrollment,
                       reason=CONVERSATION_OPEN, data={"journey": enrollment.journey_id,
                                                       "step": enrollment.current_step_key, "closed": closed,
                                                       "conversation": conversation_id})


def resume(enrollment, *, now, reason: str = "", by_conversation: bool = False, actor=None, actor_label=""):
    """Run a paused enrollment again from its step; a step whose time came while it was paused
    is due now (next_run_at is kept, never pushed later)."""
    _check(enrollment, S.ACTIVE)
    paused_for = enrollment.paused_for_conversation_id
    enrollment.state = S.ACTIVE
    if enrollment.next_run_at is None:
        enrollment.next_run_at = now
    enrollment.claimed_at = None
    enrollment.paused_at = None
    enrollment.paused_by_label = ""
    enrollment.pause_reason = ""
    enrollment.paused_for_conversation_id = None
    return audit.build("journey.enrollment_resumed", contact_id=enrollment.contact_id, obj=enrollment, actor=actor,
                       actor_label=actor_label, **_why(reason, CONVERSATION_CLOSED if by_conversation else ""),
                       data={"journey": enrollment.journey_id, "step": enrollment.current_step_key,
                             "conversation": paused_for, "overdue": enrollment.next_run_at <= now})


def save(enrollments: list, entries: list) -> None:
    """Write the moved enrollments (locked by the caller) and their audit entries."""
    bulk_update(enrollments, FIELDS)
    audit.record_many(entries)


def _label(actor, actor_label: str) -> str:
    if actor_label:
        return actor_label
    return actor.get_username() if getattr(actor, "is_authenticated", False) else "system"


def _why(reason: str, code: str) -> dict:
    """The audit entry's reason: the code of a move a conversation caused, else "manual"; words
    given beyond the code are kept beside the entry as personal data."""
    return {"reason": code or MANUAL, "personal": {"reason": reason} if reason and reason != code else None}
