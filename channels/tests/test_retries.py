"""Retries outlast a provider outage of a configurable length, on the backoff schedule: the next
attempt is kept on the delivery and the tick's republish sweep leaves it alone until it is due."""
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from channels.delivery import retry_schedule, send_delivery
from channels.models import Delivery, DeliveryStatus, MessageStatus
from channels.publishing import republish_lost_deliveries
from omni.models import AuditEntry


@pytest.fixture
def short_retries(settings):
    """Retry settings shortened to fractions of a second, so an "outage" lasts a moment."""
    settings.OMNI_RETRY_FIRST_SECONDS = 0.2
    settings.OMNI_RETRY_MAX_SECONDS = 0.5
    settings.OMNI_RETRY_OUTAGE_SECONDS = 2.0
    return settings


@pytest.fixture
def run_ticks(django_capture_on_commit_callbacks):
    """run_ticks(until, seconds) runs the tick's republish sweep every 20 ms, as beat would (the
    send tasks run inline), until `until()` is true or `seconds` have passed."""

    def run(until, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not until():
            with django_capture_on_commit_callbacks(execute=True):
                republish_lost_deliveries(timezone.now())
            time.sleep(0.02)

    return run


def _creates(twilio_server):
    return [r for r in twilio_server.requests if r.method == "POST"]


def test_a_provider_down_for_a_while_then_back_loses_nothing(
    make_delivery, twilio_settings, twilio_server, short_retries, eager_celery, run_ticks,
):
    # given Twilio answers 503 for the next 0.8 seconds, then recovers
    twilio_server.outage(0.8)
    delivery = make_delivery("sms", provider="twilio")

    # when the worker sends it and the tick keeps running
    send_delivery(delivery.pk)
    run_ticks(lambda: Delivery.objects.get(pk=delivery.pk).status != DeliveryStatus.QUEUED, seconds=5)

    # then it went out once Twilio was back, after a few attempts, and the message was sent
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    requests = _creates(twilio_server)
    assert len(requests) == delivery.attempts > 1
    assert delivery.message.status == MessageStatus.SENT
    assert AuditEntry.objects.filter(action="delivery.retrying").count() == delivery.attempts - 1


def test_a_provider_down_for_the_whole_window_gets_the_scheduled_attempts_and_no_more(
    make_delivery, twilio_settings, twilio_server, short_retries, eager_celery, run_ticks,
):
    # given Twilio answers 503 for longer than the retry window
    twilio_server.outage(60)
    delivery = make_delivery("sms", provider="twilio")
    schedule = retry_schedule(delivery.pk)
    assert schedule[-1] >= 2.0 > schedule[-2]

    # when the worker sends it and the tick keeps running past the end of the schedule
    send_delivery(delivery.pk)
    run_ticks(lambda: Delivery.objects.get(pk=delivery.pk).status != DeliveryStatus.QUEUED, seconds=6)
    run_ticks(lambda: False, seconds=0.5)

    # then Twilio saw exactly the attempts of the schedule, none before it was due
    requests = _creates(twilio_server)
    assert len(requests) == len(schedule)
    for earlier, later, due in zip(requests, requests[1:], [b - a for a, b in zip(schedule, schedule[1:])]):
        assert later.at - earlier.at >= due - 0.01
    # and the delivery failed as transient (never permanent), its message with it
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_permanent, delivery.attempts) == (
        DeliveryStatus.FAILED, False, len(schedule))
    entry = AuditEntry.objects.get(action="delivery.failed", object_id=str(delivery.pk))
    assert (entry.reason, entry.data["permanent"]) == ("retries_exhausted", False)
    assert (delivery.message.status, delivery.message.status_reason) == (MessageStatus.FAILED, "retries_exhausted")


def test_a_transient_error_schedules_the_next_attempt_and_republish_leaves_it_until_then(
    make_delivery, twilio_settings, twilio_server, settings, now,
):
    # given a delivery that met a 503, and one queued long ago whose task was lost
    settings.OMNI_RETRY_FIRST_SECONDS = 10
    twilio_server.fail_next(503, code=None, message="Service unavailable")
    retried = make_delivery("sms", provider="twilio")
    lost = make_delivery("email", queued_at=now - timedelta(minutes=5), published_at=now - timedelta(minutes=5))

    send_delivery(retried.pk)

    retried.refresh_from_db()
    assert retried.status == DeliveryStatus.QUEUED
    assert now + timedelta(seconds=4) < retried.next_attempt_at < now + timedelta(seconds=15)
    # when the sweep runs before the next attempt is due, even minutes after its last publish
    Delivery.objects.filter(pk=retried.pk).update(published_at=now - timedelta(minutes=5))
    assert republish_lost_deliveries(now) == 1
    assert Delivery.objects.get(pk=lost.pk).published_at == now
    # then only when it is due is it published, once
    due = retried.next_attempt_at
    assert republish_lost_deliveries(due - timedelta(seconds=1)) == 0
    assert republish_lost_deliveries(due) == 1
    assert republish_lost_deliveries(due + timedelta(seconds=5)) == 0


def test_a_send_claimed_before_its_next_attempt_is_due_does_nothing(make_delivery, twilio_settings, twilio_server,
                                                                   now):
    delivery = make_delivery("sms", provider="twilio", next_attempt_at=now + timedelta(minutes=1))

    assert send_delivery(delivery.pk) is None

    assert twilio_server.messages == []
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.QUEUED


def test_retries_never_run_past_the_messages_expiry(make_delivery, twilio_settings, twilio_server, settings, now):
    # given a message that expires before its first retry would be due
    settings.OMNI_RETRY_FIRST_SECONDS = 60
    twilio_server.fail_next(503, code=None, message="Service unavailable")
    delivery = make_delivery("sms", provider="twilio")
    delivery.message.expires_at = now + timedelta(seconds=20)
    delivery.message.save()

    send_delivery(delivery.pk)

    # then it ends now, failed but not permanently
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_permanent, delivery.next_attempt_at) == (
        DeliveryStatus.FAILED, False, None)
    assert AuditEntry.objects.get(action="delivery.failed").reason == "retries_exhausted"


def test_the_schedule_outlasts_the_outage_window_and_spreads_deliveries(settings):
    settings.OMNI_RETRY_FIRST_SECONDS = 10
    settings.OMNI_RETRY_MAX_SECONDS = 300
    settings.OMNI_RETRY_OUTAGE_SECONDS = 3600

    schedules = [retry_schedule(pk) for pk in range(1, 50)]

    for schedule in schedules:
        assert schedule[0] == 0 and schedule[-1] >= 3600 > schedule[-2]
        assert all(0 < b - a <= 300 for a, b in zip(schedule, schedule[1:]))
    assert len({schedule[1] for schedule in schedules}) > 40  # jittered: not all at once


@pytest.mark.celery_worker
def test_a_worker_rides_out_a_provider_outage_and_sends_once_it_is_over(
    celery_worker, finished_tasks, make_delivery, twilio_settings, twilio_server, short_retries,
):
    from channels.routing import enqueue_sends
    from channels.tasks import send_deliveries_task

    def runs_of(delivery):
        return len([args for args in finished_tasks.args_of(send_deliveries_task) if delivery.pk in args[0]])

    def wait_for_runs(delivery, count):
        with finished_tasks.changed:
            assert finished_tasks.changed.wait_for(lambda: runs_of(delivery) >= count, 20), finished_tasks.calls

    # given Twilio answers 503 for the next second, then recovers
    twilio_server.outage(1.0)
    delivery = make_delivery("sms", provider="twilio")

    # when its send goes to a real worker, and the tick's sweep runs (once the worker is idle:
    # SQLite's shared in-memory test database locks tables between the two threads)
    enqueue_sends([(delivery, "transactional")])
    wait_for_runs(delivery, 1)
    deadline = time.monotonic() + 10
    while Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.QUEUED and time.monotonic() < deadline:
        before = runs_of(delivery)
        if republish_lost_deliveries(timezone.now()):
            wait_for_runs(delivery, before + 1)
        else:
            time.sleep(0.05)

    # then it went out once Twilio was back, one task run per attempt
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert len(_creates(twilio_server)) == delivery.attempts == runs_of(delivery) > 1
