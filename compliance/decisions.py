"""Keeping the gate's verdicts: one Decision row per verdict, sealed into the audit chain by digest."""
from dataclasses import dataclass

from omni import audit
from omni.lib.bulk import bulk_insert

from .gate import Verdict
from .models import Decision


@dataclass(frozen=True)
class Ruling:
    """A verdict and what it was about: the message, the plan step, and for a re-check the delivery."""

    verdict: Verdict
    message_id: int | None
    contact_id: int | None
    plan_step: int = 0
    provider: str = ""
    delivery_id: int | None = None


def build(ruling: Ruling, now) -> Decision:
    """An unsaved Decision holding the verdict and every input the gate read, with its digest."""
    verdict, facts = ruling.verdict, ruling.verdict.facts
    decision = Decision(
        decided_at=now,
        message_id=ruling.message_id,
        delivery_id=ruling.delivery_id,
        contact_id=ruling.contact_id,
        channel=facts.channel,
        plan_step=ruling.plan_step,
        purpose=facts.purpose,
        provider=ruling.provider,
        outcome=verdict.outcome,
        reason=verdict.reason,
        defer_until=verdict.until,
        consent_status=facts.consent_status,
        consent_change_id=facts.consent_change_id,
        suppressions=list(facts.suppression_reasons),
        inputs={
            "has_address": bool(facts.address),
            "contact_paused": facts.contact_paused,
            "channel_paused": facts.channel_paused,
            "expires_at": facts.expires_at.isoformat() if facts.expires_at else None,
        },
    )
    decision.digest = decision.compute_digest()
    return decision


def record(rulings: list[Ruling], now, *, extra: dict | None = None) -> list[Decision]:
    """Store one Decision per ruling and the audit entry that seals each into the chain.

    `extra` maps a ruling's index to more chained data for its entry (e.g. channels skipped).
    """
    decisions = [build(ruling, now) for ruling in rulings]
    bulk_insert(decisions)
    audit.record_many([
        audit.build(f"gate.{d.outcome}", contact_id=d.contact_id, obj=d, channel=d.channel, reason=d.reason,
                    occurred_at=now,
                    data={"message": d.message_id, "plan_step": d.plan_step, "digest": d.digest,
                          **((extra or {}).get(index) or {})})
        for index, d in enumerate(decisions)
    ])
    return decisions
