"""Transactional sends have lanes of their own: a marketing backlog never delays them."""
import pytest

from channels.routing import enqueue_send
from channels.models import DeliveryStatus
from channels.tasks import send_deliveries_task
from omni.choices import SEND_QUEUES, send_queue
from omni.tests.fakes import celery_worker_thread, purge_queues

TRANSACTIONAL_QUEUES = [q for q in SEND_QUEUES if q.startswith("send.transactional.")]


def test_each_purpose_and_channel_has_its_own_queue():
    assert send_queue("transactional", "sms") == "send.transactional.sms"
    assert send_queue("marketing", "sms") == send_queue("informational", "sms") == "send.bulk.sms"
    assert len(set(SEND_QUEUES)) == 10


@pytest.mark.celery_worker
def test_a_transactional_worker_sends_the_password_reset_while_the_marketing_send_waits(
    transactional_db, make_delivery, finished_tasks
):
    # given a marketing email and a transactional one, queued by the sending side
    marketing = make_delivery("email", purpose="marketing")
    reset = make_delivery("email", purpose="transactional")

    # when only the transactional lanes have a worker
    with celery_worker_thread(TRANSACTIONAL_QUEUES):
        try:
            enqueue_send(marketing, "marketing")
            enqueue_send(reset, "transactional")
            finished_tasks.wait_for(send_deliveries_task, 1)
        finally:
            # The marketing send and the sandbox's report are still on the broker (Redis in
            # CI): drop them so no later test's worker picks them up.
            purge_queues()

    # then the reset went out and the marketing email is still waiting
    assert finished_tasks.args_of(send_deliveries_task) == [([reset.pk], send_queue("transactional", "email"))]
    reset.refresh_from_db()
    marketing.refresh_from_db()
    assert reset.status == DeliveryStatus.SENT
    assert marketing.status == DeliveryStatus.QUEUED
