"""The orchestration tick: events to enrollments to messages, decided, queued, audited.

Seeds `scale` contacts who just signed up (with consents; one in ten never opted in to SMS
marketing), runs the welcome journey's first tick (enroll, send the email) and, after the
wait, the second (condition, send the SMS). Celery publishes to an in-memory broker: counted,
never consumed.
"""
import time
from datetime import timedelta

from celery.signals import before_task_publish
from django.db import connection, reset_queries
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from . import Figure, find


def run(scale: int, *, figures, log) -> list[Figure]:
    from omni.celery import app

    app.conf.broker_url = "memory://"
    app.conf.task_always_eager = False
    results = measure(scale)
    ceiling = find(figures, "claim_ceiling", "steps_per_s")
    if ceiling is not None:
        steps = find(results, "journey_tick", "steps_per_second")
        results.append(Figure("journey_tick", "ratio_to_claim_ceiling", steps.value / ceiling.value, "ratio", steps.n,
                              notes=f"{steps.value:.0f} / {ceiling.value:.0f} steps/s"))
    return results


def seed(scale: int) -> None:
    from campaigns.actions import activate_journey
    from campaigns.models import Journey, JourneyStep, StepKind
    from compliance.models import Consent
    from contacts.models import Contact, ContactEvent
    from templates.actions import publish_template
    from templates.models import Template, TemplateVariant

    email = Template.objects.create(key="bench-email", name="Bench email", purpose="marketing")
    TemplateVariant.objects.create(template=email, channel="email", subject="Welcome, {{ first_name }}!",
                                   text_body="Hi {{ first_name }}", html_body="<p>Hi {{ first_name }}</p>")
    sms = Template.objects.create(key="bench-sms", name="Bench SMS", purpose="marketing")
    TemplateVariant.objects.create(template=sms, channel="sms", text_body="Hi {{ first_name }}, did you see it?")
    publish_template(email)
    publish_template(sms)
    journey = Journey.objects.create(name="Bench", slug="bench", trigger_event="signed_up")
    steps = [
        JourneyStep(journey=journey, key="email", position=1, kind=StepKind.SEND, template=email,
                    channel_plan=[{"channel": "email"}]),
        JourneyStep(journey=journey, key="wait", position=2, kind=StepKind.WAIT, config={"seconds": 60}),
        JourneyStep(journey=journey, key="opened", position=3, kind=StepKind.CONDITION,
                    config={"check": "engaged", "step": "email"}),
        JourneyStep(journey=journey, key="sms", position=4, kind=StepKind.SEND, template=sms,
                    channel_plan=[{"channel": "sms"}]),
    ]
    JourneyStep.objects.bulk_create(steps)
    check, send_sms = JourneyStep.objects.get(key="opened"), JourneyStep.objects.get(key="sms")
    check.else_step = send_sms
    check.save()
    activate_journey(journey)

    contacts = Contact.objects.bulk_create(
        [Contact(external_id=f"b{i}", email=f"b{i}@example.com", phone=f"+1415555{i % 10000:04d}", first_name="Bo")
         for i in range(scale)], batch_size=5000,
    )
    # One in ten never opted in to SMS marketing: the gate skips them, which is part of the work.
    Consent.objects.bulk_create(
        [Consent(contact=c, channel=channel, purpose="marketing", status="granted")
         for i, c in enumerate(contacts) for channel in (("email", "sms") if i % 10 else ("email",))],
        batch_size=5000,
    )
    ContactEvent.objects.bulk_create(
        [ContactEvent(contact=c, name="signed_up", idempotency_key=f"signup-{c.pk}", source="bench") for c in contacts],
        batch_size=5000,
    )


def measure(scale: int) -> list[Figure]:
    """Seed, run both ticks and return the tick's figures (no ratio)."""
    from campaigns import engine
    from campaigns.models import JourneyStepVisit
    from channels.models import Delivery

    seed(scale)
    published = []

    def count(sender=None, **kwargs):
        published.append(sender)

    before_task_publish.connect(count, weak=False)
    try:
        now = timezone.now()
        first_queries, first_seconds, first = _timed(lambda: engine.tick(now))
        later = now + timedelta(seconds=61)
        second_queries, second_seconds, second = _timed(lambda: engine.tick(later))
    finally:
        before_task_publish.disconnect(count)

    # Each enrollment visits each send step once: a second message for a step is a duplicate.
    duplicates = (
        JourneyStepVisit.objects.filter(message__isnull=False).values("enrollment_id", "step_key").order_by()
        .annotate(n=Count("id")).filter(n__gt=1).count()
    )
    deliveries = Delivery.objects.count()
    steps = first.steps + second.steps
    seconds = first_seconds + second_seconds
    notes = f"{scale} contacts; first tick {first_seconds:.2f}s, second {second_seconds:.2f}s"
    return [
        Figure("journey_tick", "first_tick_contacts_per_second", scale / first_seconds, "contacts/s", scale),
        Figure("journey_tick", "second_tick_steps_per_second", second.steps / second_seconds, "steps/s", second.steps),
        Figure("journey_tick", "steps_per_second", steps / seconds, "steps/s", steps, notes=notes),
        Figure("journey_tick", "queries_per_1000_steps", 1000 * (first_queries + second_queries) / steps, "queries",
               steps),
        Figure("journey_tick", "celery_messages_per_1000_steps", 1000 * len(published) / steps, "messages", steps),
        Figure("journey_tick", "celery_messages_per_1000_deliveries", 1000 * len(published) / max(deliveries, 1),
               "messages", deliveries),
        Figure("journey_tick", "duplicate_messages", duplicates, "messages", steps),
    ]


def _timed(work):
    reset_queries()
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        result = work()
        elapsed = time.perf_counter() - started
    return len(queries), elapsed, result
