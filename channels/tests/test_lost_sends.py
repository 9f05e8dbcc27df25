"""No send is lost: a broker error while publishing never stops the tick, and what was not
published, or was lost with a killed worker, is published again within a minute, once."""
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.tick import tick
from channels.models import Delivery, DeliveryStatus, Message, MessageStatus, OutboxMessage
from channels.publishing import REPUBLISH_AFTER, republish_lost_deliveries
from channels.tasks import send_deliveries_task, send_delivery_task
from omni.tests.fakes import purge_queues, run_concurrently, unreachable_broker


def test_the_send_tasks_are_handed_back_to_the_broker_when_their_worker_is_killed():
    assert send_deliveries_task.acks_late and send_deliveries_task.reject_on_worker_lost
    assert send_delivery_task.acks_late and send_delivery_task.reject_on_worker_lost


@pytest.mark.celery_worker
def test_a_broker_outage_while_publishing_does_not_stop_the_tick_and_the_sends_go_out_once_it_is_back(
    celery_worker, finished_tasks, make_delivery, contact, template_version, settings, now,
):
    settings.OMNI_SANDBOX_EVENT_DELAY = 60
    # given a deferred message due now, and a failed email whose fallback timer is due after it
    deferred = Message.objects.create(contact=contact, purpose="transactional", template_version=template_version,
                                      source="api", channel_plan=[{"channel": "email"}],
                                      status=MessageStatus.DEFERRED, defer_until=now - timedelta(minutes=1))
    failed = make_delivery("email", plan=[{"channel": "email"}, {"channel": "sms"}], status=DeliveryStatus.FAILED,
                           fallback_due_at=now - timedelta(seconds=1))

    # when the tick runs while the broker refuses connections
    with unreachable_broker():
        report = tick(now)

    # then it went through every stage: the deferred email and the SMS fallback are queued,
    # their sends claimed for publishing but not sent
    assert (report.redispatched, report.fallbacks) == (1, 1)
    queued = list(Delivery.objects.filter(status=DeliveryStatus.QUEUED).order_by("pk"))
    assert [d.message_id for d in queued] == [deferred.pk, failed.message_id]
    assert all(d.published_at is not None for d in queued)
    assert OutboxMessage.objects.count() == 0

    # when the broker is back and a tick runs a minute later, then another (once the sends ran:
    # SQLite's shared in-memory test database locks tables between the two threads)
    # (a minute after the outage ended, by the clock: each failed publish took its retries' time,
    # so the last claim is later than `now`)
    later = timezone.now() + REPUBLISH_AFTER + timedelta(seconds=1)
    republished = tick(later)
    finished_tasks.wait_for_ids(send_deliveries_task, [d.pk for d in queued])
    again = tick(later + timedelta(seconds=1))
    assert (republished.requeued, again.requeued) == (2, 0)

    # then each went out exactly once
    for delivery in queued:
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.SENT
    assert sorted(OutboxMessage.objects.values_list("delivery_id", flat=True)) == [d.pk for d in queued]
    # one task per lane (transactional email and SMS) carried them
    assert len([args for args in finished_tasks.args_of(send_deliveries_task)
                if set(args[0]) & {d.pk for d in queued}]) == 2


@pytest.mark.celery_worker
def test_deliveries_left_by_a_killed_worker_are_sent_within_a_minute_exactly_once(
    celery_worker, finished_tasks, make_delivery, settings,
):
    from django.utils import timezone

    settings.OMNI_SANDBOX_EVENT_DELAY = 60
    now = timezone.now()
    # given a batch a worker took from the broker and died on: still queued, published two
    # minutes ago; one whose publish never happened; and one published a moment ago
    lost = make_delivery("email", queued_at=now - timedelta(minutes=2), published_at=now - timedelta(minutes=2))
    never_published = make_delivery("email", queued_at=now - timedelta(minutes=2))
    just_published = make_delivery("email", queued_at=now, published_at=now)

    # when two ticks run (the second once the sends ran: SQLite's shared in-memory test
    # database locks tables between the two threads)
    first = tick(now)
    finished_tasks.wait_for(send_deliveries_task, 1)
    second = tick(now + timedelta(seconds=5))

    # then the lost ones were republished once and sent once; the fresh one was left to its task
    assert (first.requeued, second.requeued) == (2, 0)
    for delivery in (lost, never_published, just_published):
        delivery.refresh_from_db()
    assert (lost.status, never_published.status, just_published.status) == (
        DeliveryStatus.SENT, DeliveryStatus.SENT, DeliveryStatus.QUEUED)
    assert sorted(OutboxMessage.objects.values_list("delivery_id", flat=True)) == sorted([lost.pk, never_published.pk])


@pytest.mark.postgres
def test_two_sweeps_at_once_never_republish_the_same_delivery(transactional_db, make_delivery):
    from django.utils import timezone

    now = timezone.now()
    lost = [make_delivery("email", queued_at=now - timedelta(minutes=5)) for _ in range(40)]
    try:
        results, errors = run_concurrently(lambda: republish_lost_deliveries(now), times=2)
    finally:
        purge_queues()

    assert errors == []
    assert sorted(results)[-1] + sorted(results)[0] == len(lost)
    assert Delivery.objects.filter(published_at=now).count() == len(lost)
