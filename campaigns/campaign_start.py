"""Starting a campaign: checks, pinned versions, the audience snapshot, holdout and variants
drawn, send times. Also clone, follow-up and test send.

The start runs in one transaction with the campaign row locked. It reads the audience in one
query (plain values, no model instances), decides every contact in Python over that list, asks
the gate (compliance.gate.reachability) only about the few who revoked a consent or have a
suppressed address, and writes the recipients as rows (one COPY on PostgreSQL; on SQLite, inserts
as large as its parameter limit allows). So on PostgreSQL its number of queries does not grow
with the audience (up to REACHABILITY_CHUNK contacts for the gate to check): 10,000 contacts
start in under a second here.

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
from datetime import datetime, timedelta
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from channels.models import MessageSource
from compliance import gate
from compliance.models import Consent, Suppression, hash_address
from contacts.models import Contact, Device
from omni import audit
from omni.choices import OPENS_REPORTED_ON, PHONE_CHANNELS, Channel, ConsentStatus, Purpose
from omni.lib import approval, bulk
from omni.lib.collector import collector_paused
from omni.lib.sql import prepared_cursor
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
    TestMetric,
)
from .timing import contact_zone, throttled, wall_clock

# Why a contact of the audience was left out at the start (CampaignRecipient.skip_reason).
ERASED = "erased"
PAUSED = "paused"
NO_ADDRESS = "no_address"
OPTED_OUT = "opted_out"
LOCAL_TIME_PASSED = "local_time_passed"

# Contacts the gate checks per reachability call, and suppressed addresses looked up per query:
# large enough that a usual audience takes one, small enough to keep each IN list under SQLite's
# limit of 32,766 parameters (PostgreSQL's is 65,535).
REACHABILITY_CHUNK = 5000
SUPPRESSION_CHUNK = 10000
# The draws of a contact when the campaign has no holdout and one variant: none held out, none
# waiting for a winner, the one variant picked.
NOTHING_DRAWN = (1.0, 0.0, 0.0)
# Fields a clone does not copy: identity, status and runtime state, the approval, its record.
NOT_CLONED = {"id", "name", "status", "started_at", "finished_at", "paused_reason", "created_at", "updated_at",
              "created_by", "test_ends_at", "winner", "winner_chosen_at", "auto_paused_at",
              "watched_since", "start_requested_at", "start_requested_by", "start_enqueued_at", "start_attempts",
              "start_refused_problems", "start_summary",
              *approval.APPROVAL_FIELDS}
# The statuses a start begins from: a campaign whose start request_start queued (the background
# start), or a draft started directly (the benchmark, a shell).
START_FROM = (CampaignStatus.STARTING, CampaignStatus.DRAFT)


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

    @classmethod
    def from_data(cls, data: dict) -> "StartSummary":
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})

    def words(self) -> str:
        """E.g. "120 in the audience; 100 to send; 20 held out." """
        words = [f"{self.audience} in the audience", f"{self.pending} to send"]
        if self.holdout:
            words.append(f"{self.holdout} held out")
        if self.waiting_for_winner:
            words.append(f"{self.waiting_for_winner} wait for the A/B test's winner")
        skipped = sum(self.skipped.values()) if self.skipped else 0
        if skipped:
            reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(self.skipped.items()))
            words.append(f"{skipped} left out ({reasons})")
        return "; ".join(words) + "."


# --- the checks ----------------------------------------------------------------------------------

def start_problems(campaign, *, now=None, count: int | None = None, expected: str = CampaignStatus.DRAFT) -> list[str]:
    """What stops `campaign` from starting now, in words, one per problem (empty: it can start).
    `count`: its audience, when the caller has it. `expected`: the status it starts from, DRAFT
    when a start is asked for, STARTING for the background start of one asked for earlier."""
    now = now or timezone.now()
    problems = []
    if campaign.status != expected:
        problems.append(_status_problem(campaign.status, expected))
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


def _status_problem(status: str, expected: str) -> str:
    if status == CampaignStatus.STARTING:
        return "It is already starting: its audience snapshot is being taken, and its page shows when it has started."
    label = CampaignStatus(status).label.lower()
    if expected == CampaignStatus.STARTING:
        return f"It is {label}, no longer starting: its start was done or withdrawn meanwhile."
    return f"It is {label}: only a draft campaign can start."


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
    if len(variants) >= 2 and campaign.test_metric == TestMetric.OPENS and not OPENS_REPORTED_ON & set(channels):
        problems.append(f"Its A/B test counts opens, which none of its channels ({', '.join(channels)}) reports: "
                        f"count clicks, replies or the goal event instead.")
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
    audited campaign.started, the summary kept on the campaign (start_summary). It starts from
    the status the caller read, STARTING (the background start, campaign_start_requests) or
    DRAFT (a direct call), and only if the campaign is still in it. Raises CampaignNotReady (a
    refusal for want of approval is audited campaign.approval_refused)."""
    now = now or timezone.now()
    expected = campaign.status if campaign.status in START_FROM else CampaignStatus.DRAFT
    refused = None
    try:
        # Tuples and lists for each of the audience: the collector would walk the heap for them.
        with collector_paused(), transaction.atomic():
            locked = _locked(campaign)
            audience = campaign_audience.audience(locked, now) \
                if locked.status == expected and (locked.segment_id or locked.follow_up_of_id) else None
            people = [_Person(*row) for row in audience.order_by("pk").values_list(*_Person._fields)] \
                if audience is not None else []
            problems = start_problems(locked, now=now, count=len(people), expected=expected)
            if problems:
                refused = start_refusal(locked, len(people))
                raise CampaignNotReady(problems)
            summary = _start(locked, audience, people, actor, now)
    except CampaignNotReady:
        if refused is not None:
            approval.audit_refusal(campaign, refused, actor=actor, step="start")
        raise
    for name in ("status", "started_at", "test_ends_at", "start_summary", "updated_at"):
        setattr(campaign, name, getattr(locked, name))
    return summary


class _Person(NamedTuple):
    """What the start reads of each contact: plain values, not model instances (a 100,000-contact
    audience would spend seconds building them). Named as Contact's fields, so the zone lookup
    (compliance.gate.contact_zones) reads it as it reads a contact."""

    pk: int
    email: str
    phone: str
    timezone: str
    messaging_paused: bool
    erased_at: datetime | None


# What each recipient row holds, in insert order (omni.lib.bulk.insert_rows).
_ROW = ("campaign_id", "contact_id", "variant_id", "in_test", "outcome", "skip_reason", "send_at", "decided_at",
        "created_at")


def _start(campaign, audience, people: list[_Person], actor, now) -> StartSummary:
    variants = _pinned_variants(campaign)
    channels = campaign_audience.plan_channels(campaign)
    skipped = _left_out(campaign, audience, people, channels, now)
    ab_test = len(variants) >= 2
    with_rest = ab_test and campaign.test_percent < 100
    weights = [(v.pk, v.weight) for v in variants]
    total_weight = sum(w for _, w in weights)
    holdout_share, test_share = campaign.holdout_percent / 100, campaign.test_percent / 100
    drawn = holdout_share > 0 or ab_test

    rows = []  # lists in _ROW's order; send_at (index 6) is spread by the throttle afterwards
    skips, holdout, waiting = Counter(), 0, 0
    for person in people:
        reason = skipped.get(person.pk)
        if reason:
            rows.append([campaign.pk, person.pk, None, False, RecipientOutcome.SKIPPED, reason, None, now, now])
            skips[reason] += 1
            continue
        # Without a holdout or an A/B test there is nothing to draw (a SHA-256 a contact spared).
        holdout_draw, test_draw, variant_draw = draws(campaign.pk, person.pk) if drawn else NOTHING_DRAWN
        if holdout_draw < holdout_share:
            rows.append([campaign.pk, person.pk, None, False, RecipientOutcome.HOLDOUT, "", None, now, now])
            holdout += 1
            continue
        if with_rest and test_draw >= test_share:
            # The rest: pending, waiting for the winner (no variant, no send time).
            rows.append([campaign.pk, person.pk, None, False, RecipientOutcome.PENDING, "", None, None, now])
            waiting += 1
            continue
        send_at = _send_time(campaign, person, now)
        if send_at is None:
            rows.append([campaign.pk, person.pk, None, False, RecipientOutcome.SKIPPED, LOCAL_TIME_PASSED, None, now,
                         now])
            skips[LOCAL_TIME_PASSED] += 1
            continue
        rows.append([campaign.pk, person.pk, by_weight(weights, total_weight, variant_draw), ab_test,
                     RecipientOutcome.PENDING, "", send_at, None, now])
    due = [row for row in rows if row[6] is not None]
    for row, send_at in zip(due, throttled([(row[6], row[1]) for row in due], campaign.throttle_per_minute)):
        row[6] = send_at
    bulk.insert_rows(CampaignRecipient, list(_ROW), [tuple(row) for row in rows])

    summary = StartSummary(audience=len(rows), pending=len(due), holdout=holdout, waiting_for_winner=waiting,
                           skipped=dict(skips))
    test_ends_at = None
    if with_rest:
        last_test_send = max((row[6] for row in due), default=now)
        test_ends_at = last_test_send + campaign.test_period
    earliest = min((row[6] for row in due), default=now)
    to = CampaignStatus.SENDING if earliest <= now else CampaignStatus.SCHEDULED
    move_campaign(campaign, to, action="campaign.started", actor=actor, now=now,
                  fields={"started_at": now, "test_ends_at": test_ends_at, "start_summary": summary.as_data()},
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


def _left_out(campaign, audience, people: list[_Person], channels: list[str], now) -> dict[int, str]:
    """Contact id -> why the contact is left out: erased, paused, no address on any plan channel,
    or opted out of every plan channel that has an address.

    Whether someone opted out is the gate's call (compliance.gate.reachability and opted_out).
    Only a revoked consent or a suppression of their address can make it so, so the gate is
    asked only about contacts with one of those on every channel they have an address on, found
    in two queries over the audience; the rest, nearly everyone, cost no gate check."""
    reasons = {}
    addressed = {}
    pushable = _with_devices(audience) if Channel.PUSH in channels else set()
    for person in people:
        if person.erased_at:
            reasons[person.pk] = ERASED
            continue
        if person.messaging_paused and campaign.purpose != Purpose.TRANSACTIONAL:
            reasons[person.pk] = PAUSED
            continue
        addresses = {channel: _address(person, channel, pushable) for channel in channels}
        if not any(addresses.values()):
            reasons[person.pk] = NO_ADDRESS
        else:
            addressed[person.pk] = addresses
    suspects = _may_have_opted_out(campaign, audience, addressed, channels, now)
    for start in range(0, len(suspects), REACHABILITY_CHUNK):
        chunk = Contact.objects.filter(pk__in=suspects[start:start + REACHABILITY_CHUNK])
        for contact_id, verdicts in gate.reachability(chunk, campaign.purpose, now, channels=channels).items():
            with_address = [v for v in verdicts.values() if v.reason != "no_address"]
            if with_address and all(gate.opted_out(v) for v in with_address):
                reasons[contact_id] = OPTED_OUT
    return reasons


def _address(person: _Person, channel: str, pushable: set) -> str:
    if channel == Channel.PUSH:
        return "device" if person.pk in pushable else ""
    if channel == Channel.EMAIL:
        return person.email
    return person.phone if channel in PHONE_CHANNELS else ""


def _with_devices(audience) -> set[int]:
    return set(Device.objects.filter(contact__in=audience.values("pk"), enabled=True)
               .values_list("contact_id", flat=True))


def _may_have_opted_out(campaign, audience, addressed: dict, channels: list[str], now) -> list[int]:
    """The contacts who may have opted out of every plan channel they have an address on: each
    such channel has a revoked consent for the campaign's purpose, or its address a suppression
    (for any reason: the gate says which are opt-outs). Someone with one such channel clear of
    both cannot have opted out of them all. One query for the consents, one for the suppressions."""
    if not addressed:
        return []
    revoked = set(Consent.objects.filter(contact__in=audience.values("pk"), purpose=campaign.purpose,
                                         channel__in=channels, status=ConsentStatus.REVOKED)
                  .values_list("contact_id", "channel"))
    suppressed = _suppressed_addresses({address for addresses in addressed.values()
                                        for channel, address in addresses.items()
                                        if address and channel != Channel.PUSH}, now)
    candidates = {contact_id for contact_id, _ in revoked}
    if suppressed:
        candidates |= {contact_id for contact_id, addresses in addressed.items()
                       if not suppressed.isdisjoint(addresses.values())}

    def stopped(contact_id, channel, address) -> bool:
        return (contact_id, channel) in revoked or (channel != Channel.PUSH and address in suppressed)

    return sorted(contact_id for contact_id in candidates if contact_id in addressed and all(
        stopped(contact_id, channel, address) for channel, address in addressed[contact_id].items() if address))


def _suppressed_addresses(addresses: set[str], now) -> set[str]:
    """Which of these addresses have a suppression in force (looked up by hash)."""
    hashes = {address: hash_address(address) for address in addresses}
    found = _suppressed(list(set(hashes.values())), now)
    return {address for address, address_hash in hashes.items() if address_hash in found} if found else set()


def _suppressed(hashes: list[str], now) -> set[str]:
    """Which of these address hashes have a suppression in force. On PostgreSQL one query with the
    hashes as one parameter (an IN list of 100,000 parameters costs more to build than to run);
    elsewhere one query per SUPPRESSION_CHUNK."""
    if connection.vendor == "postgresql":
        # Bound on the server, the hashes joined into one text the server splits: psycopg checks
        # each element of a list for characters to quote (1.4 s for 166,000 hashes, against 0.15 s
        # for one text). Hashes are hexadecimal: no comma in them.
        with prepared_cursor(connection) as cursor:
            cursor.execute(f"SELECT DISTINCT address_hash FROM {Suppression._meta.db_table} "
                           f"WHERE address_hash = ANY(string_to_array(%s, ',')) "
                           f"AND (expires_at IS NULL OR expires_at > %s)", [",".join(hashes), now])
            return {address_hash for (address_hash,) in cursor.fetchall()}
    found = set()
    for start in range(0, len(hashes), SUPPRESSION_CHUNK):
        found.update(Suppression.objects.filter(address_hash__in=hashes[start:start + SUPPRESSION_CHUNK])
                     .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now)).values_list("address_hash", flat=True))
    return found


def draws(campaign_id: int, contact_id: int) -> tuple[float, float, float]:
    """Three independent numbers in [0, 1) for this contact in this campaign, the same on every run
    and database: the holdout draw, the A/B test share draw and the variant draw."""
    digest = hashlib.sha256(f"{campaign_id}:{contact_id}".encode()).digest()
    return tuple(int.from_bytes(digest[i:i + 8], "big") / 2 ** 64 for i in (0, 8, 16))


def by_weight(weights: list[tuple], total: int, draw: float):
    """The first item of the (item, weight) pair that `draw` (in [0, 1)) falls on, by weight."""
    point = draw * total
    for item, weight in weights:
        if point < weight:
            return item
        point -= weight
    return weights[-1][0]


def variant_drawn(campaign_id: int, contact_id: int, variants: list) -> object:
    """The variant this contact's variant draw picks by weight: the same on every run."""
    return by_weight([(v, v.weight) for v in variants], sum(v.weight for v in variants),
                     draws(campaign_id, contact_id)[2])


def scheduled_wall_clock(campaign) -> datetime | None:
    """The wall-clock date and time (naive) a campaign sent in local time goes at on each
    contact's clock: `scheduled_at` read in settings.TIME_ZONE, the zone the marketer entered it
    in. None when the campaign is not sent in local time."""
    if not (campaign.send_in_local_time and campaign.scheduled_at):
        return None
    return timezone.localtime(campaign.scheduled_at, timezone.get_default_timezone()).replace(tzinfo=None)


def _send_time(campaign, person, now):
    """When the recipient is due, or None when their local time has passed and the campaign
    leaves such contacts out."""
    wall = scheduled_wall_clock(campaign)
    if wall:
        moment = wall_clock(wall.date(), wall.time(), contact_zone(person))
        if moment >= now:
            return moment
        return now if campaign.local_time_passed == LocalTimePassed.SEND_NOW else None
    if campaign.scheduled_at and campaign.scheduled_at > now:
        return campaign.scheduled_at
    return now


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
        if not channel_plan:
            raise ValidationError(f"Variant {variant.name!r}'s template has no variant for any of the campaign's "
                                  f"channels ({', '.join(e['channel'] for e in plan) or 'none'}).", code="no_channel")
        for contact in contacts:
            messages.append(send_test_message(
                version, channel_plan, contact, actor=actor, about=campaign, action="campaign.test_send",
                source=MessageSource.CAMPAIGN, purpose=campaign.purpose, urgency=campaign.urgency,
                variables={"campaign": campaign.name, "variant": variant.name}, now=now))
    return messages


def _user(actor):
    return actor if getattr(actor, "is_authenticated", False) else None
