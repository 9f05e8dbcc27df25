"""Retention: what messages said is blanked once it is OMNI_RETENTION_DAYS old.

The rows stay (what was sent to whom, when, on which channel and how it ended is history that
decisions, the send ledger and the audit log point at); their bodies go: each delivery's
rendered subject, bodies and channel extras, the sandbox's copy of them, messages' own content
(an agent's reply, a keyword confirmation) and inbound messages' bodies, media and raw
payloads. Work still to be sent is left alone (a queued delivery is rendered when it goes).

Beat runs it daily (channels.tasks.apply_retention_task). Each UPDATE blanks at most
RETENTION_BATCH rows, oldest first, and commits on its own, so no lock is held long; one run
does at most MAX_BATCHES_PER_RUN batches per kind of row and the next run goes on where it
stopped. Every run is audited with its counts.
"""
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from omni import audit

from .models import Delivery, DeliveryStatus, InboundMessage, Message, MessageStatus, OutboxMessage

# Rows per UPDATE: large enough that a year of backlog clears in a few runs, small enough that
# each statement holds its row locks for well under a second.
RETENTION_BATCH = 5000
# A run blanks at most this many batches of each kind (1,000,000 rows at 5,000), so a first
# run over a large history cannot occupy a worker for hours; the next day's run continues.
MAX_BATCHES_PER_RUN = 200

UNSENT_MESSAGES = [MessageStatus.PENDING, MessageStatus.DEFERRED, MessageStatus.QUEUED]
UNSENT_DELIVERIES = [DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.UNCERTAIN]
# A delivery whose body is still kept: the delivery_body_kept index holds exactly these.
DELIVERY_BODY_KEPT = ~Q(subject="", text_body="", html_body="")


def old_bodies(cutoff) -> dict:
    """What still holds a body older than `cutoff`, by kind: (queryset oldest first, blank values)."""
    return {
        "deliveries": (Delivery.objects.filter(DELIVERY_BODY_KEPT, queued_at__lt=cutoff)
                       .exclude(status__in=UNSENT_DELIVERIES).order_by("queued_at"),
                       {"subject": "", "text_body": "", "html_body": "", "content": {}}),
        "sandbox_outbox": (OutboxMessage.objects.filter(created_at__lt=cutoff)
                           .exclude(subject="", text_body="", html_body="", content={}).order_by("created_at"),
                           {"subject": "", "text_body": "", "html_body": "", "content": {}}),
        # An empty list is still own content (content is never NULL for it), saying nothing.
        "own_content": (Message.objects.filter(created_at__lt=cutoff, content__isnull=False).exclude(content=[])
                        .exclude(status__in=UNSENT_MESSAGES).order_by("created_at"),
                        {"content": []}),
        "inbound": (InboundMessage.objects.filter(received_at__lt=cutoff).exclude(body="", media=[], raw={})
                    .order_by("received_at"),
                    {"body": "", "media": [], "raw": {}}),
    }


def apply_retention(now=None, *, days: int | None = None, batch: int = RETENTION_BATCH,
                    max_batches: int = MAX_BATCHES_PER_RUN) -> dict | None:
    """Blank the bodies older than `days` (settings.OMNI_RETENTION_DAYS), in batches. Returns
    the counts by kind and whether the run reached the end ("complete"); None when retention
    is off (0 days). Call it outside a transaction: each batch commits on its own."""
    days = settings.OMNI_RETENTION_DAYS if days is None else days
    if not days:
        return None
    now = now or timezone.now()
    cutoff = now - timedelta(days=days)
    counts, complete = {}, True
    for kind, (queryset, blank) in old_bodies(cutoff).items():
        counts[kind] = 0
        for _ in range(max_batches):
            # One statement per batch: UPDATE ... WHERE id IN (SELECT id ... ORDER BY age LIMIT n).
            blanked = queryset.model.objects.filter(pk__in=queryset.values("pk")[:batch]).update(**blank)
            counts[kind] += blanked
            if blanked < batch:
                break
        else:
            complete = False
    audit.record("retention.applied", actor_label="retention", reason="complete" if complete else "partial",
                 data={"days": days, "cutoff": cutoff.isoformat(), "counts": counts, "complete": complete})
    return {**counts, "complete": complete}
