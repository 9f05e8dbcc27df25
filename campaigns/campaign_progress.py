"""How far a campaign's fan-out has got, for its page and its list: the audience (its recipients)
and how many are decided, and of those how many were queued, sent, delivered, failed, or left
out or held out, as an omni.lib.progress.Progress.

Counted in one grouped query over the recipients and their messages' statuses, whatever the
audience's size; the list counts only decided and total, annotated on its own query.
"""
from django.db.models import Count, Q, QuerySet

from channels.models import MessageStatus
from omni.lib.progress import Progress, ProgressSegment

from .models import CampaignRecipient, RecipientOutcome

M = MessageStatus

# A decided recipient's part of the bar: by its outcome, and for a sent one by its message's status.
OUTCOME_PART = {RecipientOutcome.HOLDOUT: "held_out", RecipientOutcome.SKIPPED: "left_out"}
MESSAGE_PART = {
    M.PENDING: "queued", M.DEFERRED: "queued", M.QUEUED: "queued",
    M.SENT: "sent",
    M.DELIVERED: "delivered", M.ENGAGED: "delivered",
    M.FAILED: "failed", M.SUPPRESSED: "failed", M.CANCELLED: "failed", M.EXPIRED: "failed",
}
# The parts in the bar's order, with the words the legend and the bar's text use.
PARTS = [
    ("delivered", "delivered"),
    ("sent", "sent, not yet reported delivered"),
    ("queued", "queued or waiting to send"),
    ("failed", "failed, suppressed, cancelled or expired"),
    ("held_out", "held out (control group)"),
    ("left_out", "left out"),
]


def progress_counts(campaign_ids) -> dict[int, dict[str, int]]:
    """{campaign id: {part: count, "total": audience}} for each of `campaign_ids`, in one query."""
    counts = {campaign_id: {"total": 0, **{key: 0 for key, _ in PARTS}} for campaign_id in campaign_ids}
    rows = (CampaignRecipient.objects.filter(campaign_id__in=list(counts)).order_by()
            .values_list("campaign_id", "outcome", "message__status").annotate(n=Count("id")))
    for campaign_id, outcome, message_status, n in rows:
        figures = counts[campaign_id]
        figures["total"] += n
        part = _part(outcome, message_status)
        if part:
            figures[part] += n
    return counts


def _part(outcome: str, message_status: str | None) -> str | None:
    if outcome == RecipientOutcome.PENDING:
        return None
    if outcome in OUTCOME_PART:
        return OUTCOME_PART[outcome]
    # Sent, but its message not written yet (a batch being recorded): waiting to send.
    return MESSAGE_PART.get(message_status, "queued")


def campaign_progress(campaign) -> Progress:
    """The campaign's bar: its recipients decided out of its audience, by part."""
    figures = progress_counts([campaign.pk])[campaign.pk]
    return progress_from(figures)


def progress_from(figures: dict[str, int]) -> Progress:
    return Progress(label="Recipients decided", total=figures["total"], remaining_label="not decided yet",
                    segments=[ProgressSegment(key, label, figures[key]) for key, label in PARTS])


def with_decided_counts(queryset: QuerySet) -> QuerySet:
    """Campaigns with `recipients_total` and `recipients_decided`, for the list's small figure."""
    return queryset.annotate(
        recipients_total=Count("recipients"),
        recipients_decided=Count("recipients", filter=~Q(recipients__outcome=RecipientOutcome.PENDING)),
    )
