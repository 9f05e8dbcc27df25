"""A journey's webhook step, outside the tick: the call, its retries, and the answer kept.

The step itself (campaigns/steps.py) only sets the enrollment waiting for "webhook:<enrollment
id>:<visit number>" and enqueues call_webhook_task once its batch commits: no HTTP call is made
while the tick holds the batch's rows. The task calls omni.lib.webhooks (signed, with the
Idempotency-Key "omni:<that key>", the same on every attempt), retries what may be retried
with backoff, and then keeps the answer (up to 16 KiB) in Enrollment.context["webhooks"][<step
key>] and wakes the enrollment, unless it has stopped waiting for it (timed out, moved on,
ended). A paused enrollment keeps the answer and runs its step once resumed.
"""

from django.db import transaction
from django.utils import timezone

from omni.choices import OUTBOUND_QUEUE
from omni.lib import webhooks
from omni.lib.tasks import publish, task_named
from omni.models import WebhookEndpoint

from .models import Enrollment


# The task lives in campaigns/tasks.py, which imports the tick, which imports the steps that call
# enqueue(): looked up by name (omni.lib.tasks).
CALL_TASK = "campaigns.tasks.call_webhook_task"


def enqueue(calls: list[tuple]) -> None:
    """Hand the webhook calls a batch of steps made to the outbound workers; each call is
    (enrollment id, waiting_for, step key, endpoint name, body). A call that cannot be published
    is not lost: its step times out and takes its else branch."""
    task = task_named(CALL_TASK)
    for call in calls:
        publish(task, call, queue=OUTBOUND_QUEUE,
                if_lost=f"Could not enqueue the webhook call of enrollment {call[0]}; its step will time out")


def idempotency_key(waiting_for: str) -> str:
    return f"omni:{waiting_for}"


def payload(enrollment, journey, step, visit_number: int) -> dict:
    """What the receiver gets: who, where in which journey, and the step's own data."""
    contact = enrollment.contact
    return {"journey": journey.slug, "step": step.key, "enrollment": enrollment.pk, "visit": visit_number,
            "contact": {"id": contact.pk, "external_id": contact.external_id},
            "data": step.config.get("data") or {}}


def still_waiting(enrollment_id: int, waiting_for: str) -> bool:
    return Enrollment.objects.filter(pk=enrollment_id, waiting_for=waiting_for).exists()


def call_once(enrollment_id: int, waiting_for: str, endpoint_name: str, body: dict, attempt: int):
    """One attempt for a waiting enrollment; None when it no longer waits (nothing is called)."""
    if not still_waiting(enrollment_id, waiting_for):
        return None
    endpoint = WebhookEndpoint.objects.filter(name=endpoint_name).first()
    if endpoint is None:
        return webhooks.WebhookAnswer(ok=False, retryable=False, status=None, body=None,
                                      error=f"No webhook endpoint is named {endpoint_name!r}.")
    return webhooks.call(endpoint, body, idempotency_key=idempotency_key(waiting_for), attempt=attempt)


def keep_answer(enrollment_id: int, waiting_for: str, step_key: str, answer, now=None) -> bool:
    """Keep the answer on the enrollment still waiting for it and wake it. False when it no
    longer waits (the answer came too late)."""
    now = now or timezone.now()
    with transaction.atomic():
        enrollment = (Enrollment.objects.select_for_update(no_key=True)
                      .filter(pk=enrollment_id, waiting_for=waiting_for).only("pk", "context").first())
        if enrollment is None:
            return False
        enrollment.context.setdefault("webhooks", {})[step_key] = {
            "ok": answer.ok, "status": answer.status, "answer": answer.body, "error": answer.error,
            "call": answer.call_id, "answered_at": now.isoformat(),
        }
        enrollment.woken_at = enrollment.next_run_at = now
        enrollment.save(update_fields=["context", "woken_at", "next_run_at"])
    return True
