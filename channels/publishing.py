"""Handing send tasks to the broker, so that no queued delivery is left without one.

A delivery is written with `published_at` already set (channels.routing), in the transaction
that queues it; once that commits, its batch is handed to the broker with a few quick retries
(publish_sends): no claim is needed, since nothing else publishes a delivery in its first
minute. A broker that stays down never stops the caller: what was not published, and what a
lost worker never sent, is claimed by republish_lost_deliveries() (the tick runs it) once its
publish is a minute old and the delivery is still queued. A delivery waiting for its next
attempt after a transient error (Delivery.next_attempt_at) is left alone until that attempt is
due, then published at once. Two ticks never enqueue the same delivery: only one wins the
claim. A task enqueued twice anyway (a slow worker) is harmless, since the send itself claims
the row.
"""
import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from omni.choices import send_queue
from omni.lib.tasks import publish, task_named

from .models import Delivery, DeliveryStatus
from .state import _update_returning_ids

log = logging.getLogger(__name__)

# A queued delivery whose task was not published, or was published this long ago and never
# ran (a worker killed mid-batch, a broker that lost its queue), is published again.
REPUBLISH_AFTER = timedelta(minutes=1)
REPUBLISH_BATCH = 500
# Deliveries carried by one send task, by lane: the broker round trip (about a millisecond to
# publish) is paid once per batch rather than once per message. A transactional batch stays
# small, so a slow provider call holds up few password resets; a bulk lane (a campaign's
# thousands) carries ten times as many, so a blast costs a few tasks per thousand messages.
SEND_BATCH_SIZE = {"transactional": 50, "bulk": 500}


def send_batch_size(queue: str) -> int:
    """How many deliveries one send task on `queue` (omni.choices.send_queue) carries."""
    lane = queue.split(".")[1] if queue.count(".") == 2 else "transactional"
    return SEND_BATCH_SIZE.get(lane, SEND_BATCH_SIZE["transactional"])


def publish_sends(deliveries: list[tuple[int, str, str]]) -> list[int]:
    """Publish the send tasks of deliveries just queued, given as (id, channel, purpose), in
    batches per lane. Returns the ids published. Never raises for a broker error: the batch
    that failed and the ones after it are republished a minute after their published_at.

    A delivery cancelled meanwhile is published all the same: its send finds it no longer
    queued and sends nothing (the send claims its row)."""
    return _publish({pk: send_queue(purpose, channel) for pk, channel, purpose in deliveries})


def republish_lost_deliveries(now=None, limit: int = REPUBLISH_BATCH) -> int:
    """Publish the queued deliveries whose next attempt fell due, and again those whose task was
    never published or was lost.

    Claimed with a conditional UPDATE ... RETURNING on `published_at`, so two ticks running at
    once never enqueue the same delivery; published once the claim commits. Returns how many
    were claimed for publishing.
    """
    now = now or timezone.now()
    # A retry is published as soon as it is due (its put-back cleared published_at); a first
    # send's publish is the dispatcher's, taken over here only if it did not happen in a minute.
    unpublished = Q(published_at__isnull=True) & (Q(next_attempt_at__isnull=False)
                                                   | Q(queued_at__lt=now - REPUBLISH_AFTER))
    lost = unpublished | Q(published_at__lt=now - REPUBLISH_AFTER)
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    lost_queued = Delivery.objects.filter(lost, due, status=DeliveryStatus.QUEUED, quarantined_at__isnull=True)
    candidates = list(lost_queued.order_by("queued_at").values_list("pk", flat=True)[:limit])
    if not candidates:
        return 0
    with transaction.atomic():
        claimed = _update_returning_ids(lost_queued.filter(pk__in=candidates), {"published_at": now})
        if not claimed:
            return 0
        lanes = {pk: send_queue(purpose, channel) for pk, channel, purpose
                 in Delivery.objects.filter(pk__in=claimed).values_list("pk", "channel", "message__purpose")}
        log.info("Publishing %d queued deliveries: retries now due, or sends lost or never published", len(lanes))
        transaction.on_commit(lambda: _publish(lanes))
    return len(lanes)


def _publish(lanes: dict[int, str]) -> list[int]:
    """Publish send tasks for {delivery id: queue}, in batches per queue, until the broker fails."""
    send_deliveries_task = task_named("channels.tasks.send_deliveries_task")
    by_queue = {}
    for pk, queue in lanes.items():
        by_queue.setdefault(queue, []).append(pk)
    published = []
    for queue, ids in by_queue.items():
        size = send_batch_size(queue)
        for start in range(0, len(ids), size):
            batch = ids[start:start + size]
            if not publish(send_deliveries_task, (batch, queue), queue=queue,
                           if_lost=f"Could not publish send tasks for {len(lanes) - len(published)} deliveries; "
                                   f"they are republished after {REPUBLISH_AFTER}"):
                # The broker is down: later batches would fail the same way, each after its retries.
                return published
            published.extend(batch)
    return published
