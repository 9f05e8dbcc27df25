"""Benchmark the orchestration tick: events to enrollments to messages, decided, queued, audited.

    python manage.py bench --scale 10000

Seeds its data with bulk inserts into a throwaway test database (never the configured one),
runs the welcome journey's first tick (enroll, send the email) and, after the wait, the
second (condition, send the SMS), and prints one JSON line per figure on stdout, with a
readable table on stderr. Celery publishes to an in-memory broker: counted, never consumed.
Run it with DATABASE_URL pointing at PostgreSQL; SQLite figures are not comparable.
"""
import json
import sys
import time
from datetime import timedelta

from celery.signals import before_task_publish
from django.core.management.base import BaseCommand
from django.db import connection, reset_queries
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.utils import timezone


class Command(BaseCommand):
    help = "Measure the journey tick (steps per second, queries, Celery messages, duplicates)."

    def add_arguments(self, parser):
        parser.add_argument("--scale", type=int, default=2000, help="Contacts that sign up at once (default 2000).")
        parser.add_argument("--keep-db", action="store_true", help="Keep the benchmark database afterwards.")

    def handle(self, *args, scale, keep_db, **options):
        from omni.celery import app

        app.conf.broker_url = "memory://"
        app.conf.task_always_eager = False
        old_name = connection.settings_dict["NAME"]
        connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
        try:
            figures = run_benchmark(scale)
        finally:
            if not keep_db:
                connection.creation.destroy_test_db(old_name, verbosity=0)
        for figure in figures:
            self.stdout.write(json.dumps(figure))
        sys.stderr.write(f"\n{'metric':<34}{'value':>14}  unit\n")
        for figure in figures:
            sys.stderr.write(f"{figure['metric']:<34}{figure['value']:>14,.1f}  {figure['unit']}\n")


def seed(scale: int):
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


def run_benchmark(scale: int) -> list[dict]:
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
    return [
        _figure("first_tick_contacts_per_second", scale / first_seconds, "contacts/s", scale),
        _figure("second_tick_steps_per_second", second.steps / second_seconds, "steps/s", second.steps),
        _figure("steps_per_second", steps / (first_seconds + second_seconds), "steps/s", steps),
        _figure("queries_per_1000_steps", 1000 * (first_queries + second_queries) / steps, "queries", steps),
        _figure("celery_messages_per_1000_deliveries", 1000 * len(published) / max(deliveries, 1), "messages",
                deliveries),
        _figure("duplicate_messages", duplicates, "messages", steps),
    ]


def _timed(work):
    reset_queries()
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        result = work()
        elapsed = time.perf_counter() - started
    return len(queries), elapsed, result


def _figure(metric, value, unit, n):
    return {"bench": "journey_tick", "metric": metric, "value": round(value, 1), "unit": unit, "n": n}
