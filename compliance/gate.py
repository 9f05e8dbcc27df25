"""The pre-send gate: one decision for every send, whatever its source.

`decide()` is pure: it takes what it needs (SendFacts) and returns a Verdict. `check()` loads
those facts from the database for one send. Every caller writes the verdict to the audit log.

This first version checks: expiry, a paused contact, a paused channel or provider, the address,
suppression and consent. Quiet hours and frequency caps plug in here as further rules.
"""
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from omni.choices import Purpose

from .models import Consent, ConsentStatus, SendingPause, Suppression, hash_address

ALLOW = "allow"
DEFER = "defer"
SUPPRESS = "suppress"

# A paused channel is looked at again after this long; the pause may have been lifted.
PAUSE_RECHECK = timedelta(minutes=5)


@dataclass(frozen=True)
class Verdict:
    outcome: str
    reason: str
    until: datetime | None = None
    # The ConsentChange the decision relied on, so an audit can say under which permission.
    consent_change_id: int | None = None

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


def decide(facts: SendFacts, now: datetime) -> Verdict:
    """Allow, defer or suppress one send, with a machine-readable reason."""
    consent_id = facts.consent_change_id
    if facts.expires_at and now >= facts.expires_at:
        return Verdict(SUPPRESS, "expired", consent_change_id=consent_id)
    if not facts.address:
        return Verdict(SUPPRESS, "no_address")
    if facts.contact_paused and facts.purpose != Purpose.TRANSACTIONAL:
        return Verdict(SUPPRESS, "contact_paused", consent_change_id=consent_id)
    if facts.suppression_reasons:
        return Verdict(SUPPRESS, f"suppressed:{facts.suppression_reasons[0]}", consent_change_id=consent_id)
    if facts.consent_status == ConsentStatus.REVOKED:
        return Verdict(SUPPRESS, "opted_out", consent_change_id=consent_id)
    if facts.purpose == Purpose.MARKETING and facts.consent_status != ConsentStatus.GRANTED:
        # Marketing needs an explicit opt-in; transactional and informational messages rest on
        # the contract or legitimate interest unless the contact opted out.
        return Verdict(SUPPRESS, "no_marketing_consent", consent_change_id=consent_id)
    if facts.channel_paused:
        return Verdict(DEFER, "channel_paused", until=now + PAUSE_RECHECK, consent_change_id=consent_id)
    return Verdict(ALLOW, f"consent:{facts.consent_status}", consent_change_id=consent_id)


def load_facts(contact, channel: str, purpose: str, address: str, *, provider: str = "", expires_at=None,
               now: datetime | None = None) -> SendFacts:
    """Read what decide() needs for one send (three small queries)."""
    now = now or timezone.now()
    consent = (
        Consent.objects.filter(contact=contact, channel=channel, purpose=purpose)
        .values("status", "last_change_id").first()
    )
    suppression_reasons = ()
    if address:
        suppression_reasons = tuple(
            Suppression.objects.filter(address_hash=hash_address(address))
            .filter(Q(channel="") | Q(channel=channel), Q(purpose="") | Q(purpose=purpose))
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .values_list("reason", flat=True)
        )
    channel_paused = (
        SendingPause.objects.filter(resumed_at__isnull=True)
        .filter(Q(channel="") | Q(channel=channel), Q(provider="") | Q(provider=provider))
        .exists()
    )
    return SendFacts(
        channel=channel,
        purpose=purpose,
        address=address,
        consent_status=consent["status"] if consent else ConsentStatus.UNKNOWN,
        consent_change_id=consent["last_change_id"] if consent else None,
        suppression_reasons=suppression_reasons,
        contact_paused=contact.messaging_paused,
        channel_paused=channel_paused,
        expires_at=expires_at,
    )


def check(contact, channel: str, purpose: str, address: str, *, provider: str = "", expires_at=None,
          now: datetime | None = None) -> Verdict:
    now = now or timezone.now()
    facts = load_facts(contact, channel, purpose, address, provider=provider, expires_at=expires_at, now=now)
    return decide(facts, now)
