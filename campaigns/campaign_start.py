"""Starting a campaign: checks, pinned versions, the audience snapshot, holdout and variants
drawn, send times. Also clone, follow-up and test send.

The start runs in one transaction with the campaign row locked. It reads the audience in one
query, decides every contact in Python over that list and writes the recipients with bulk
inserts (COPY on PostgreSQL), so its number of queries does not grow with the audience (the reachability check runs
per REACHABILITY_CHUNK contacts).

The draws (holdout, A/B test share, variant) come from a SHA-256 of "<campaign id>:<contact id>",
computed in Python, so they are the same on PostgreSQL and SQLite and on every run.

Send times: now; or `scheduled_at`; or with `send_in_local_time`, `scheduled_at`'s wall clock
(read in settings.TIME_ZONE, the zone the marketer entered it in) on each contact's clock
(campaigns.timing.contact_zone: profile, else phone number, else OMNI_DEFAULT_TIMEZONE). Across
daylight saving time the rule of campaigns/timing.py holds: a wall-clock time the clocks skip
that day (02:30 on a spring-forward night) is sent as much later as they skip (03:30), and one
they pass twice (01:30 on a fall-back night) is sent the first time. Where that moment has
already passed, the campaign sends at once or leaves the contact out (local_time_passed), as
`local_time_passed` says. The throttle then spreads the send times: at most
`throttle_per_minute` recipients per minute, in the order of their send time and contact id.
"""
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from channels.models import MessageSource
from compliance import gate
from contacts.models import Contact
from omni import audit
from omni.choices import Purpose
from omni.lib import approval, bulk
from templates.actions import latest_versions

from . import campaign_audience
from .campaign_approval import start_refusal
from .campaign_state import move_campaign
from .journey_testing import send_test_message
from .models import (
    Campaign,
    CampaignRecipient,
    CampaignStatus,
    CampaignVariant,
    FollowUpWhen,
    LocalTimePassed,
    RecipientOutcome,
)
from .timing import contact_zone, wall_clock

# Why a contact of the audience was left out at the start (CampaignRecipient.skip_reason).
ERASED = "erased"
PAUSED = "paused"
NO_ADDRESS = "no_address"
OPTED_OUT = "opted_out"
LOCAL_TIME_PASSED = "local_time_passed"

# Contacts checked against consent and suppression per reachability call: large enough that a
# usual audience takes one or two, small enough to keep each query's IN list well under the
# databases' parameter limits.
REACHABILITY_CHUNK = 5000
# Fields a clone does not copy: identity, status and runtime state, the approval, its record.
NOT_CLONED = {"id", "name", "status", "started_at", "finished_at", "paused_reason", "created_at", "updated_at",
              "created_by", "test_ends_at", "winner", "winner_chosen_at", "auto_paused_at",
              *approval.APPROVAL_FIELDS}


class CampaignNotReady(ValidationError):
    """Why a campaign cannot start: `problems`, each in words."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(self.problems)


@dataclass
class StartSummary:
    audience: int = 0
    pending: int = 0
    holdout: int = 0
    waiting_for_winner: int = 0
    skipped: dict = field(default_factory=dict)

    def as_data(self) -> dict:
        return {"audience": self.audience, "pending": self.pending, "holdout": self.holdout,
                "waiting_for_winner": self.waiting_for_winner, "skipped": dict(self.skipped)}


# --- the checks ----------------------------------------------------------------------------------

def start_problems(campaign, *, now=None, count: int | None = None) -> list[str]:
    """What stops `campaign` from starting now, in words, one per problem (empty: it can start).
    `count`: its audience, when the caller has it."""
    now = now or timezone.now()
    problems = []
    if campaign.status != CampaignStatus.DRAFT:
        problems.append(f"It is {CampaignStatus(campaign.status).label.lower()}: only a draft campaign can start.")
    if not campaign.owner_id:
        problems.append("Choose its owner: who answers for this campaign.")
    if not campaign.objective.strip():
        problems.append("Write its objective: what the campaign is for, in a sentence.")
    if not campaign.lifecycle_stage_id:
        problems.append("Choose its lifecycle stage: the stage of the contacts it is for.")
    if not campaign.goal_event.strip():
        problems.append("Name its goal event: the event that counts as its success.")
    if not campaign.goal_window:
        problems.append("Set its goal window: how long after the send the goal event counts.")
    if campaign.follow_up_of_id:
        problem = campaign_audience.follow_up_problem(campaign, now)
        if problem:
            problems.append(problem)
    elif not campaign.segment_id:
        problems.append("Choose its segment: the contacts it is sent to.")
    problems.extend(_content_problems(campaign))
    refused = start_refusal(campaign, count)
    if refused:
        problems.extend(refused.messages)
    return problems


def _content_problems(campaign) -> list[str]:
    problems = []
    if campaign.holdout_percent > 100:
        problems.append("Its holdout is a share of the audience: at most 100%.")
    variants = list(campaign.variants.select_related("template").order_by("position", "pk"))
    templates = [v.template for v in variants] or [campaign.template]
    for variant in variants:
        if variant.weight <= 0:
            problems.append(f"Variant {variant.name!r} has a weight of 0: give it a weight above 0, or remove it.")
    if len(variants) >= 2 and not 1 <= campaign.test_percent <= 100:
        problems.append("Its A/B test share is a share of the audience: between 1% and 100%.")
    if len(variants) >= 2 and campaign.test_percent < 100 and not campaign.test_period:
        problems.append(f"Set its test period: how long the A/B test runs on {campaign.test_percent}% of the "
                        f"audience before the rest get the winner.")
    channels = campaign_audience.plan_channels(campaign)
    if not channels:
        problems.append(f"It has no channel plan, and there is no default channel plan for "
                        f"{Purpose(campaign.purpose).label.lower()} messages of {campaign.urgency} urgency: give it "
                        f"channels, or add a default plan.")
        return problems
    latest = latest_versions({t.pk for t in templates})
    for template in {t.pk: t for t in templates}.values():
        version = latest.get(template.pk)
        if version is None:
            problems.append(f"Template {template.name!r} has no published version: publish it first.")
        elif not version.channels() & set(channels):
            problems.append(f"Template {template.name!r} (version {version.number}) has no variant for any of "
                            f"the campaign's channels ({', '.join(channels)}): add one and publish it.")
    return problems


def audience_count(campaign) -> int:
    """How many contacts the campaign's segment (or follow-up source) holds now."""
    return campaign_audience.audience_count(campaign)


# --- the start -----------------------------------------------------------------------------------

def start_campaign(campaign, *, actor, now=None) -> StartSummary:
    """Start: pin versions, snapshot recipients, draw holdout and variants, set send times;
    audited campaign.started. Raises CampaignNotReady (a refusal for want of approval is audited
    campaign.approval_refused)."""
    now = now or timezone.now()
    refused = None
    try:
        with transaction.atomic():
            locked = _locked(campaign)
            contacts = list(campaign_audience.audience(locked, now).order_by("pk")) \
                if locked.status == CampaignStatus.DRAFT and (locked.segment_id or locked.follow_up_of_id) else []
            problems = start_problems(locked, now=now, count=len(contacts))
            if problems:
                refused = start_refusal(locked, len(contacts))
                raise CampaignNotReady(problems)
            summary = _start(locked, contacts, actor, now)
    except CampaignNotReady:
        if refused is not None:
            approval.audit_refusal(campaign, refused, actor=actor, step="start")
        raise
    for name in ("status", "started_at", "test_ends_at", "updated_at"):
        setattr(campaign, name, getattr(locked, name))
    return summary


def _start(campaign, contacts: list[Contact], actor, now) -> StartSummary:
    variants = _pinned_variants(campaign)
    channels = campaign_audience.plan_channels(campaign)
    skipped = _left_out(campaign, contacts, channels, now)
    ab_test = len(variants) >= 2
    with_rest = ab_test and campaign.test_percent < 100
    weights = [(v, v.weight) for v in variants]
    total_weight = sum(w for _, w in weights)

    recipients = []
    due = []
    for contact in contacts:
        recipient = CampaignRecipient(campaign=campaign, contact=contact, created_at=now)
        recipients.append(recipient)
        reason = skipped.get(contact.pk)
        if reason:
            _decide(recipient, RecipientOutcome.SKIPPED, now, reason)
            continue
        holdout_draw, test_draw, variant_draw = draws(campaign.pk, contact.pk)
        if holdout_draw < campaign.holdout_percent / 100:
            _decide(recipient, RecipientOutcome.HOLDOUT, now)
            continue
        if with_rest and test_draw >= campaign.test_percent / 100:
            continue  # the rest: pending, waiting for the winner (no variant, no send time)
        recipient.variant = _by_weight(weights, total_weight, variant_draw)
        recipient.in_test = ab_test
        send_at = _send_time(campaign, contact, now)
        if send_at is None:
            _decide(recipient, RecipientOutcome.SKIPPED, now, LOCAL_TIME_PASSED)
            recipient.variant, recipient.in_test = None, False
            continue
        recipient.send_at = send_at
        due.append(recipient)
    _throttle(due, campaign.throttle_per_minute)
    bulk.bulk_insert(recipients)

    outcomes = Counter(r.outcome for r in recipients)
    summary = StartSummary(
        audience=len(recipients), pending=len(due), holdout=outcomes[RecipientOutcome.HOLDOUT],
        waiting_for_winner=outcomes[RecipientOutcome.PENDING] - len(due),
        skipped=dict(Counter(r.skip_reason for r in recipients if r.outcome == RecipientOutcome.SKIPPED)))
    test_ends_at = None
    if with_rest:
        last_test_send = max((r.send_at for r in due), default=now)
        test_ends_at = last_test_send + campaign.test_period
    earliest = min((r.send_at for r in due), default=now)
    to = CampaignStatus.SENDING if earliest <= now else CampaignStatus.SCHEDULED
    move_campaign(campaign, to, action="campaign.started", actor=actor, now=now,
                  fields={"started_at": now, "test_ends_at": test_ends_at},
                  data={**summary.as_data(), "first_send_at": earliest.isoformat(),
                        "test_ends_at": test_ends_at.isoformat() if test_ends_at else None,
                        "pinned_versions": {v.name: v.template_version_id for v in variants}})
    campaign.updated_at = now
    return summary


def _locked(campaign) -> Campaign:
    of = {"of": ("self",)} if connection.features.has_select_for_update_of else {}
    return Campaign.objects.select_for_update(no_key=True, **of).select_related(
        "segment", "follow_up_of").get(pk=campaign.pk)


def _pinned_variants(campaign) -> list[CampaignVariant]:
    """The campaign's variants (one "Main" from its template when it has none), each pinned to its
    template's latest published version."""
    variants = list(campaign.variants.order_by("position", "pk"))
    if not variants:
        variants = [CampaignVariant.objects.create(campaign=campaign, name="Main", template_id=campaign.template_id,
                                                   weight=100, position=0)]
    latest = latest_versions({v.template_id for v in variants})
    for variant in variants:
        variant.template_version = latest[variant.template_id]
    CampaignVariant.objects.bulk_update(variants, ["template_version"])
    return variants


def _left_out(campaign, contacts: list[Contact], channels: list[str], now) -> dict[int, str]:
    """Contact id -> why the contact is left out: erased, paused, no address on any plan channel,
    or opted out of every plan channel that has an address (compliance.gate.reachability)."""
    reasons = {}
    to_check = []
    for contact in contacts:
        if contact.erased_at:
            reasons[contact.pk] = ERASED
        elif contact.messaging_paused and campaign.purpose != Purpose.TRANSACTIONAL:
            reasons[contact.pk] = PAUSED
        else:
            to_check.append(contact)
    for start in range(0, len(to_check), REACHABILITY_CHUNK):
        chunk = to_check[start:start + REACHABILITY_CHUNK]
        for contact_id, verdicts in gate.reachability(chunk, campaign.purpose, now, channels=channels).items():
            addressed = [v for v in verdicts.values() if v.reason != "no_address"]
            if not addressed:
                reasons[contact_id] = NO_ADDRESS
            elif all(gate.opted_out(v) for v in addressed):
                reasons[contact_id] = OPTED_OUT
    return reasons


def draws(campaign_id: int, contact_id: int) -> tuple[float, float, float]:
    """Three independent numbers in [0, 1) for this contact in this campaign, the same on every run
    and database: the holdout draw, the A/B test share draw and the variant draw."""
    digest = hashlib.sha256(f"{campaign_id}:{contact_id}".encode()).digest()
    return tuple(int.from_bytes(digest[i:i + 8], "big") / 2 ** 64 for i in (0, 8, 16))


def _by_weight(weights, total: int, draw: float):
    point = draw * total
    for variant, weight in weights:
        if point < weight:
            return variant
        point -= weight
    return weights[-1][0]


def _send_time(campaign, contact, now):
    """When the recipient is due, or None when their local time has passed and the campaign
    leaves such contacts out."""
    if campaign.send_in_local_time and campaign.scheduled_at:
        wall = timezone.localtime(campaign.scheduled_at, timezone.get_default_timezone())
        moment = wall_clock(wall.date(), wall.time(), contact_zone(contact))
        if moment >= now:
            return moment
        return now if campaign.local_time_passed == LocalTimePassed.SEND_NOW else None
    if campaign.scheduled_at and campaign.scheduled_at > now:
        return campaign.scheduled_at
    return now


def _throttle(due: list[CampaignRecipient], per_minute: int | None) -> None:
    """Spread send times so that at most `per_minute` fall in each minute: in the order of their
    send time and contact, the n-th of those due at one moment goes at that moment plus
    n // per_minute minutes (a later moment starts afresh once the queue has caught up with it)."""
    if not per_minute:
        return
    slot, in_slot = None, 0
    for recipient in sorted(due, key=lambda r: (r.send_at, r.contact_id)):
        if slot is None or recipient.send_at > slot:
            slot, in_slot = recipient.send_at, 0
        elif in_slot >= per_minute:
            slot, in_slot = slot + timedelta(minutes=1), 0
        recipient.send_at = slot
        in_slot += 1


def _decide(recipient: CampaignRecipient, outcome: str, now, reason: str = "") -> None:
    recipient.outcome, recipient.skip_reason, recipient.decided_at = outcome, reason, now


# --- clone, follow-up, test send -----------------------------------------------------------------

@transaction.atomic
def clone_campaign(campaign, *, actor):
    """A new draft with the same settings and variants (not their pinned versions, nor the status,
    approval or recipients), named "Copy of ...", audited campaign.cloned."""
    values = {f.attname: getattr(campaign, f.attname) for f in Campaign._meta.concrete_fields
              if f.name not in NOT_CLONED}
    clone = Campaign.objects.create(name=f"Copy of {campaign.name}"[:200], created_by=_user(actor), **values)
    CampaignVariant.objects.bulk_create([
        CampaignVariant(campaign=clone, name=v.name, template_id=v.template_id, weight=v.weight, position=v.position)
        for v in campaign.variants.order_by("position", "pk")])
    audit.record("campaign.cloned", obj=clone, actor=actor, data={"from": campaign.pk})
    return clone


@transaction.atomic
def create_follow_up(campaign, *, actor, when: str, after, name: str = "", template=None):
    """A draft campaign whose audience is `campaign`'s recipients who did not <when> within
    `after` (campaigns.models.FollowUpWhen), linked by follow_up_of; audited
    campaign.follow_up_created. It starts once `campaign` has sent and `after` has passed."""
    if when not in FollowUpWhen.values:
        raise ValidationError(f"Choose whom to follow up: {', '.join(str(label) for label in FollowUpWhen.labels)}.",
                              code="follow_up_when")
    if not after or after <= timedelta(0):
        raise ValidationError("Say how long after the send to follow up, e.g. 3 days.", code="follow_up_after")
    if when == FollowUpWhen.NOT_CONVERTED and not campaign.goal_event:
        raise ValidationError(f"{campaign.name!r} has no goal event: nobody can be told apart as not having reached "
                              f"it. Give it a goal event, or follow up those who did not open or click.",
                              code="no_goal_event")
    copied = {name_: getattr(campaign, name_) for name_ in (
        "purpose", "urgency", "channel_plan", "owner_id", "objective", "lifecycle_stage_id", "goal_event",
        "goal_window", "send_in_local_time", "local_time_passed", "throttle_per_minute", "expires_after")}
    follow_up = Campaign.objects.create(
        name=name or f"Follow-up of {campaign.name}"[:200], template=template or campaign.template,
        follow_up_of=campaign, follow_up_when=when, follow_up_after=after, created_by=_user(actor), **copied)
    audit.record("campaign.follow_up_created", obj=follow_up, actor=actor,
                 data={"follow_up_of": campaign.pk, "when": when, "after_seconds": int(after.total_seconds())})
    return follow_up


def send_test(campaign, *, actor, contacts=None, now=None) -> list:
    """Send each variant's template (its latest published version) to the test contacts
    (Contact.is_test; `contacts` for some of them) now, with the test_send exemption: consent and
    suppression apply, caps and quiet hours do not. Audited campaign.test_send per message."""
    if contacts is None:
        contacts = list(Contact.objects.reachable().filter(is_test=True).order_by("pk"))
    if not contacts:
        raise ValidationError("There are no test contacts to send a test to: mark a member of staff's own contact as "
                              "a test contact in its profile first.", code="no_test_contacts")
    variants = list(campaign.variants.order_by("position", "pk")) or [
        CampaignVariant(campaign=campaign, name="Main", template_id=campaign.template_id)]
    latest = latest_versions({v.template_id for v in variants})
    plan = campaign_audience.plan(campaign)
    messages = []
    for variant in variants:
        version = latest.get(variant.template_id)
        if version is None:
            raise ValidationError(f"Variant {variant.name!r}'s template has no published version: publish it first.",
                                  code="no_published_version")
        channel_plan = [dict(entry) for entry in plan if entry["channel"] in version.channels()]
        for contact in contacts:
            messages.append(send_test_message(
                version, channel_plan, contact, actor=actor, about=campaign, action="campaign.test_send",
                source=MessageSource.CAMPAIGN, purpose=campaign.purpose, urgency=campaign.urgency,
                variables={"campaign": campaign.name, "variant": variant.name}, now=now))
    return messages


def _user(actor):
    return actor if getattr(actor, "is_authenticated", False) else None
