"""The pre-send gate: one decision for every send, whatever its source.

`decide()` is pure: it takes what it needs (SendFacts) and returns a Verdict.
`decide_many()` loads those facts for a whole batch of sends in three queries and decides each;
`check()` is the same for one send. Every verdict is kept as a Decision row with its inputs
(compliance/decisions.py), sealed into the audit chain.

This first version checks: expiry, a paused contact, a paused channel or provider, the address,
suppression and consent. Quiet hours and frequency caps plug in here as further rules.
"""
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from omni.choices import Exemption, Purpose

from .models import Consent, ConsentStatus, SendingPause, Suppression, hash_address

ALLOW = "allow"
DEFER = "defer"
SUPPRESS = "suppress"

# The rules each exemption passes, by the reason the rule would give. A confirmation of an
# opt-out must reach the person who just opted out, but never an address that bounced or
# complained.
EXEMPTIONS = {
    Exemption.NONE: frozenset(),
    Exemption.OPT_OUT_CONFIRMATION: frozenset({"opted_out", "suppressed:stop", "frequency_cap", "quiet_hours"}),
}

# A paused channel is looked at again after this long; the pause may have been lifted.
PAUSE_RECHECK = timedelta(minutes=5)


@dataclass(frozen=True)
class Verdict:
    outcome: str
    reason: str
    until: datetime | None = None
    # The ConsentChange the decision relied on, so an audit can say under which permission.
    consent_change_id: int | None = None
    # What the verdict was decided from, kept in its decision row.
    facts: "SendFacts | None" = field(default=None, compare=False, repr=False)

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


def decide(facts: SendFacts, now: datetime) -> Verdict:
    """Allow, defer or suppress one send, with a machine-readable reason."""
    consent_id = facts.consent_change_id
    passes = EXEMPTIONS.get(facts.exemption, frozenset())
    if facts.expires_at and now >= facts.expires_at:
        return Verdict(SUPPRESS, "expired", consent_change_id=consent_id)
    if not facts.address:
        return Verdict(SUPPRESS, "no_address")
    if facts.contact_paused and facts.purpose != Purpose.TRANSACTIONAL:
        return Verdict(SUPPRESS, "contact_paused", consent_change_id=consent_id)
    binding = [r for r in facts.suppression_reasons if f"suppressed:{r}" not in passes]
    if binding:
        return Verdict(SUPPRESS, f"suppressed:{binding[0]}", consent_change_id=consent_id)
    if facts.consent_status == ConsentStatus.REVOKED and "opted_out" not in passes:
        return Verdict(SUPPRESS, "opted_out", consent_change_id=consent_id)
    if facts.purpose == Purpose.MARKETING and facts.consent_status != ConsentStatus.GRANTED:
        # Marketing needs an explicit opt-in; transactional and informational messages rest on
        # the contract or legitimate interest unless the contact opted out.
        return Verdict(SUPPRESS, "no_marketing_consent", consent_change_id=consent_id)
    if facts.channel_paused:
        return Verdict(DEFER, "channel_paused", until=now + PAUSE_RECHECK, consent_change_id=consent_id)
    return Verdict(ALLOW, f"consent:{facts.consent_status}", consent_change_id=consent_id)


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


def load_facts_many(requests: list[SendRequest], now: datetime | None = None) -> list[SendFacts]:
    """Read what decide() needs for many sends at once: three queries, whatever their number."""
    now = now or timezone.now()
    if not requests:
        return []
    consents = {
        (contact_id, channel, purpose): (status, change_id)
        for contact_id, channel, purpose, status, change_id in Consent.objects.filter(
            contact_id__in={r.contact.pk for r in requests},
            channel__in={r.channel for r in requests},
            purpose__in={r.purpose for r in requests},
        ).values_list("contact_id", "channel", "purpose", "status", "last_change_id")
    }
    hashes = {r.address: hash_address(r.address) for r in requests if r.address}
    suppressions = {}
    for address_hash, channel, purpose, reason in (
        Suppression.objects.filter(address_hash__in=set(hashes.values()))
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .order_by("created_at").values_list("address_hash", "channel", "purpose", "reason")
    ):
        suppressions.setdefault(address_hash, []).append((channel, purpose, reason))
    pauses = list(SendingPause.objects.filter(resumed_at__isnull=True).values_list("channel", "provider"))

    facts = []
    for r in requests:
        status, change_id = consents.get((r.contact.pk, r.channel, r.purpose), (ConsentStatus.UNKNOWN, None))
        reasons = tuple(
            reason for channel, purpose, reason in suppressions.get(hashes.get(r.address), ())
            if channel in ("", r.channel) and purpose in ("", r.purpose)
        )
        facts.append(SendFacts(
            channel=r.channel,
            purpose=r.purpose,
            address=r.address,
            consent_status=status,
            consent_change_id=change_id,
            suppression_reasons=reasons,
            contact_paused=r.contact.messaging_paused,
            channel_paused=any(c in ("", r.channel) and p in ("", r.provider) for c, p in pauses),
            expires_at=r.expires_at,
            exemption=r.exemption,
        ))
    return facts


def decide_many(requests: list[SendRequest], now: datetime | None = None) -> list[Verdict]:
    """The gate for a batch of sends, in the order given; each verdict carries its facts."""
    now = now or timezone.now()
    return [replace(decide(facts, now), facts=facts) for facts in load_facts_many(requests, now)]


def check(contact, channel: str, purpose: str, address: str, *, provider: str = "", expires_at=None,
          exemption: str = Exemption.NONE, now: datetime | None = None) -> Verdict:
    """The gate for one send."""
    return decide_many([SendRequest(contact, channel, purpose, address, provider, expires_at, exemption)], now)[0]
