"""The pre-send gate: one decision for every send, whatever its source.

`decide()` is pure: it takes what it needs (SendFacts, which carry the sending rules in force)
and returns a Verdict. It runs every rule, in the order below, and the outcomes rank
suppress > defer > allow: the verdict's reason is the first failing rule of the winning
outcome, its `until` the latest end among the rules that defer. Each rule's result travels
with the verdict and is kept in its Decision row (compliance/decisions.py), sealed into the
audit chain.

The rules, in order (the reason each gives when it fails):
  expiry          suppress "expired"             the message's expires_at has passed
  address         suppress "no_address"          nothing to send it to on this channel
  contact_pause   suppress "contact_paused"      a human paused the contact (transactional passes)
  suppression     suppress "suppressed:<why>"    the address is on a suppression list
  consent         suppress "opted_out"           the contact revoked consent for this scope
  marketing       suppress "no_marketing_consent"  marketing needs an explicit opt-in
  channel_pause   defer "channel_paused"         an operator paused the channel or provider
  conversation_hold  defer "conversation_open:<id>"  marketing waits while the contact has a
                                                 conversation not closed (looked at again after
                                                 CONVERSATION_RECHECK) and until the hold after one
                                                 closed ends; "expired" when the message expires first
  quiet_hours     defer "quiet_hours"            a QuietHours row is in its window in the
                                                 contact's zone; suppress "expired" when the
                                                 message expires before the window ends
  frequency_cap   suppress or defer "frequency_cap"  a FrequencyCap row's count is reached in its
                                                 rolling window (drop, or defer until the oldest
                                                 send counted leaves it); "expired" as above

`decide_many()` loads the facts of a whole batch in two queries (the version of the rules and
pauses; consents, suppressions and the send ledger as one UNION ALL), three more when the rules
changed, and decides each; `check()` is the
same for one send; `Batch` decides the sends of one dispatch in order, counting each send it
queues against the caps of the sends after it; `reachability()` says for contacts and every
channel whether they can be messaged now, and why not.
"""
import functools
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import connections, router
from django.db.models import BigIntegerField, CharField, DateTimeField, Q, Value
from django.utils import timezone

from contacts.models import Device
from contacts.phones import country_of, timezones_of
from omni.choices import Channel, Exemption, Purpose
from omni.lib.bulk import filter_in

from .models import (
    CapAction,
    Consent,
    ConsentStatus,
    FrequencyCap,
    QuietHours,
    SendingPause,
    SendLedger,
    Suppression,
    hash_address,
)

ALLOW = "allow"
DEFER = "defer"
SUPPRESS = "suppress"

# What each exemption passes, by the reason the rule would give. A confirmation of an opt-out
# must reach the person who just opted out, whatever the hour or the number of messages they
# had, but never an address that bounced or complained.
#
#   exemption              passes                                          never passes
#   (none)                 nothing
#   opt_out_confirmation   opted_out, suppressed:stop, frequency_cap,     suppressed:hard_bounce and
#                          quiet_hours                                     every other suppression,
#                                                                          expired, contact_paused
#   conversational_reply   frequency_cap, quiet_hours                      consent, every suppression,
#                                                                          expired, contact_paused
#   test_send              frequency_cap, quiet_hours                      consent, every suppression,
#                                                                          expired, contact_paused
# An agent answering a customer who wrote within the last 24 hours is part of the conversation
# the customer started: counting it against caps or holding it until morning would leave them
# waiting, but an opt-out still stops it. A test a member of staff sends by hand to a test
# contact is looked at at once, whatever the hour; but the test contact's own opt-out holds.
EXEMPTIONS = {
    Exemption.NONE: frozenset(),
    Exemption.OPT_OUT_CONFIRMATION: frozenset({"opted_out", "suppressed:stop", "frequency_cap", "quiet_hours"}),
    Exemption.CONVERSATIONAL_REPLY: frozenset({"frequency_cap", "quiet_hours"}),
    Exemption.TEST_SEND: frozenset({"frequency_cap", "quiet_hours"}),
}

# The channel fact (SendRequest.channel_facts, kept in Decision.inputs) by which channels says a
# message is a test (Message.is_test, its contact a test contact). No rule reads it: test
# contacts go through every rule; it marks the decision for whoever reads it.
TEST_MESSAGE_FACT = "test_message"

# The built-in rules in the order they run (the sending rules, rows staff edit, run after them).
BUILT_IN_RULES = ("expiry", "address", "contact_pause", "suppression", "consent", "marketing", "channel_pause",
                  "conversation_hold")

# A paused channel is looked at again after this long; the pause may have been lifted.
PAUSE_RECHECK = timedelta(minutes=5)
# Marketing held by a conversation not yet closed is looked at again after this long: it may
# have closed, and then the hold runs from its closing.
CONVERSATION_RECHECK = PAUSE_RECHECK

UTC = dt_timezone.utc
ZONE_SOURCES = ("profile", "phone", "default")


@functools.lru_cache(maxsize=1024)
def zone_named(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


# --- the sending rules: rows staff edit, cached per process -------------------------------------

@dataclass(frozen=True)
class QuietRule:
    """A QuietHours row as the gate reads it."""

    id: int
    version: int
    channel: str
    purpose: str
    country: str
    region: str
    start: time
    end: time
    applies_to_transactional: bool

    def matches(self, facts: "SendFacts") -> bool:
        return ((not self.channel or self.channel == facts.channel)
                and (not self.purpose or self.purpose == facts.purpose)
                and (self.applies_to_transactional or facts.purpose != Purpose.TRANSACTIONAL)
                and (not self.country or self.country == facts.country)
                and (not self.region or self.region == facts.region))

    def end_if_quiet(self, zone: ZoneInfo, at: datetime) -> datetime | None:
        """When the window `at` falls in ends (UTC), reading the clock in `zone`; None outside it.

        The end is that wall-clock time on its own date, with that date's offset, so a window
        crossing midnight or a DST change ends at the right instant. An end that falls in a DST
        gap (02:30 on the night clocks jump from 02:00 to 03:00) is read with the offset before
        the jump: the window ends an hour late rather than early. An end in the hour that repeats
        when clocks go back is its first occurrence, or its second when `at` is already past the
        first (01:15 after the change, in a window ending 01:30): never an end before `at`.
        """
        local = at.astimezone(zone)
        wall = local.time()
        if self.start < self.end:
            if not (self.start <= wall < self.end):
                return None
            day = local.date()
        else:
            if self.end <= wall < self.start:
                return None
            day = local.date() + timedelta(days=1) if wall >= self.start else local.date()
        end = datetime.combine(day, self.end, tzinfo=zone).astimezone(UTC)
        if end <= at:
            end = datetime.combine(day, self.end, tzinfo=zone).replace(fold=1).astimezone(UTC)
        return end


@dataclass(frozen=True)
class CapRule:
    """A FrequencyCap row as the gate reads it."""

    id: int
    version: int
    channel: str
    purpose: str
    limit: int
    window: timedelta
    action: str
    applies_to_transactional: bool
    lifecycle_stages: frozenset

    def matches(self, facts: "SendFacts") -> bool:
        return ((not self.channel or self.channel == facts.channel)
                and (not self.purpose or self.purpose == facts.purpose)
                and (self.applies_to_transactional or facts.purpose != Purpose.TRANSACTIONAL)
                and (not self.lifecycle_stages or facts.lifecycle_stage in self.lifecycle_stages))

    def counts(self, channel: str, purpose: str) -> bool:
        """Whether a send on this channel for this purpose counts against the cap. A cap that does
        not apply to transactional messages does not count them either: receipts, one-time codes
        and opt-out confirmations never use up a marketing budget."""
        return ((not self.channel or self.channel == channel) and (not self.purpose or self.purpose == purpose)
                and (self.applies_to_transactional or purpose != Purpose.TRANSACTIONAL))


@dataclass(frozen=True)
class Rules:
    """The active sending rules and operator pauses at one version of their tables."""

    quiet_hours: tuple[QuietRule, ...] = ()
    caps: tuple[CapRule, ...] = ()
    # Pauses in force: (channel, provider), blank meaning all.
    pauses: tuple[tuple[str, str], ...] = ()
    key: tuple = ()

    @property
    def longest_cap_window(self) -> timedelta:
        return max((cap.window for cap in self.caps), default=timedelta(0))


NO_RULES = Rules()


class _RuleCache:
    """The rules and pauses, loaded once per process and again whenever their tables change.

    Each batch asks the database for the tables' version in one query: for the rules the row
    count, highest id, sum of the rows' versions and latest change, which a save in any process
    (QuietHours and FrequencyCap raise their version and updated_at on every save) or a delete
    moves; for pauses the highest id and how many are in force, which a pause or a resume moves.
    """

    def __init__(self):
        self.key = None
        self.rules = NO_RULES

    def current(self) -> Rules:
        key = self._version()
        if key != self.key:
            self.rules = Rules(
                quiet_hours=tuple(
                    QuietRule(r.pk, r.version, r.channel, r.purpose, r.country.upper(), r.region.upper(), r.start,
                              r.end, r.applies_to_transactional)
                    for r in QuietHours.objects.filter(active=True).order_by("pk")),
                caps=tuple(
                    CapRule(r.pk, r.version, r.channel, r.purpose, r.limit, timedelta(seconds=r.window_seconds),
                            r.action, r.applies_to_transactional, frozenset(r.lifecycle_stages or ()))
                    for r in FrequencyCap.objects.filter(active=True).order_by("pk")),
                pauses=tuple(SendingPause.objects.filter(resumed_at__isnull=True).order_by("pk")
                             .values_list("channel", "provider")),
                key=key,
            )
            self.key = key
        return self.rules

    @staticmethod
    def _version() -> tuple:
        connection = connections[router.db_for_read(QuietHours)]
        quote = connection.ops.quote_name
        sql = " UNION ALL ".join([
            *(f"SELECT {position}, COUNT(*), MAX({quote('id')}), SUM({quote('version')}), MAX({quote('updated_at')}) "
              f"FROM {quote(model._meta.db_table)}" for position, model in enumerate((QuietHours, FrequencyCap))),
            f"SELECT 2, COUNT(*), MAX({quote('id')}), SUM(CASE WHEN {quote('resumed_at')} IS NULL THEN 1 ELSE 0 END), "
            f"MAX({quote('resumed_at')}) FROM {quote(SendingPause._meta.db_table)}",
        ])
        with connection.cursor() as cursor:
            cursor.execute(f"{sql} ORDER BY 1")
            return tuple(map(tuple, cursor.fetchall()))


_rule_cache = _RuleCache()


def current_rules() -> Rules:
    """The sending rules and pauses in force, from this process's cache (one query to check it
    is current)."""
    return _rule_cache.current()


# --- facts and verdicts ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    outcome: str
    reason: str
    until: datetime | None = None
    # The ConsentChange the decision relied on, so an audit can say under which permission.
    consent_change_id: int | None = None
    # What the verdict was decided from, kept in its decision row.
    facts: "SendFacts | None" = field(default=None, compare=False, repr=False)
    # Each sending rule that applied and every built-in rule that did not simply pass:
    # [{"rule", "result", "reason", ...}], kept in the decision's inputs["rules"].
    rules: tuple = field(default=(), compare=False, repr=False)
    # The zone the contact's clock was read in (for several zones: the one whose quiet window
    # ends latest), "" when no quiet hours applied.
    zone: str = field(default="", compare=False, repr=False)

    @property
    def allowed(self) -> bool:
        return self.outcome == ALLOW

    def as_data(self) -> dict:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "until": self.until.isoformat() if self.until else None,
            "consent_change_id": self.consent_change_id,
        }


@dataclass(frozen=True)
class SendFacts:
    channel: str
    purpose: str
    address: str
    consent_status: str = ConsentStatus.UNKNOWN
    consent_change_id: int | None = None
    suppression_reasons: tuple[str, ...] = field(default_factory=tuple)
    contact_paused: bool = False
    channel_paused: bool = False
    expires_at: datetime | None = None
    exemption: str = Exemption.NONE
    contact_id: int | None = None
    # Where the contact is, for quiet hours: the zones their clock may be in (one from the
    # profile or the default; one or more from the phone number) and where they came from.
    zones: tuple[str, ...] = ()
    zone_source: str = ""
    country: str = ""
    region: str = ""
    lifecycle_stage: str = ""
    # The contact's sends in the longest cap window, from the send ledger (this message's own
    # rows left out) and the batch being dispatched: (channel, purpose, at).
    sends: tuple[tuple[str, str, datetime], ...] = ()
    # What channels knows and the gate does not, e.g. {"whatsapp_session": True}.
    channel_facts: dict = field(default_factory=dict)
    # The contact's support conversations that hold marketing: (conversation id, when its hold
    # ends), the end None while it is not closed.
    conversations: tuple[tuple[int, datetime | None], ...] = ()
    # When channels' arbitration took the message out before the gate was asked: the rule
    # applied and the message that displaced it (channels/arbitration.py). decide() never reads it.
    arbitration: dict = field(default_factory=dict)
    rules: Rules = field(default=NO_RULES, compare=False, repr=False)


def decide(facts: SendFacts, now: datetime, rules: Rules | None = None) -> Verdict:
    """Allow, defer or suppress one send, with a machine-readable reason and each rule's result.
    `rules` stands in for facts.rules (a policy replay decides one send under two sets)."""
    passes = EXEMPTIONS.get(facts.exemption, frozenset())
    results = []
    suppress_reason = defer_reason = until = None

    def fail(rule: str, outcome: str, reason: str, **extra):
        nonlocal suppress_reason, defer_reason, until
        if reason in passes:
            results.append({"rule": rule, "result": "exempt", "reason": reason, **extra})
            return
        results.append({"rule": rule, "result": outcome, "reason": reason, **extra})
        if outcome == SUPPRESS:
            suppress_reason = suppress_reason or reason
        else:
            defer_reason = defer_reason or reason
            if until is None or extra["until"] > until:
                until = extra["until"]

    if facts.expires_at and now >= facts.expires_at:
        fail("expiry", SUPPRESS, "expired")
    if not facts.address:
        fail("address", SUPPRESS, "no_address")
    if facts.contact_paused and facts.purpose != Purpose.TRANSACTIONAL:
        fail("contact_pause", SUPPRESS, "contact_paused")
    for why in facts.suppression_reasons:
        fail("suppression", SUPPRESS, f"suppressed:{why}")
    if facts.consent_status == ConsentStatus.REVOKED:
        fail("consent", SUPPRESS, "opted_out")
    if facts.purpose == Purpose.MARKETING and facts.consent_status != ConsentStatus.GRANTED:
        # Marketing needs an explicit opt-in; transactional and informational messages rest on
        # the contract or legitimate interest unless the contact opted out.
        fail("marketing", SUPPRESS, "no_marketing_consent")
    if facts.channel_paused:
        fail("channel_pause", DEFER, "channel_paused", until=now + PAUSE_RECHECK)
    if facts.purpose == Purpose.MARKETING:
        for conversation_id, held_until in facts.conversations:
            hold_ends = now + CONVERSATION_RECHECK if held_until is None else held_until
            if hold_ends <= now:
                continue
            if facts.expires_at and facts.expires_at <= hold_ends:
                fail("conversation_hold", SUPPRESS, "expired", conversation=conversation_id,
                     window_ends=hold_ends.isoformat())
            else:
                fail("conversation_hold", DEFER, f"conversation_open:{conversation_id}", until=hold_ends,
                     conversation=conversation_id)

    rules = facts.rules if rules is None else rules
    zone_used, latest_quiet_end = "", None
    for rule in rules.quiet_hours:
        if not rule.matches(facts):
            continue
        end, zone = _quiet_end(rule, facts.zones, now)
        entry = {"id": rule.id, "version": rule.version}
        if end is None:
            results.append({"rule": "quiet_hours", "result": "pass", **entry})
            continue
        if latest_quiet_end is None or end > latest_quiet_end:
            latest_quiet_end, zone_used = end, zone
        if "quiet_hours" not in passes and facts.expires_at and facts.expires_at <= end:
            fail("quiet_hours", SUPPRESS, "expired", zone=zone, window_ends=end.isoformat(), **entry)
        else:
            fail("quiet_hours", DEFER, "quiet_hours", until=end, zone=zone, **entry)

    for cap in rules.caps:
        if not cap.matches(facts):
            continue
        since = now - cap.window
        counted = sorted(at for channel, purpose, at in facts.sends if at > since and cap.counts(channel, purpose))
        entry = {"id": cap.id, "version": cap.version, "count": len(counted), "limit": cap.limit,
                 "window_seconds": int(cap.window.total_seconds())}
        if len(counted) < cap.limit:
            results.append({"rule": "frequency_cap", "result": "pass", **entry})
        elif cap.action == CapAction.DEFER:
            # The send that, leaving the window, brings the count under the limit.
            release = counted[len(counted) - cap.limit] + cap.window
            if "frequency_cap" not in passes and facts.expires_at and facts.expires_at <= release:
                fail("frequency_cap", SUPPRESS, "expired", window_ends=release.isoformat(), **entry)
            else:
                fail("frequency_cap", DEFER, "frequency_cap", until=release, **entry)
        else:
            fail("frequency_cap", SUPPRESS, "frequency_cap", **entry)

    for result in results:
        if "until" in result:
            result["until"] = result["until"].isoformat()
    zone = zone_used or (facts.zones[0] if facts.zones else "")
    common = {"facts": facts, "rules": tuple(results), "zone": zone}
    if suppress_reason:
        consent_id = None if suppress_reason == "no_address" else facts.consent_change_id
        return Verdict(SUPPRESS, suppress_reason, consent_change_id=consent_id, **common)
    if defer_reason:
        return Verdict(DEFER, defer_reason, until=until, consent_change_id=facts.consent_change_id, **common)
    return Verdict(ALLOW, f"consent:{facts.consent_status}", consent_change_id=facts.consent_change_id, **common)


def _quiet_end(rule: QuietRule, zones: tuple[str, ...], now: datetime) -> tuple[datetime | None, str]:
    """When the rule's quiet window ends for a contact whose clock may be in any of `zones`
    (quiet while it is quiet in one of them), and the zone whose window ends latest."""
    at, used = now, ""
    for _ in range(len(zones) + 1):
        latest = None
        for name in zones:
            zone = zone_named(name)
            end = rule.end_if_quiet(zone, at) if zone is not None else None
            if end is not None and (latest is None or end > latest[0]):
                latest = (end, name)
        if latest is None:
            break
        at, used = latest
    return (at, used) if used else (None, "")


@dataclass(frozen=True)
class SendRequest:
    """One send to decide: who, on which channel and for what purpose."""

    contact: object
    channel: str
    purpose: str
    address: str
    provider: str = ""
    expires_at: datetime | None = None
    exemption: str = Exemption.NONE
    # The message being sent: its own rows in the send ledger do not count against it.
    message_id: int | None = None
    channel_facts: dict = field(default_factory=dict)
    # The contact's conversations that hold marketing, as SendFacts.conversations says; channels
    # loads them (compliance cannot read conversations).
    conversations: tuple = ()


def contact_zones(contact) -> tuple[tuple[str, ...], str]:
    """The zones a contact's clock may be in and where they come from: the profile's timezone,
    else the phone number's zones (phonenumbers), else settings.OMNI_DEFAULT_TIMEZONE."""
    if contact.timezone and zone_named(contact.timezone):
        return (contact.timezone,), "profile"
    if contact.phone:
        zones = tuple(zone for zone in timezones_of(contact.phone) if zone_named(zone))
        if zones:
            return zones, "phone"
    return (settings.OMNI_DEFAULT_TIMEZONE,), "default"


def load_facts_many(requests: list[SendRequest], now: datetime | None = None,
                    rules: Rules | None = None) -> list[SendFacts]:
    """Read what decide() needs for many sends at once, in a fixed number of queries whatever
    their number: the version of the rules and pauses (and they themselves when they changed),
    then consents, suppressions and, when a cap is in force, the send ledger in one. Takes no lock."""
    loaded = _LoadedFacts(requests, now or timezone.now(), rules)
    return [loaded.facts(index) for index in range(len(requests))]


class _LoadedFacts:
    """What load_facts_many() reads for a batch of requests, each request's SendFacts made the
    first time it is asked for: routing asks only about the channels it reaches, often one of a
    plan's three."""

    def __init__(self, requests: list[SendRequest], now: datetime, rules: Rules | None = None):
        self.requests, self.places, self.made = requests, {}, {}
        if not requests:
            return
        self.rules = rules = rules or current_rules()
        self.hashes = {r.address: hash_address(r.address) for r in requests if r.address}
        self.consents, self.suppressions, self.ledger = _per_contact_rows(
            requests, {r.contact.pk for r in requests}, set(self.hashes.values()), now, rules)

    def facts(self, index: int) -> SendFacts:
        facts = self.made.get(index)
        if facts is None:
            facts = self.made[index] = self._make(index)
        return facts

    def _make(self, index: int) -> SendFacts:
        r, rules = self.requests[index], self.rules
        contact = r.contact
        status, change_id = self.consents.get((contact.pk, r.channel, r.purpose), (ConsentStatus.UNKNOWN, None))
        suppressions = self.suppressions.get(self.hashes.get(r.address), ())
        reasons = tuple(
            reason for channel, purpose, reason in suppressions
            if channel in ("", r.channel) and purpose in ("", r.purpose)
        ) if suppressions else ()
        if rules.quiet_hours:
            place = self.places.get(contact.pk)
            if place is None:
                place = self.places[contact.pk] = _place(contact)
        else:
            place = ((), "", contact.country, contact.region)
        sends = self.ledger.get(contact.pk)
        return SendFacts(
            channel=r.channel,
            purpose=r.purpose,
            address=r.address,
            consent_status=status,
            consent_change_id=change_id,
            suppression_reasons=reasons,
            contact_paused=contact.messaging_paused,
            channel_paused=any(c in ("", r.channel) and p in ("", r.provider) for c, p in rules.pauses),
            expires_at=r.expires_at,
            exemption=r.exemption,
            contact_id=contact.pk,
            zones=place[0],
            zone_source=place[1],
            country=place[2],
            region=place[3],
            lifecycle_stage=contact.lifecycle_stage,
            sends=tuple((channel, purpose, at) for channel, purpose, at, message_id in sends
                        if message_id != r.message_id) if sends else (),
            channel_facts=r.channel_facts,
            conversations=r.conversations,
            rules=rules,
        )


def _per_contact_rows(requests, contact_ids, hashes, now, rules) -> tuple[dict, dict, dict]:
    """Consents, suppressions in force and (with caps) the send ledger of a batch's contacts, in
    one query: the three read as one UNION ALL, so a single check costs one round trip for them."""
    untyped = {"text": Value(None, output_field=CharField()), "id": Value(None, output_field=BigIntegerField()),
               "at": Value(None, output_field=DateTimeField())}
    parts = [
        filter_in(Consent.objects.filter(channel__in={r.channel for r in requests},
                                         purpose__in={r.purpose for r in requests}), "contact_id", contact_ids)
        .values_list(Value("c"), "contact_id", "channel", "purpose", "status", "last_change_id", untyped["text"],
                     untyped["at"]).order_by(),
        filter_in(Suppression.objects.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now)), "address_hash", hashes)
        .values_list(Value("s"), untyped["id"], "channel", "purpose", "reason", untyped["id"], "address_hash",
                     "created_at").order_by(),
    ]
    if rules.caps:
        parts.append(filter_in(SendLedger.objects.filter(at__gt=now - rules.longest_cap_window), "contact_id", contact_ids)
                     .values_list(Value("l"), "contact_id", "channel", "purpose", untyped["text"], "message_id",
                                  untyped["text"], "at").order_by())
    consents, suppressions, ledger = {}, {}, {}
    for kind, contact_id, channel, purpose, text, number, address_hash, at in parts[0].union(*parts[1:], all=True):
        if kind == "c":
            consents[(contact_id, channel, purpose)] = (text, number)
        elif kind == "s":
            suppressions.setdefault(address_hash, []).append((at, channel, purpose, text))
        else:
            ledger.setdefault(contact_id, []).append((channel, purpose, at, number))
    # The oldest suppression first: its reason is the one a refusal names.
    suppressions = {key: [row[1:] for row in sorted(rows, key=lambda row: row[0])] for key, rows in suppressions.items()}
    return consents, suppressions, ledger


def _place(contact) -> tuple[tuple[str, ...], str, str, str]:
    """(zones, zone source, country, region) of a contact, for quiet hours."""
    zones, source = contact_zones(contact)
    region = (contact.region or "").upper()
    country = (contact.country or "").upper() or region[:2] or (country_of(contact.phone) if contact.phone else "")
    return zones, source, country, region


def decide_many(requests: list[SendRequest], now: datetime | None = None) -> list[Verdict]:
    """The gate for a batch of sends, in the order given, each decided as if it were alone; each
    verdict carries its facts."""
    now = now or timezone.now()
    return [decide(facts, now) for facts in load_facts_many(requests, now)]


class Batch:
    """The gate over the sends of one dispatch: facts read at once (_LoadedFacts), then decided one by one
    in the caller's order, each send the caller queues (`count_send`) counted against the caps
    of the sends decided after it, as the ledger will count it once written."""

    def __init__(self, requests: list[SendRequest], now: datetime):
        self.now = now
        self.facts = _LoadedFacts(requests, now).facts
        self._queued: dict[int, list] = {}
        # Verdicts given while the contact had no send queued in this batch: asked again (routing
        # asks what arbitration asked), the same facts give the same verdict.
        self._decided: dict[int, Verdict] = {}

    def decide(self, index: int) -> Verdict:
        facts = self.facts(index)
        queued = self._queued.get(facts.contact_id)
        if queued:
            return decide(replace(facts, sends=facts.sends + tuple(queued)), self.now)
        verdict = self._decided.get(index)
        if verdict is None:
            verdict = self._decided[index] = decide(facts, self.now)
        return verdict

    def count_send(self, index: int) -> None:
        facts = self.facts(index)
        self._queued.setdefault(facts.contact_id, []).append((facts.channel, facts.purpose, self.now))


def check(contact, channel: str, purpose: str, address: str, *, provider: str = "", expires_at=None,
          exemption: str = Exemption.NONE, message_id: int | None = None, channel_facts: dict | None = None,
          conversations: tuple = (), now: datetime | None = None) -> Verdict:
    """The gate for one send (`message_id`: the message's own ledger rows do not count)."""
    return decide_many([SendRequest(contact, channel, purpose, address, provider, expires_at, exemption, message_id,
                                    channel_facts or {}, conversations)], now)[0]


def reachability(contacts, purpose: str, now: datetime | None = None,
                 channel_facts: dict | None = None, channels=None) -> dict[int, dict[str, Verdict]]:
    """Whether each contact can be messaged for `purpose` on each channel now (or on `channels`
    only), and why not: {contact id: {channel: Verdict}}. A read: no lock, nothing recorded.

    `channel_facts` maps (contact id, channel) to facts channels knows, such as
    {"whatsapp_session": False}; a "provider" key among them is the provider a send would use
    (a paused provider defers)."""
    return reachability_by_purpose({purpose: (contacts, channels)}, now, channel_facts)[purpose]


def reachability_by_purpose(wanted: dict, now: datetime | None = None,
                            channel_facts: dict | None = None) -> dict[str, dict[int, dict[str, Verdict]]]:
    """reachability() for several purposes in one read: `wanted` maps each purpose to (contacts,
    channels or None for every channel); returns {purpose: {contact id: {channel: Verdict}}}."""
    now = now or timezone.now()
    channel_facts = channel_facts or {}
    wanted = {purpose: (list(contacts), [value for value in Channel.values if channels is None or value in channels])
              for purpose, (contacts, channels) in wanted.items()}
    push = {}
    push_contacts = {contact.pk for contacts, channels in wanted.values() if Channel.PUSH in channels
                     for contact in contacts}
    if push_contacts:
        for contact_id, token, endpoint in (Device.objects.filter(contact__in=push_contacts, enabled=True)
                                            .order_by("-pk").values_list("contact_id", "token", "provider_endpoint")):
            push[contact_id] = endpoint or token
    requests = []
    for purpose, (contacts, channels) in wanted.items():
        for contact in contacts:
            for channel in channels:
                extra = dict(channel_facts.get((contact.pk, channel), {}))
                provider = extra.pop("provider", "")
                address = push.get(contact.pk, "") if channel == Channel.PUSH else contact.address_for(channel)
                requests.append(SendRequest(contact, channel, purpose, address, provider, channel_facts=extra))
    verdicts = iter(decide_many(requests, now) if requests else ())
    return {purpose: {contact.pk: {channel: next(verdicts) for channel in channels} for contact in contacts}
            for purpose, (contacts, channels) in wanted.items()}


# What the contact did to stop a channel: revoked consent, texted STOP, unsubscribed.
OPT_OUT_REASONS = frozenset({"opted_out", "suppressed:stop", "suppressed:unsubscribe"})


def opted_out(verdict: Verdict) -> bool:
    """Whether a verdict says the contact opted out of its channel (for its purpose), whatever
    else stops the send (a missing address comes first among the reasons, yet the opt-out stands)."""
    return any(rule.get("reason") in OPT_OUT_REASONS and rule.get("result") == SUPPRESS for rule in verdict.rules)
