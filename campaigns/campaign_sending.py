"""A started campaign's fan-out: due recipients claimed by the tick and sent in batches on the
campaigns queue; pause, resume, cancel; the end.

The tick's "campaign recipients" stage claims due recipients (pending, `send_at` come, not
quarantined, of a scheduled or sending campaign) with one UPDATE ... RETURNING per batch that
sets `claimed_at`, and hands the ids to send_campaign_batch_task (campaigns.tasks) once the
claim commits; without a hand-off it sends each batch here. A worker sends a batch with
send_campaign_batch(ids): it locks the recipients still pending, creates their messages in bulk
(one idempotency key per campaign and contact, so a batch run twice never sends twice), routes
them (channels.routing.dispatch_many) and writes the recipients back, in one transaction. A
batch whose task or worker was lost is claimed again once its claim is older than
RECIPIENT_LEASE.

A campaign ends SENT once none of its recipients is pending: sent, skipped or held out. A
quarantined recipient is still pending: the campaign keeps sending until someone retries it
(the recipient admin's "Retry") or cancels the campaign, so a set-aside row is never silently
counted as done.
"""
from django.db import transaction
from django.db.models import Count, Exists, Min, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from channels import routing, state
from channels.models import DefaultChannelPlan, Message, MessageSource, MessageStatus
from omni.lib.bulk import InstanceMaker, bulk_update, filter_in
from omni.lib.claims import claim, claim_ids
from omni.lib.collector import collector_paused
from omni.lib.quarantine import quarantine_failures, run_isolating_failures
from templates.actions import latest_versions

from .campaign_state import CLAIMING_STATUSES, CampaignMoveRefused, can_move, move_campaign
from .models import Campaign, CampaignRecipient, CampaignStatus, RecipientOutcome
from .tick_report import TickReport

# Recipients per claimed batch, and per send_campaign_batch_task: one task, one transaction and
# a fixed handful of queries per thousand contacts.
RECIPIENT_BATCH = 1000
# A claimed batch not sent within this long lost its task or its worker: claimed again. A worker
# sends a batch in about a second; the lease covers a queue backlog too.
RECIPIENT_LEASE = timezone.timedelta(seconds=60)
# Expired recipients skipped per UPDATE (the stage repeats it while a whole batch expired).
EXPIRE_BATCH = 10000
# Campaigns ended per pass of the "campaign ends" stage.
ENDS_BATCH = 100

# What sending never reads of a recipient and its contact: not loading them (a JSON decode and
# four timestamps a row) is a tenth of a batch. (claimed_at is only written: cleared.)
UNREAD_FIELDS = ["created_at", "claimed_at", "contact__attributes", "contact__created_at", "contact__updated_at",
                 "contact__first_name", "contact__last_name"]

EXPIRED = "expired"
CANCELLED = "cancelled"


# --- the tick's stage -----------------------------------------------------------------------------

def due_recipients(now, campaign_ids):
    """Pending recipients of these campaigns whose time came, not quarantined, that no worker
    holds: never claimed (the recipient_due index holds just those)."""
    return CampaignRecipient.objects.filter(
        campaign_id__in=campaign_ids, outcome=RecipientOutcome.PENDING, send_at__lte=now,
        quarantined_at__isnull=True, claimed_at__isnull=True,
    )


def lapsed_recipients(now, campaign_ids):
    """Due recipients a worker claimed longer than RECIPIENT_LEASE ago and never sent (its batch
    or its worker was lost): claimed again, like due ones."""
    return CampaignRecipient.objects.filter(
        campaign_id__in=campaign_ids, outcome=RecipientOutcome.PENDING, send_at__lte=now,
        quarantined_at__isnull=True, claimed_at__lt=now - RECIPIENT_LEASE,
    )


def _claim(now, campaign_ids, limit: int) -> list[int]:
    ids = claim_ids(due_recipients(now, campaign_ids).order_by("send_at", "id"), limit, claimed_at=now)
    if len(ids) < limit:
        ids += claim_ids(lapsed_recipients(now, campaign_ids).order_by("claimed_at", "id"), limit - len(ids),
                         claimed_at=now)
    return ids


class RecipientClaims:
    """The "campaign recipients" stage of one tick: each call claims a batch of due recipients
    and sends it here or hands it off. A throttled campaign claims at most throttle_per_minute
    recipients in any THROTTLE_WINDOW, those of earlier ticks and calls counted, so after downtime
    it catches up at its throttle's rate rather than sending its backlog at once."""

    # The throttle's rolling window: what a throttled campaign claimed within it counts.
    THROTTLE_WINDOW = timezone.timedelta(minutes=1)

    def __init__(self, hand_off_to=None):
        self.hand_off_to = hand_off_to
        self.expired_skipped = False

    def __call__(self, now, report: TickReport, handled: set | None = None) -> int:
        if not self.expired_skipped:  # once a tick, before its first claim
            skip_expired(now)
            self.expired_skipped = True
        campaigns = {pk: (status, throttle) for pk, status, throttle in Campaign.objects.filter(
            status__in=CLAIMING_STATUSES).values_list("pk", "status", "throttle_per_minute")}
        if not campaigns:
            return 0
        with transaction.atomic():
            ids = self._claim(now, campaigns)
            if not ids:
                return 0
            scheduled = [pk for pk, (status, _) in campaigns.items() if status == CampaignStatus.SCHEDULED]
            if scheduled:
                _mark_sending(now, scheduled, ids)
            if self.hand_off_to is None:
                report.campaign_messages += send_campaign_batch(ids, now)
            else:
                hand_off = self.hand_off_to
                transaction.on_commit(lambda: hand_off(ids), robust=True)
                report.handed_off += len(ids)
        return len(ids)

    def _claim(self, now, campaigns: dict) -> list[int]:
        free = [pk for pk, (_, throttle) in campaigns.items() if not throttle]
        ids = _claim(now, free, RECIPIENT_BATCH) if free else []
        throttles = {pk: throttle for pk, (_, throttle) in campaigns.items() if throttle}
        for pk, room in self._rooms(now, throttles).items():
            room = min(room, RECIPIENT_BATCH - len(ids))
            if room > 0:
                ids += _claim(now, [pk], room)
        return ids

    def _rooms(self, now, throttles: dict) -> dict:
        """How many recipients each throttled campaign may claim now: its throttle less those
        claimed within the window, whether still claimed or sent since (the send clears
        `claimed_at` and sets `decided_at`). The campaigns' rows stay locked until the claim commits,
        so a concurrent tick cannot count before this one's claims are in; a campaign another
        transaction holds gets nothing this time. Two queries, however many campaigns."""
        if not throttles:
            return {}
        mine = list(Campaign.objects.select_for_update(skip_locked=True).filter(pk__in=throttles)
                    .order_by("pk").values_list("pk", flat=True))
        recent = dict(
            CampaignRecipient.objects.filter(Q(claimed_at__isnull=False) | Q(outcome=RecipientOutcome.SENT),
                                             campaign_id__in=mine)
            .alias(claimed_or_sent_at=Coalesce("claimed_at", "decided_at"))
            .filter(claimed_or_sent_at__gt=now - self.THROTTLE_WINDOW)
            .values("campaign_id").annotate(claimed=Count("pk")).order_by().values_list("campaign_id", "claimed")
        ) if mine else {}
        return {pk: throttles[pk] - recent.get(pk, 0) for pk in mine}


def _mark_sending(now, scheduled: list[int], ids: list[int]) -> None:
    """Scheduled campaigns whose first recipients were just claimed are sending now. One another
    transaction holds is left for a later claim, or the end, to move: a cancel takes the campaign
    before its recipients, so waiting for it while holding the claimed rows would deadlock."""
    starting = set(CampaignRecipient.objects.filter(pk__in=ids, campaign_id__in=scheduled)
                   .values_list("campaign_id", flat=True).distinct())
    for campaign in Campaign.objects.select_for_update(skip_locked=True, no_key=True).filter(pk__in=starting):
        move_campaign(campaign, CampaignStatus.SENDING, action="campaign.sending", now=now, refuse=False)


def skip_expired(now, limit: int = EXPIRE_BATCH) -> int:
    """Skip, with the reason "expired", unclaimed pending recipients whose send time plus their
    campaign's expires_after has passed (read from the recipient_due index). Set-based; returns
    how many. (A claimed batch that expires before its worker runs is skipped by the worker.)"""
    campaigns = dict(Campaign.objects.filter(status__in=CLAIMING_STATUSES, expires_after__isnull=False)
                     .values_list("pk", "expires_after"))
    expired = 0
    for pk, expires_after in campaigns.items():
        unclaimed = CampaignRecipient.objects.filter(
            campaign_id=pk, outcome=RecipientOutcome.PENDING, send_at__lt=now - expires_after,
            quarantined_at__isnull=True, claimed_at__isnull=True)
        ids = list(unclaimed.values_list("pk", flat=True)[:limit])
        if ids:
            # Checked again in the UPDATE itself: a tick may have claimed some meanwhile.
            expired += unclaimed.filter(pk__in=ids).update(
                outcome=RecipientOutcome.SKIPPED, skip_reason=EXPIRED, decided_at=now)
    return expired


def finish_campaigns_batch(now, report: TickReport, handled: set | None = None) -> int:
    """Move to SENT every scheduled or sending campaign none of whose recipients is pending
    (an A/B test's rest waiting for the winner is pending). Returns how many ended."""
    pending = CampaignRecipient.objects.filter(campaign=OuterRef("pk"), outcome=RecipientOutcome.PENDING)
    done = list(Campaign.objects.filter(status__in=CLAIMING_STATUSES).filter(~Exists(pending))
                .order_by("pk")[:ENDS_BATCH])
    ended = 0
    for campaign in done:
        with transaction.atomic():
            if campaign.status == CampaignStatus.SCHEDULED and not move_campaign(
                    campaign, CampaignStatus.SENDING, action="campaign.sending", now=now, refuse=False):
                continue
            ended += move_campaign(campaign, CampaignStatus.SENT, action="campaign.sent", now=now,
                                   fields={"finished_at": now}, refuse=False)
    report.campaigns_sent += ended
    return ended


# --- a worker's batch -----------------------------------------------------------------------------

def send_campaign_batch(recipient_ids: list[int], now=None) -> int:
    """Send the recipients a tick claimed, those still pending that no other worker holds:
    create their messages (reusing any already made), route them, and record each recipient's
    outcome, in bulk, in one transaction. A recipient that cannot be sent (no template version,
    no channel plan) is quarantined and the rest go on. Returns the messages created now; a
    batch already sent (a duplicate task) sends nothing."""
    now = now or timezone.now()
    with collector_paused(), transaction.atomic():
        recipients = claim(
            filter_in(CampaignRecipient.objects.filter(
                outcome=RecipientOutcome.PENDING, claimed_at__isnull=False,
                quarantined_at__isnull=True, campaign__status__in=CLAIMING_STATUSES,
            ), "id", recipient_ids).select_related("contact").defer(*UNREAD_FIELDS).order_by("id"),
            len(recipient_ids),
        )
        if not recipients:
            return 0
        campaigns = Campaign.objects.in_bulk({r.campaign_id for r in recipients})
        versions = _template_versions(recipients, campaigns)
        plans = DefaultChannelPlan.plans() if any(not c.channel_plan for c in campaigns.values()) else {}

        expired = [r for r in recipients if _expired(r, campaigns[r.campaign_id], now)]
        for recipient in expired:
            recipient.outcome, recipient.skip_reason, recipient.decided_at = RecipientOutcome.SKIPPED, EXPIRED, now
        sending = [r for r in recipients if r.outcome == RecipientOutcome.PENDING]
        made = []

        def send(rows):
            made.append(_send(rows, campaigns, versions, plans, now))

        failures = run_isolating_failures(sending, send)
        quarantine_failures(CampaignRecipient, failures, now, stage="campaign recipients")
        failed = {row.pk for row, _ in failures}
        for recipient in recipients:
            recipient.claimed_at = None
        bulk_update([r for r in recipients if r.pk not in failed],
                    ["outcome", "message", "skip_reason", "decided_at", "claimed_at"])
        return sum(made)


def _send(recipients, campaigns, versions, plans, now) -> int:
    make = _MessageMaker(campaigns, versions, plans)
    unsaved = [make(r) for r in recipients]
    messages, created = routing.create_and_dispatch(unsaved, now=now)
    for recipient, message in zip(recipients, messages):
        recipient.message, recipient.outcome, recipient.decided_at = message, RecipientOutcome.SENT, now
    return len(created)


class _MessageMaker:
    """Makes a batch's unsaved messages, each its recipient's: what a campaign and template
    version have in common is worked out once (omni.lib.bulk.InstanceMaker)."""

    def __init__(self, campaigns, versions, plans):
        self.campaigns, self.versions, self.plans = campaigns, versions, plans
        self.makers = {}  # (campaign id, version id): its InstanceMaker

    def __call__(self, recipient) -> Message:
        campaign = self.campaigns[recipient.campaign_id]
        variant_id = recipient.variant_id or campaign.winner_id
        version = (self.versions.get(("variant", variant_id)) if variant_id
                   else self.versions.get(("template", campaign.template_id)))
        if version is None:
            raise ValueError(f"{campaign} has no published template version for this recipient's variant: "
                             "publish the template, then retry.")
        make = self.makers.get((campaign.pk, version.pk))
        if make is None:
            make = self.makers[campaign.pk, version.pk] = self._maker(campaign, version)
        message = make(
            contact_id=recipient.contact_id,
            variables={"campaign": campaign.name},
            idempotency_key=f"campaign:{campaign.pk}:{recipient.contact_id}",
            expires_at=(recipient.send_at + campaign.expires_after
                        if campaign.expires_after and recipient.send_at else None),
        )
        Message.contact.field.set_cached_value(message, recipient.contact)
        Message.template_version.field.set_cached_value(message, version)
        return message

    def _maker(self, campaign, version) -> InstanceMaker:
        plan = campaign.channel_plan or default_plan(campaign, version, self.plans)
        if not plan:
            raise ValueError(f"{campaign} has no channel plan, and there is no default plan for "
                             f"{campaign.purpose} messages of {campaign.urgency} urgency on the template's channels.")
        return InstanceMaker(
            Message,
            template_version=version,
            channel_plan=plan,
            source=MessageSource.CAMPAIGN,
            purpose=campaign.purpose or version.purpose,
            urgency=campaign.urgency,
            intent_key=campaign.intent_key or f"campaign:{campaign.pk}",
        )


def default_plan(campaign, version, plans: dict) -> list:
    """The default plan for the campaign's purpose and urgency (DefaultChannelPlan), kept to the
    channels its template version is written for, as a journey step left to the defaults gets."""
    default = plans.get((campaign.purpose or version.purpose, campaign.urgency)) or []
    plan = [dict(entry) for entry in default if entry["channel"] in version.channels()]
    if plan:
        plan[-1] = {"channel": plan[-1]["channel"]}  # nothing after it to move on to
    return plan


def _template_versions(recipients, campaigns) -> dict:
    """The version each recipient is sent: its variant's pinned one (or the winner's), else the
    campaign template's latest; keyed ("variant", id) and ("template", id). Two queries at most."""
    from templates.models import TemplateVersion

    from .models import CampaignVariant

    variant_ids = {r.variant_id or campaigns[r.campaign_id].winner_id for r in recipients} - {None}
    pinned = dict(CampaignVariant.objects.filter(pk__in=variant_ids).values_list("pk", "template_version_id"))
    versions = TemplateVersion.objects.in_bulk(set(pinned.values()) - {None})
    found = {("variant", pk): versions[vid] for pk, vid in pinned.items() if vid in versions}
    plain = {campaigns[r.campaign_id].template_id for r in recipients
             if not (r.variant_id or campaigns[r.campaign_id].winner_id)}
    if plain:
        found.update({("template", pk): v for pk, v in latest_versions(plain).items()})
    return found


def _expired(recipient, campaign, now) -> bool:
    return bool(campaign.expires_after and recipient.send_at and recipient.send_at + campaign.expires_after < now)


# --- running it -----------------------------------------------------------------------------------

def pause_campaign(campaign, *, actor, reason: str = "") -> None:
    """Stop claiming the campaign's recipients (a batch already claimed may still go out); its
    deferred messages and fallback timers wait too (campaigns/message_timers.py) until it resumes."""
    _fresh_status(campaign)
    move_campaign(campaign, CampaignStatus.PAUSED, action="campaign.paused", actor=actor,
                  fields={"paused_reason": reason[:500]}, data={"reason": reason} if reason else None)


def resume_campaign(campaign, *, actor) -> None:
    """Claim the campaign's recipients again, from where it stopped; an auto-pause is cleared,
    and from now on auto-pause judges only the sends made after this resume (watched_since).
    It is scheduled again while its first send time is still ahead (it was paused before it),
    else sending."""
    now = timezone.now()
    _fresh_status(campaign)
    first_send_at = campaign.recipients.aggregate(first=Min("send_at"))["first"]
    to = CampaignStatus.SCHEDULED if first_send_at and first_send_at > now else CampaignStatus.SENDING
    move_campaign(campaign, to, action="campaign.resumed", actor=actor, now=now,
                  fields={"paused_reason": "", "auto_paused_at": None, "watched_since": now},
                  data={"watched_since": now.isoformat()})


def unqueued_messages(campaign):
    """The campaign's messages not queued yet (pending, or deferred by quiet hours or a cap):
    what a cancellation can still stop."""
    return Message.objects.filter(campaign_recipient__campaign=campaign,
                                  status__in=[MessageStatus.PENDING, MessageStatus.DEFERRED])


def cancellable(campaign) -> bool:
    """Whether cancelling would stop anything: a campaign not ended yet, or a sent one (every
    recipient decided) some of whose messages still wait to be queued."""
    if not can_move(campaign, CampaignStatus.CANCELLED):
        return False
    return campaign.status != CampaignStatus.SENT or unqueued_messages(campaign).exists()


@transaction.atomic
def cancel_campaign(campaign, *, actor) -> int:
    """Skip pending recipients (cancelled) and cancel their unqueued messages. Returns how many.
    A sent campaign is cancelled only while some of its messages are not queued yet."""
    now = timezone.now()
    # The campaign before its recipients, as the winner's choice (ab_test.choose_winner) takes
    # them: the other order deadlocks with it.
    _fresh_status(campaign, lock=True)
    sent = campaign.status == CampaignStatus.SENT
    # A worker sending a batch holds its rows: this waits for it, then leaves what it sent.
    skipped = CampaignRecipient.objects.filter(campaign=campaign, outcome=RecipientOutcome.PENDING).update(
        outcome=RecipientOutcome.SKIPPED, skip_reason=CANCELLED, decided_at=now, claimed_at=None)
    cancelled = len(state.cancel_messages(unqueued_messages(campaign).values_list("pk", "plan_step"),
                                          "campaign_cancelled", now))
    if sent and not cancelled:
        raise CampaignMoveRefused(f"{campaign} is sent and none of its messages waits to be queued any more: "
                                  f"there is nothing left to cancel.")
    # Refused (cancelled meanwhile): the whole cancellation rolls back.
    move_campaign(campaign, CampaignStatus.CANCELLED, action="campaign.cancelled", actor=actor, now=now,
                  # A sent campaign keeps when it finished deciding its recipients.
                  fields={} if sent else {"finished_at": now},
                  data={"recipients_skipped": skipped, "messages_cancelled": cancelled})
    return skipped + cancelled


def _fresh_status(campaign, *, lock: bool = False) -> None:
    # The tick may have moved it since this instance was read (scheduled to sending): the audit
    # entry says where it really came from.
    if lock:
        campaign.status = Campaign.objects.select_for_update(no_key=True).values_list(
            "status", flat=True).get(pk=campaign.pk)
    else:
        campaign.refresh_from_db(fields=["status"])
