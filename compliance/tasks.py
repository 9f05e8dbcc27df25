"""Celery tasks for compliance. Each makes one call; the logic is in the modules."""
from celery import shared_task
from django.db import transaction

from . import replay
from .preferences import expire_double_opt_ins


@shared_task(ignore_result=True)
def expire_double_opt_ins_task() -> None:
    """Hourly (beat): pending double opt-ins past OMNI_DOUBLE_OPT_IN_DAYS go back to what they were."""
    expire_double_opt_ins()


@shared_task(ignore_result=True)
def replay_rules_task(run_id: int) -> None:
    """A policy replay (queue "default"): the gate's recent decisions re-decided with a proposed rule change."""
    replay.run_replay(run_id)


def start_replay(proposal: replay.Proposal, *, actor, form_data: dict | None = None, now=None):
    """A new ReplayRun of `proposal`, handed to replay_rules_task once it is committed."""
    run = replay.new_run(proposal, actor=actor, form_data=form_data, now=now)
    transaction.on_commit(lambda: replay_rules_task.apply_async((run.pk,), queue="default"), robust=True)
    return run
