import threading

import pytest
from celery.signals import task_postrun

from channels.models import DeliveryStatus, MessageStatus
from channels.tasks import send_delivery_task, simulate_sandbox_events_task
from omni.choices import send_queue


@pytest.fixture
def finished_tasks():
    """Names of the tasks the worker finished, and an event set when the sandbox reported."""
    names = []
    sandbox_reported = threading.Event()

    def on_postrun(sender=None, **kwargs):
        names.append(sender.name)
        if sender.name == simulate_sandbox_events_task.name:
            sandbox_reported.set()

    task_postrun.connect(on_postrun, weak=False)
    yield names, sandbox_reported
    task_postrun.disconnect(on_postrun)


@pytest.mark.celery_worker
def test_a_worker_sends_a_delivery_from_its_queue_and_the_sandbox_reports_the_open(
    celery_worker, finished_tasks, make_delivery, settings
):
    # given
    settings.OMNI_SANDBOX_EVENT_DELAY = 0
    names, sandbox_reported = finished_tasks
    delivery = make_delivery("email", to_address="alice+open@example.com")

    # when the sending side enqueues it on its lane
    send_delivery_task.apply_async((delivery.pk,), queue=send_queue("transactional", "email"))

    # then (waiting on the worker, not polling: SQLite's shared in-memory test database locks
    # whole tables between connections)
    assert sandbox_reported.wait(timeout=15)
    assert names == [send_delivery_task.name, simulate_sandbox_events_task.name]
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.OPENED
    assert delivery.message.status == MessageStatus.ENGAGED
    assert delivery.attempts == 1
