"""The webhook step: the tick only sets the enrollment waiting and, once its batch commits, hands
the call to a real Celery worker on the outbound queue, which calls the endpoint (signed, one
Idempotency-Key per visit, a 500 retried with backoff), keeps the answer on the enrollment and
wakes it; the answer picks the branch."""
import json
from datetime import timedelta

import pytest
from django.utils import timezone

import campaigns.tasks  # noqa: F401  (registers call_webhook_task before the worker starts)
from campaigns import webhook_calls
from campaigns.actions import activate_journey, pause_enrollment, resume_enrollment
from campaigns.models import Enrollment, EnrollmentState, JourneyStep, JourneyStepVisit, StepKind
from campaigns.tasks import call_webhook_task
from campaigns.tick import tick
from contacts.models import Contact
from omni.lib.webhooks import WebhookAnswer, verify_signature
from omni.models import WebhookCall, WebhookEndpoint

from .conftest import make_journey


@pytest.fixture
def crm(webhook_receiver):
    return WebhookEndpoint.objects.create(name="CRM", url=f"{webhook_receiver.url}/omni", timeout_seconds=2)


@pytest.fixture
def asking_journey(crm):
    """Ask the CRM; if its answer says vip, exit "vip", else exit "other" (also on no answer)."""
    journey = make_journey(name="Ask", slug="ask", trigger_event="signed_up")
    ask = JourneyStep.objects.create(journey=journey, key="ask", position=1, kind=StepKind.WEBHOOK,
                                     config={"endpoint": "CRM", "timeout_seconds": 600, "data": {"offer": "spring"}})
    is_vip = JourneyStep.objects.create(journey=journey, key="is-vip", position=2, kind=StepKind.CONDITION,
                                        config={"check": "webhook", "step": "ask", "name": "tier",
                                                "operator": "equals", "value": "vip"})
    vip = JourneyStep.objects.create(journey=journey, key="vip", position=3, kind=StepKind.EXIT)
    other = JourneyStep.objects.create(journey=journey, key="other", position=4, kind=StepKind.EXIT)
    ask.else_step = other
    ask.save()
    is_vip.next_step, is_vip.else_step = vip, other
    is_vip.save()
    return activate_journey(journey)


def enroll(journey, contact, at):
    return Enrollment.objects.create(journey=journey, journey_version=journey.live_version, contact=contact,
                                     current_step_key="ask", next_run_at=at, entered_at=at)


def visits_of(enrollment):
    return list(JourneyStepVisit.objects.filter(enrollment=enrollment).order_by("visit_number")
                .values_list("step_key", "outcome"))


@pytest.mark.celery_worker
def test_a_worker_calls_signed_retries_a_500_and_the_answer_picks_the_branch(
        celery_worker, finished_tasks, asking_journey, crm, webhook_receiver, settings):
    # given a CRM that fails once, then answers that Ann is a vip
    settings.OMNI_WEBHOOK_RETRY_BASE_SECONDS = 0.05
    webhook_receiver.answer_next(500, {"error": "busy"})
    webhook_receiver.answer_next(200, {"tier": "vip", "note": "x" * 100})
    ann = enroll(asking_journey, Contact.objects.create(external_id="ann"), timezone.now())

    # when the tick runs her step: it commits, then the worker calls (twice)
    tick(timezone.now())
    finished_tasks.wait_for(call_webhook_task, count=2)

    # then both attempts were signed, with one Idempotency-Key for the visit, and the answer kept
    first, second = webhook_receiver.requests
    for request in (first, second):
        assert verify_signature(crm.secret, request.body, request.headers["X-Omni-Timestamp"],
                                request.headers["X-Omni-Signature"])
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == f"omni:webhook:{ann.pk}:1"
    assert json.loads(first.body) == {"journey": "ask", "step": "ask", "enrollment": ann.pk, "visit": 1,
                                      "contact": {"id": ann.contact_id, "external_id": "ann"},
                                      "data": {"offer": "spring"}}
    assert list(WebhookCall.objects.order_by("attempt").values_list("attempt", "status_code", "outcome")) == [
        (1, 500, "retryable"), (2, 200, "ok")]
    ann.refresh_from_db()
    assert ann.context["webhooks"]["ask"]["answer"] == {"tier": "vip", "note": "x" * 100}
    assert ann.woken_at is not None and ann.current_step_key == "ask"

    # and the next tick takes the branch the answer picks
    tick(timezone.now())
    ann.refresh_from_db()
    assert (ann.state, ann.end_reason) == (EnrollmentState.EXITED, "exit:vip")
    assert visits_of(ann) == [("ask", "webhook:200"), ("is-vip", "true"), ("vip", "exit")]


@pytest.mark.django_db
def test_the_tick_makes_no_call_itself_and_hands_the_call_over_once_its_batch_commits(
        asking_journey, webhook_receiver, django_capture_on_commit_callbacks):
    now = timezone.now()
    ann = enroll(asking_journey, Contact.objects.create(external_id="ann"), now)

    with django_capture_on_commit_callbacks() as callbacks:
        tick(now)

    assert webhook_receiver.requests == []
    ann.refresh_from_db()
    assert (ann.waiting_for, ann.next_run_at) == (f"webhook:{ann.pk}:1", now + timedelta(seconds=600))
    assert len(callbacks) == 1


@pytest.mark.django_db
def test_no_answer_before_the_timeout_takes_the_else_branch_and_a_late_answer_is_dropped(asking_journey):
    now = timezone.now()
    ann = enroll(asking_journey, Contact.objects.create(external_id="ann"), now)
    tick(now)

    tick(now + timedelta(seconds=600))
    late = webhook_calls.keep_answer(ann.pk, f"webhook:{ann.pk}:1", "ask",
                                     WebhookAnswer(ok=True, retryable=False, status=200, body={"tier": "vip"}))

    ann.refresh_from_db()
    assert late is False and "webhooks" not in ann.context
    assert (ann.end_reason, visits_of(ann)[0]) == ("exit:other", ("ask", "timeout"))


@pytest.mark.django_db
def test_a_failed_call_takes_the_else_branch(asking_journey):
    now = timezone.now()
    ann = enroll(asking_journey, Contact.objects.create(external_id="ann"), now)
    tick(now)

    webhook_calls.keep_answer(ann.pk, f"webhook:{ann.pk}:1", "ask",
                              WebhookAnswer(ok=False, retryable=False, status=404, body=None, error="HTTP 404"), now)
    tick(now + timedelta(seconds=1))

    ann.refresh_from_db()
    assert (ann.end_reason, visits_of(ann)[0]) == ("exit:other", ("ask", "webhook:failed"))


@pytest.mark.django_db
def test_an_answer_to_a_paused_enrollment_is_held_until_it_resumes(asking_journey):
    now = timezone.now()
    ann = enroll(asking_journey, Contact.objects.create(external_id="ann"), now)
    tick(now)
    pause_enrollment(ann, reason="on hold", now=now)

    webhook_calls.keep_answer(ann.pk, f"webhook:{ann.pk}:1", "ask",
                              WebhookAnswer(ok=True, retryable=False, status=200, body={"tier": "vip"}), now)
    tick(now + timedelta(seconds=1))
    ann.refresh_from_db()
    assert ann.state == EnrollmentState.PAUSED and visits_of(ann) == []

    resume_enrollment(ann, now=now + timedelta(hours=1))
    tick(now + timedelta(hours=1))
    ann.refresh_from_db()
    assert ann.end_reason == "exit:vip"


@pytest.mark.django_db
def test_publishing_refuses_a_missing_or_inactive_endpoint(crm):
    from django.core.exceptions import ValidationError

    crm.active = False
    crm.save()
    journey = make_journey(name="Ask", slug="ask", trigger_event="signed_up")
    JourneyStep.objects.create(journey=journey, key="a", position=1, kind=StepKind.WEBHOOK,
                               config={"endpoint": "CRM", "timeout_seconds": 60})
    JourneyStep.objects.create(journey=journey, key="b", position=2, kind=StepKind.WEBHOOK,
                               config={"endpoint": "ERP", "timeout_seconds": 60})

    with pytest.raises(ValidationError) as refused:
        activate_journey(journey)

    text = " ".join(refused.value.messages)
    assert "Webhook step 'a': config.endpoint 'CRM' is inactive." in text
    assert "Webhook step 'b': config.endpoint 'ERP' is not a webhook endpoint" in text
