"""The journey tick at the issue's scale: the beat claims, two worker processes run the steps.

Seeds, by bulk SQL, 10 x scale contacts (email consent granted) each enrolled in a journey with
every kind of step, `scale` of them due now, a fifth at each of five places:
- a split (A/B) whose paths set an attribute or the lifecycle stage, then a branch on the
  attribute, the welcome email, and a wait for its opening (a day at most): four steps;
- a wait until 09:00 on the contact's clock: one step;
- a wait until a day before the contact's `renews_at` attribute: one step;
- a wait for the event `came_back`, whose event is stored unprocessed: the tick's event stage
  wakes them, then they send the email and wait for its opening: two steps;
- a webhook step: it starts waiting for the answer and enqueues its call on the outbound queue
  (counted, never consumed): no step run yet.
Then the beat's tick, `tick(hand_off_to=hand_off_enrollments)`, processes the events and claims
the due enrollments and hands their ids in batches to `run_enrollments_task` on the journeys
queue, where WORKERS real Celery worker processes (`celery -A omni.bench.worker worker -P solo`,
Redis db 9 as broker) run them: each send makes a Message, the gate's Decision, a queued
Delivery and audit entries, each step a JourneyStepVisit row. The send tasks the workers
publish are counted, never consumed. Timed from the start of the tick to the end of the last
worker task.

With the broker "memory://" (the smoke test), the handed-off batches run in this process.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta

from celery.signals import before_task_publish
from django.conf import settings
from django.db import connection, reset_queries
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from . import Figure, find
from .database import database_url

WORKERS = 2
# The broker for benchmarks: Redis, in the database number kept for them.
BROKER_URL = os.environ.get("OMNI_BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
# The run fails when the workers finish no batch for this long (a worker died, a broker mix-up).
STALL_TIMEOUT = 60


def run(scale: int, *, figures, log) -> list[Figure]:
    results = measure(scale, broker_url=BROKER_URL, log=log)
    ceiling = find(figures, "claim_ceiling", "steps_per_s")
    if ceiling is not None:
        for metric, ratio in (("steps_per_second", "ratio_to_claim_ceiling"),
                              ("due_steps_per_second", "due_steps_ratio_to_claim_ceiling")):
            mine = find(results, "journey_tick", metric)
            results.append(Figure("journey_tick", ratio, mine.value / ceiling.value, "ratio", mine.n,
                                  notes=f"{metric}: {mine.value:.0f} / {ceiling.value:.0f} steps/s"))
    return results


# Where the enrollments start, a fifth of the due ones (every tenth id) at each place (see the
# module's docstring), and what they wait for.
START_STEPS = ("CASE ({id} / 10) %% 5 WHEN 0 THEN 'ab' WHEN 1 THEN 'morning' WHEN 2 THEN 'day-before' "
               "WHEN 3 THEN 'await-back' ELSE 'ask' END")
WAITING_FOR = "CASE ({id} / 10) %% 5 WHEN 3 THEN 'event:came_back' ELSE '' END"


def seed(scale: int) -> int:
    """The journey, 10 x scale contacts enrolled in it, `scale` due now. Returns how many are due."""
    from django.contrib.auth import get_user_model

    from campaigns.actions import activate_journey, draft_snapshot, journey_needs_approval
    from campaigns.journey_approval import approve_journey, request_journey_approval
    from campaigns.models import Enrollment, Journey, JourneyStep, StepKind
    from compliance.models import Consent
    from contacts.models import Contact, ContactEvent, LifecycleStage
    from omni.models import WebhookEndpoint
    from templates.actions import publish_template
    from templates.models import Template, TemplateVariant

    email = Template.objects.create(key="bench-email", name="Bench email", purpose="marketing")
    TemplateVariant.objects.create(template=email, channel="email", subject="Welcome, {{ first_name }}!",
                                   text_body="Hi {{ first_name }}",
                                   html_body='<p>Hi {{ first_name }}</p>'
                                             '<a href="{{ unsubscribe_url }}">Unsubscribe</a>')
    publish_template(email)
    # What activation asks of every journey: an owner, objective, lifecycle stage and goal.
    owner = get_user_model().objects.create_user("bench-owner")
    stage, _ = LifecycleStage.objects.get_or_create(key="trial", defaults={"name": "Trial"})
    journey = Journey.objects.create(name="Bench", slug="bench", trigger_event="signed_up", owner=owner,
                                     objective="Measure the tick", lifecycle_stage=stage, goal_event="bench-goal")
    specs = [
        ("ab", StepKind.SPLIT, {"paths": [{"name": "A", "weight": 1, "step": "tag"},
                                          {"name": "B", "weight": 1, "step": "stage"}]}, None),
        ("tag", StepKind.UPDATE, {"attribute": "plan", "value": "pro"}, "is-pro"),
        ("stage", StepKind.UPDATE, {"lifecycle_stage": "customer"}, "is-pro"),
        ("is-pro", StepKind.CONDITION, {"check": "attribute", "name": "plan", "equals": "pro"}, "email"),
        ("email", StepKind.SEND, {}, None),
        ("await-open", StepKind.WAIT_EVENT, {"engagement": "opened", "step": "email", "timeout_seconds": 86400},
         "done"),
        ("done", StepKind.EXIT, {}, None),
        ("morning", StepKind.WAIT_UNTIL, {"time": "09:00"}, "done"),
        ("day-before", StepKind.WAIT_DATE, {"attribute": "renews_at", "offset_seconds": -86400}, "done"),
        ("await-back", StepKind.WAIT_EVENT, {"event": "came_back", "timeout_seconds": 86400}, "email"),
        ("ask", StepKind.WEBHOOK, {"endpoint": "bench", "timeout_seconds": 600}, "done"),
    ]
    WebhookEndpoint.objects.create(name="bench", url="https://hooks.example.com/bench")
    made = {}
    for position, (key, kind, config, _) in enumerate(specs, start=1):
        send = {"template": email, "channel_plan": [{"channel": "email"}]} if kind == StepKind.SEND else {}
        made[key] = JourneyStep.objects.create(journey=journey, key=key, position=position, kind=kind, config=config,
                                               **send)
    for key, _, _, following in specs:
        if following:
            made[key].next_step = made[following]
            made[key].save()
    made["is-pro"].else_step = made["email"]
    made["is-pro"].save()
    if journey_needs_approval(draft_snapshot(journey)):
        # Its marketing email needs a second person's yes (any superuser may give it).
        request_journey_approval(journey, actor=owner)
        approve_journey(journey, actor=get_user_model().objects.create_superuser("bench-approver"))
    activate_journey(journey, actor=owner)
    journey.refresh_from_db()

    total = 10 * scale
    base = Contact.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    _insert_series(Contact, total, {"external_id": "'b' || g", "email": "'b' || g || '@example.com'",
                                    "first_name": "'Bo'", "attributes": "'{\"renews_at\": \"2030-01-01\"}'"})
    _insert_select(Consent, {"contact_id": "c.id", "channel": "'email'", "purpose": "'marketing'",
                             "status": "'granted'"}, f"FROM contacts_contact c WHERE c.id > {base}")
    now = timezone.now()
    _insert_select(Enrollment, {
        "journey_id": str(journey.pk), "journey_version_id": str(journey.live_version_id), "contact_id": "c.id",
        "current_step_key": START_STEPS.format(id="c.id"), "state": "'active'",
        "waiting_for": WAITING_FOR.format(id="c.id"),
    }, f"FROM contacts_contact c WHERE c.id > {base}", defaults={"next_run_at": now + timedelta(days=1)})
    # One in ten is due since a minute ago, the others tomorrow.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE campaigns_enrollment SET next_run_at = %s WHERE id %% 10 = 0",
                       [Enrollment._meta.get_field("next_run_at").get_db_prep_save(now - timedelta(minutes=1),
                                                                                    connection)])
    # Those due and waiting for came_back were woken by nothing yet: their events arrive now,
    # and their waits are not due on their own.
    _insert_select(ContactEvent, {"contact_id": "e.contact_id", "name": "'came_back'",
                                  "idempotency_key": "'back-' || e.id", "source": "'bench'"},
                   "FROM campaigns_enrollment e WHERE e.id %% 10 = 0 AND e.current_step_key = 'await-back'")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE campaigns_enrollment SET next_run_at = %s WHERE waiting_for <> ''",
                       [Enrollment._meta.get_field("next_run_at").get_db_prep_save(now + timedelta(days=1),
                                                                                    connection)])
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE")
    return Enrollment.objects.filter(next_run_at__lte=now).count() + ContactEvent.objects.filter(
        name="came_back", processed_at__isnull=True).count()


def _insert_series(model, count: int, varying: dict[str, str]) -> None:
    """INSERT count rows of `model` in one statement: the `varying` columns as SQL of g (1 to
    count), every other column its model default."""
    if connection.vendor == "postgresql":
        _insert_select(model, varying, f"FROM generate_series(1, {count}) g")
    else:
        _insert_select(model, varying, "FROM s", prefix=f"WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL "
                                                        f"SELECT g + 1 FROM s WHERE g < {count}) ")


def _insert_select(model, varying: dict[str, str], source: str, *, defaults=None, prefix: str = "",
                   varying_params: dict | None = None) -> None:
    """INSERT INTO model's table SELECT `varying` columns as SQL, the others from `defaults` or
    the model's own, {source}. A varying column's SQL may hold one %s, for the Python value
    `varying_params` gives it (written as its field writes it)."""
    template = model(**(defaults or {}))
    varying_params = varying_params or {}
    columns, expressions, params = [], [], []
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(connection.ops.quote_name(field.column))
        if field.column in varying:
            expressions.append(varying[field.column])
            if field.column in varying_params:
                params.append(field.get_db_prep_save(varying_params[field.column], connection))
        else:
            expressions.append("%s")
            params.append(field.get_db_prep_save(field.pre_save(template, add=True), connection))
    with connection.cursor() as cursor:
        cursor.execute(f"{prefix}INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({', '.join(columns)}) "
                       f"SELECT {', '.join(expressions)} {source}", params)


def measure(scale: int, *, broker_url: str = "memory://", log=lambda line: None) -> list[Figure]:
    """Seed, run the beat's tick and the workers until every due step ran; return the figures."""
    from campaigns import advancing
    from campaigns.models import Enrollment, JourneyStepVisit
    from channels.models import Delivery
    from omni.celery import app

    due = seed(scale)
    app.conf.broker_url = broker_url
    app.conf.task_always_eager = False
    inline = broker_url.startswith("memory://")
    published, batches = [], []

    def count(sender=None, body=None, **kwargs):
        published.append(sender)
        if sender == "campaigns.tasks.run_enrollments_task":
            batches.append(body[0][0])

    with tempfile.TemporaryDirectory() as stats_dir:
        workers = [] if inline else _start_workers(stats_dir, broker_url, log)
        before_task_publish.connect(count, weak=False)
        try:
            started_wall, started = time.time(), time.perf_counter()
            tick_queries, tick_seconds, report = _timed(_tick_until_enrollments_drained)
            if inline:
                # The claimed ids as the tick handed them off (its tasks go out only after a commit).
                claimed = list(Enrollment.objects.filter(claimed_at__isnull=False).order_by("pk")
                               .values_list("pk", flat=True))
                batches = [claimed[i:i + advancing.ENROLLMENT_BATCH] for i in range(0, len(claimed), advancing.ENROLLMENT_BATCH)]
                run_queries, run_seconds, steps = _timed(
                    lambda: sum(advancing.run_claimed_enrollments(ids) for ids in batches))
                stats = [{"tasks": len(batches), "steps": steps, "queries": run_queries, "published": 0,
                          "busy_s": run_seconds}]
                seconds = time.perf_counter() - started
            else:
                stats = _wait_for_workers(stats_dir, len(batches), log)
                seconds = max(s["last_finished"] for s in stats if s["last_finished"]) - started_wall
        finally:
            before_task_publish.disconnect(count)
            _stop_workers(workers)
            if not inline:
                _purge(broker_url)

    steps = sum(s["steps"] for s in stats)
    queries = tick_queries + sum(s["queries"] for s in stats)
    messages = len(published) + sum(s["published"] for s in stats)
    run_twice = (JourneyStepVisit.objects.values("enrollment_id", "visit_number").order_by()
                 .annotate(n=Count("id")).filter(n__gt=1).count())
    sends = JourneyStepVisit.objects.filter(message__isnull=False)
    duplicates = sends.values("enrollment_id", "step_key").order_by().annotate(n=Count("id")).filter(n__gt=1).count()
    not_run = Enrollment.objects.filter(steps_taken=0, next_run_at__lte=timezone.now()).count()
    deliveries = Delivery.objects.count()
    busy = "; ".join(f"worker {i + 1}: {s['tasks']} tasks, {s['steps']} steps, busy {s['busy_s']:.2f}s"
                     for i, s in enumerate(stats))
    mode = "in this process (smoke)" if inline else f"{WORKERS} celery workers -P solo, broker {broker_url}"
    notes = (f"{10 * scale} enrollments, {due} due (a fifth each at a split, a wait until 09:00, a wait for a "
             f"date, a wait for an event that arrives, a webhook); tick woke {report.woken} and claimed {report.handed_off} in "
             f"{tick_seconds:.2f}s, {len(batches)} batches; {mode}; {busy}; {seconds:.2f}s; "
             f"{deliveries} deliveries; due not run {not_run}")
    return [
        Figure("journey_tick", "steps_per_second", steps / seconds, "steps/s", steps, notes=notes),
        Figure("journey_tick", "due_steps_per_second", due / seconds, "steps/s", due,
               notes="due enrollments run per second (each runs 0 to 4 steps, 1.6 on average)"),
        Figure("journey_tick", "tick_claims_per_second", report.handed_off / tick_seconds, "enrollments/s",
               report.handed_off),
        Figure("journey_tick", "queries_per_1000_steps", 1000 * queries / max(steps, 1), "queries", steps),
        Figure("journey_tick", "celery_messages_per_1000_steps", 1000 * messages / max(steps, 1), "messages", steps),
        Figure("journey_tick", "celery_messages_per_1000_deliveries", 1000 * messages / max(deliveries, 1),
               "messages", deliveries),
        Figure("journey_tick", "steps_run_twice", run_twice, "steps", steps),
        Figure("journey_tick", "duplicate_messages", duplicates, "messages", steps),
        Figure("journey_tick", "due_not_run", not_run, "enrollments", due),
    ]


def _start_workers(stats_dir: str, broker_url: str, log, queues: str = "journeys") -> list:
    env = {**os.environ, "DATABASE_URL": database_url(), "CELERY_BROKER_URL": broker_url, "DEBUG": "false",
           "OMNI_ENV": "development"}
    _purge(broker_url)
    workers = []
    for number in range(1, WORKERS + 1):
        command = [sys.executable, "-m", "celery", "-A", "omni.bench.worker", "worker", "-Q", queues, "-P", "solo",
                   "-n", f"bench{number}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
                   "-l", "warning"]
        workers.append(subprocess.Popen(command, cwd=settings.BASE_DIR, stdout=subprocess.DEVNULL,
                                        env={**env, "OMNI_BENCH_STATS": f"{stats_dir}/worker{number}.json"}))
    deadline = time.monotonic() + 60
    while not all(_read_stats(stats_dir, n).get("ready") for n in range(1, WORKERS + 1)):
        if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
            _stop_workers(workers)
            raise RuntimeError("The benchmark's Celery workers did not start.")
        time.sleep(0.1)
    log(f"{WORKERS} celery workers on the {queues} queue ({broker_url})")
    return workers


def _read_stats(stats_dir: str, number: int) -> dict:
    try:
        with open(f"{stats_dir}/worker{number}.json") as stats:
            return json.load(stats)
    except FileNotFoundError:
        return {}


def _wait_for_workers(stats_dir: str, tasks: int, log) -> list[dict]:
    deadline, done_before = time.monotonic() + STALL_TIMEOUT, 0
    while True:
        stats = [_read_stats(stats_dir, n) for n in range(1, WORKERS + 1)]
        done = sum(s.get("tasks", 0) for s in stats)
        if done >= tasks:
            return stats
        if done > done_before:
            deadline, done_before = time.monotonic() + STALL_TIMEOUT, done
        if time.monotonic() > deadline:
            raise RuntimeError(f"The workers ran {done} of {tasks} batches and then none for {STALL_TIMEOUT}s.")
        time.sleep(0.05)


def _stop_workers(workers) -> None:
    # SIGTERM to each worker's main process only (a warm shutdown).
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


def _purge(broker_url: str) -> None:
    """Empty the benchmark's broker database (Redis db 9): the sends the workers queued."""
    import redis

    redis.Redis.from_url(broker_url).flushdb()


def _tick_until_enrollments_drained():
    """The beat's tick, again while its enrollment stage stops at its budget with work left."""
    from campaigns.tasks import hand_off_enrollments
    from campaigns.tick import tick

    report = tick(hand_off_to=hand_off_enrollments)
    while "enrollments" in report.backlogged:
        more = tick(hand_off_to=hand_off_enrollments)
        more.handed_off += report.handed_off
        report = more
    return report


def _timed(work):
    reset_queries()
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        result = work()
        elapsed = time.perf_counter() - started
    return len(queries), elapsed, result
