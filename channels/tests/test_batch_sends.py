"""Sends travel in batches of ids per Celery task; a transient failure is retried on its own."""
import time

import pytest
from django.utils import timezone

from channels.routing import enqueue_sends
from channels.models import Delivery, DeliveryStatus
from channels.publishing import republish_lost_deliveries
from channels.publishing import SEND_BATCH_SIZE
from channels.tasks import send_deliveries_task
from omni.models import AuditEntry
from omni.tests.fakes import purge_queues


@pytest.fixture
def queued_sms(make_delivery, twilio_settings):
    return [make_delivery("sms", provider="twilio") for _ in range(3)]


def test_one_transient_failure_in_a_batch_is_retried_alone_and_the_rest_are_sent(
    eager_celery, queued_sms, twilio_server, django_capture_on_commit_callbacks, settings
):
    # given Twilio fails the first request with a 500, and retries come after 10 ms
    settings.OMNI_RETRY_FIRST_SECONDS = 0.01
    twilio_server.fail_next(500, code=20500, message="Internal error")

    # when one task carries the three deliveries
    send_deliveries_task.delay([d.pk for d in queued_sms], "send.transactional.sms")
    # and the tick's sweep runs once the first one's next attempt is due
    first = Delivery.objects.get(pk=queued_sms[0].pk)
    assert first.status == DeliveryStatus.QUEUED
    time.sleep(0.05)
    with django_capture_on_commit_callbacks(execute=True):
        assert republish_lost_deliveries(timezone.now()) == 1

    # then all three went out, the first on its second attempt
    deliveries = Delivery.objects.order_by("pk")
    assert [d.status for d in deliveries] == [DeliveryStatus.SENT] * 3
    assert [d.attempts for d in deliveries] == [2, 1, 1]
    assert len(twilio_server.messages) == 4
    assert AuditEntry.objects.filter(action="delivery.retrying").count() == 1


def test_deliveries_are_published_in_batches_per_lane(transactional_db, make_delivery, settings):
    from celery.signals import before_task_publish

    published = []

    def record(sender=None, body=None, routing_key=None, **kwargs):
        published.append((routing_key, len(body[0][0])))

    emails = [make_delivery("email") for _ in range(SEND_BATCH_SIZE["transactional"] + 1)]
    newsletter = make_delivery("email", purpose="marketing")
    before_task_publish.connect(record, weak=False)
    try:
        # outside a transaction, on_commit publishes at once
        enqueue_sends([(d, "transactional") for d in emails] + [(newsletter, "marketing")])
    finally:
        before_task_publish.disconnect(record)
        purge_queues()

    assert sorted(published) == sorted([
        ("send.transactional.email", SEND_BATCH_SIZE["transactional"]), ("send.transactional.email", 1), ("send.bulk.email", 1),
    ])


def test_a_dispatched_delivery_is_written_as_published_and_its_publish_touches_no_row(
    contact, django_capture_on_commit_callbacks, django_assert_num_queries,
):
    from celery.signals import before_task_publish
    from django.db import transaction

    from channels import routing
    from channels.models import MessageSource

    published = []

    def record(sender=None, body=None, routing_key=None, **kwargs):
        published.append((routing_key, body[0][0]))

    # given a message routed and queued in a transaction
    message, _ = routing.create_message(
        contact=contact, source=MessageSource.API, purpose="transactional", channel_plan=[{"channel": "email"}],
        content=[{"channel": "email", "subject": "Hi", "text_body": "Hello"}])
    before_task_publish.connect(record, weak=False)
    try:
        with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
            delivery = routing.dispatch(message)
        # then it is written with its publish time: nothing else publishes it in its first minute
        assert Delivery.objects.get(pk=delivery.pk).published_at == delivery.queued_at

        # when the transaction's commit publishes its send, it claims nothing first
        with django_assert_num_queries(0):
            for callback in callbacks:
                callback()
    finally:
        before_task_publish.disconnect(record)
        purge_queues()
    assert published == [("send.transactional.email", [delivery.pk])]
