import pytest

from channels.models import DeliveryStatus, MessageStatus
from channels.tasks import send_delivery_task, simulate_sandbox_events_task
from omni.choices import send_queue


@pytest.mark.celery_worker
def test_a_worker_sends_a_delivery_from_its_queue_and_the_sandbox_reports_the_open(
    celery_worker, finished_tasks, make_delivery, settings
):
    # given
    settings.OMNI_SANDBOX_EVENT_DELAY = 0
    delivery = make_delivery("email", to_address="alice+open@example.com")

    # when the sending side enqueues it on its lane
    send_delivery_task.apply_async((delivery.pk,), queue=send_queue("transactional", "email"))

    # then
    finished_tasks.wait_for(simulate_sandbox_events_task)
    assert finished_tasks.names == [send_delivery_task.name, simulate_sandbox_events_task.name]
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.OPENED
    assert delivery.message.status == MessageStatus.ENGAGED
    assert delivery.attempts == 1
