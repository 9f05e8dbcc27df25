from celery import shared_task

from . import engine


@shared_task(ignore_result=True)
def tick_task():
    """Claim and run all due orchestration work (beat runs this every OMNI_TICK_SECONDS)."""
    return engine.tick().as_dict()
