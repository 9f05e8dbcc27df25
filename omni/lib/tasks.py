"""Celery tasks looked up by name where importing their module would run an import in circle.

A module low in its app (routing's publisher, a provider) hands work to a task defined at the top
of the app (its tasks.py, which imports the module). Looking the task up in Celery's registry at
call time keeps the import arrows pointing one way, and unlike `send_task` the task still honours
CELERY_TASK_ALWAYS_EAGER. Each app imports its tasks module in AppConfig.ready(), so the name is
registered in every process.
"""
import logging

from celery import current_app
from kombu.exceptions import KombuError, OperationalError

log = logging.getLogger(__name__)

# kombu's own retries of one publish on a connection error: about a second in all, short enough
# that a broker outage costs the caller little (what it meant to publish is claimed again, or
# times out, by its own rule), long enough to ride out a reconnect.
PUBLISH_RETRY_POLICY = {"max_retries": 3, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5}
# What a publish raises once those retries are spent: the broker cannot be reached.
BROKER_ERRORS = (KombuError, OperationalError, OSError)


def publish(task, args: tuple, *, queue: str, if_lost: str) -> bool:
    """Publish `task(*args)` on `queue` (kombu retrying a lost connection, PUBLISH_RETRY_POLICY).
    Never raises for a broker that cannot be reached: what was to run is taken up again by its
    own rule, which `if_lost` says in words ("Could not hand ... to the workers; they are claimed
    again after ..."), logged with the error; then False."""
    try:
        task.apply_async(args, queue=queue, retry=True, retry_policy=PUBLISH_RETRY_POLICY)
    except BROKER_ERRORS as exc:
        log.error("%s (%s)", if_lost, exc)
        return False
    return True


def task_named(name: str):
    """The registered Celery task called `name` (KeyError naming it when it is not registered)."""
    try:
        return current_app.tasks[name]
    except KeyError:
        raise KeyError(f"Celery task {name!r} is not registered: is its app's tasks module imported in ready()?")
