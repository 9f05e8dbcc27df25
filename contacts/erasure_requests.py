"""Erasures that wait for an import: an erasure that would have to wait for a running import naming
the contact (ImportRunning: an all-or-nothing import holds its upload until it ends) is kept as an
ErasureRequest and carried out once the import lets it, by carry_out_erasure_requests (a beat
task, and a task queued at the end of every import), with the requester and reason it was asked
with. The admin's erasure page and the API call request_erasure."""
import logging
from collections import Counter
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from omni import audit

from .actions import ContactAlreadyErased, clean_erasure_reason, erase_contact
from .import_erasure import ImportRunning
from .models import Contact, ErasureOutcome, ErasureRequest, ErasureRequestStatus

ERASED, QUEUED, ALREADY_QUEUED = "erased", "queued", "already_queued"
STILL_WAITING, TAKEN_ELSEWHERE, FAILED = "still_waiting", "taken_elsewhere", "failed"
# Requests one run tries. Each may wait IMPORT_LOCK_WAIT (5 s) for an import still running, so a
# run of ten ends within a minute, the beat's period.
REQUESTS_PER_RUN = 10

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErasureAnswer:
    """What request_erasure did: ERASED (with the counts erase_contact returns), QUEUED behind a
    running import, or ALREADY_QUEUED (a request for the contact was pending); `request` is the
    pending request in the last two."""

    outcome: str
    counts: dict = field(default_factory=dict)
    request: ErasureRequest | None = None


def request_erasure(contact: Contact, actor=None, why: str = "", *, actor_label: str = "", now=None) -> ErasureAnswer:
    """Erase the contact now (contacts.actions.erase_contact) or, when an import naming them is
    running, queue the erasure to be carried out once it has finished: an ErasureRequest keeping
    who asked (`actor`, or `actor_label` for a system) and `why`, audited "contact.erasure_queued"
    (the reason stays off the chain). When a request for the contact is already pending nothing
    new is queued (ALREADY_QUEUED). An erasure done now also settles a request left pending.

    Raises InvalidField ("reason") and ContactAlreadyErased as erase_contact does."""
    why = clean_erasure_reason(why)
    now = now or timezone.now()
    with transaction.atomic():
        try:
            counts = erase_contact(contact, actor, why, actor_label=actor_label, now=now)
        except ImportRunning:
            # erase_contact's own transaction (a savepoint here) rolled back: nothing was erased.
            return _queue(contact, actor, why, actor_label=actor_label, now=now)
        _settle_pending_requests(contact, now)
    return ErasureAnswer(ERASED, counts=counts)


def carry_out_erasure_requests(*, now=None) -> dict[str, int]:
    """Try the pending erasure requests, those tried least recently first, REQUESTS_PER_RUN at
    most (carry_out_erasure_request); returns how many ended each way, e.g. {"erased": 2,
    "still_waiting": 1}."""
    pending = (ErasureRequest.objects.filter(status=ErasureRequestStatus.PENDING)
               .order_by(F("last_tried_at").asc(nulls_first=True), "requested_at")
               .values_list("pk", flat=True)[:REQUESTS_PER_RUN])
    outcomes = Counter()
    for request_id in list(pending):
        try:
            outcomes[carry_out_erasure_request(request_id, now=now)] += 1
        except Exception:
            # One request failing on an unexpected error must not hold up the others: it is counted
            # as tried (so the next run tries the others first) and stays pending.
            logger.exception("Erasure request %s failed; it stays pending.", request_id)
            ErasureRequest.objects.filter(pk=request_id).update(attempts=F("attempts") + 1,
                                                                last_tried_at=now or timezone.now())
            outcomes[FAILED] += 1
    return dict(outcomes)


def carry_out_erasure_request(request_id: int, *, now=None) -> str:
    """Erase the contact of a pending request with the requester and reason it was asked with.
    Done (its reason emptied) once erased, or when the contact was erased meanwhile; left pending,
    its attempts counted, while an import naming the contact still runs. The request is claimed
    first: another run trying it meanwhile skips it. Returns ERASED, ERASED_BY_ANOTHER_REQUEST,
    STILL_WAITING or TAKEN_ELSEWHERE (claimed by another run, or no longer pending)."""
    now = now or timezone.now()
    with transaction.atomic():
        # of=("self",): the request's row only, not its contact's, which erasure locks in its own order.
        request = (ErasureRequest.objects.select_for_update(skip_locked=True, of=("self",))
                   .filter(pk=request_id, status=ErasureRequestStatus.PENDING).first())
        if request is None:
            return TAKEN_ELSEWHERE
        tried = {"attempts": F("attempts") + 1, "last_tried_at": now}
        try:
            erase_contact(Contact.objects.get(pk=request.contact_id), request.requested_by, request.why,
                          actor_label=request.actor_label, now=now)
            outcome = ErasureOutcome.ERASED
        except ContactAlreadyErased:
            outcome = ErasureOutcome.ERASED_BY_ANOTHER_REQUEST
        except ImportRunning:
            ErasureRequest.objects.filter(pk=request.pk).update(**tried)
            return STILL_WAITING
        ErasureRequest.objects.filter(pk=request.pk).update(
            **tried, status=ErasureRequestStatus.DONE, outcome=outcome, done_at=now, why="")
    return outcome


def pending_request_for(contact: Contact | int) -> ErasureRequest | None:
    """The erasure request of the contact (or contact id) waiting for an import, if there is one."""
    return ErasureRequest.objects.filter(contact=contact, status=ErasureRequestStatus.PENDING).first()


def _queue(contact: Contact, actor, why: str, *, actor_label: str, now) -> ErasureAnswer:
    pending = pending_request_for(contact)
    if pending is not None:
        return ErasureAnswer(ALREADY_QUEUED, request=pending)
    asked_by = actor_label or (actor.get_username() if getattr(actor, "is_authenticated", False) else "")
    try:
        with transaction.atomic():
            request = ErasureRequest.objects.create(
                contact=contact, requested_by=actor if getattr(actor, "is_authenticated", False) else None,
                actor_label=asked_by, requested_at=now, why=why)
    except IntegrityError:
        # Another request for the contact was queued between our look and our insert.
        return ErasureAnswer(ALREADY_QUEUED, request=pending_request_for(contact))
    audit.record("contact.erasure_queued", contact=contact, obj=request, actor=actor, actor_label=actor_label,
                 reason="import_running", data={"erasure_request": request.pk})
    return ErasureAnswer(QUEUED, request=request)


def _settle_pending_requests(contact: Contact, now) -> None:
    # A request being tried right now by a run is skipped, not waited for (that run holds it and
    # waits for this erasure's locks): it finds the contact erased and settles itself.
    pending = list(ErasureRequest.objects.select_for_update(skip_locked=True, of=("self",))
                   .filter(contact=contact, status=ErasureRequestStatus.PENDING).values_list("pk", flat=True))
    if pending:
        ErasureRequest.objects.filter(pk__in=pending).update(
            status=ErasureRequestStatus.DONE, outcome=ErasureOutcome.ERASED_BY_ANOTHER_REQUEST, done_at=now, why="")
