"""A Celery worker for the journey_tick benchmark: Omni's own app and tasks, counting what its
tasks cost in this process.

    OMNI_BENCH_STATS=/tmp/w1.json celery -A omni.bench.worker worker -Q journeys -P solo

After start and after every task it writes {"ready", "tasks", "steps", "queries", "published",
"busy_s", "first_started", "last_finished"} to $OMNI_BENCH_STATS (wall-clock times), which the
benchmark reads; nothing here changes what the tasks do.
"""
import json
import os
import time

from celery.signals import before_task_publish, task_postrun, task_prerun, worker_ready

from omni.celery import app  # noqa: F401  (the app `celery -A` finds here)

stats = {"ready": False, "tasks": 0, "steps": 0, "queries": 0, "published": 0, "busy_s": 0.0,
         "first_started": None, "last_finished": None}
_started = [0.0]


def _write() -> None:
    path = os.environ["OMNI_BENCH_STATS"]
    with open(path + ".tmp", "w") as out:
        json.dump(stats, out)
    os.replace(path + ".tmp", path)


def _count_query(execute, sql, params, many, context):
    stats["queries"] += 1
    return execute(sql, params, many, context)


@worker_ready.connect
def _ready(**kwargs):
    stats["ready"] = True
    _write()


@task_prerun.connect
def _task_started(**kwargs):
    from django.db import connection

    if _count_query not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count_query)
    _started[0] = time.perf_counter()
    if stats["first_started"] is None:
        stats["first_started"] = time.time()


@task_postrun.connect
def _task_finished(retval=None, **kwargs):
    stats["busy_s"] += time.perf_counter() - _started[0]
    stats["tasks"] += 1
    stats["steps"] += retval if isinstance(retval, int) else 0
    stats["last_finished"] = time.time()
    _write()


@before_task_publish.connect
def _published(**kwargs):
    stats["published"] += 1
