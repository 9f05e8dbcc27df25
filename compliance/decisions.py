"""Keeping the gate's verdicts: one Decision row per verdict, sealed into the audit chain by digest.

A row keeps everything decide() read (Decision.inputs), so facts_of() rebuilds the SendFacts
from it and the same rules give the same verdict again (policy replay).
"""
import uuid
from dataclasses import dataclass
from datetime import datetime

from omni import audit
from omni.choices import Channel, Purpose
from omni.lib.bulk import insert_rows
from omni.models import AuditEntry

from .gate import DEFER, Rules, SendFacts, Verdict, current_rules, zone_named
from .models import Decision, SuppressionReason

# decide() only asks whether there is an address; the row never keeps it (personal data).
KEPT_ADDRESS = "(kept out of the decision)"

DECISION_LABEL = Decision._meta.label_lower


@dataclass(frozen=True)
class Ruling:
    """A verdict and what it was about: the message, the plan step, and for a re-check the delivery."""

    verdict: Verdict
    message_id: int | None
    contact_id: int | None
    plan_step: int = 0
    provider: str = ""
    delivery_id: int | None = None


def values(ruling: Ruling, now) -> dict:
    """The Decision row of a ruling, by field name: the verdict, every input the gate read, and its digest."""
    return _encoded(ruling, now)[0]


def _encoded(ruling: Ruling, now) -> tuple[dict, str, str]:
    """values() of a ruling, and the canonical JSON text of its suppressions and inputs, encoded
    once for both the digest and the row's columns."""
    verdict, facts = ruling.verdict, ruling.verdict.facts
    row = {
        "id": uuid.uuid4(),
        "decided_at": now,
        "message_id": ruling.message_id,
        "delivery_id": ruling.delivery_id,
        "contact_id": ruling.contact_id,
        "channel": facts.channel,
        "plan_step": ruling.plan_step,
        "purpose": facts.purpose,
        "provider": ruling.provider,
        "outcome": verdict.outcome,
        "reason": verdict.reason,
        "defer_until": verdict.until,
        "consent_status": facts.consent_status,
        "consent_change_id": facts.consent_change_id,
        "suppressions": list(facts.suppression_reasons),
        "inputs": inputs_of(verdict, facts, now),
    }
    suppressions, inputs = Decision.canonical_json(row["suppressions"]), Decision.canonical_json(row["inputs"])
    row["digest"] = Decision.digest_of_encoded(row, suppressions, inputs)
    return row, suppressions, inputs


def inputs_of(verdict: Verdict, facts: SendFacts, now) -> dict:
    """Everything the verdict was decided from, beyond the row's own columns, and each rule's result."""
    inputs = {
        "has_address": bool(facts.address),
        "contact_paused": facts.contact_paused,
        "channel_paused": facts.channel_paused,
        "expires_at": facts.expires_at.isoformat() if facts.expires_at else None,
        "exemption": facts.exemption,
        "rules": list(verdict.rules),
    }
    if facts.zones:
        zone = zone_named(verdict.zone or facts.zones[0])
        inputs.update(zone=verdict.zone or facts.zones[0], zones=list(facts.zones), zone_source=facts.zone_source,
                      local_time=now.astimezone(zone).isoformat() if zone else None,
                      country=facts.country, region=facts.region)
    if facts.rules.caps:
        inputs.update(lifecycle_stage=facts.lifecycle_stage,
                      ledger=[[channel, purpose, at.isoformat()] for channel, purpose, at in facts.sends])
    if facts.channel_facts:
        inputs["channel_facts"] = dict(facts.channel_facts)
    if facts.arbitration:
        inputs["arbitration"] = dict(facts.arbitration)
    if facts.conversations:
        inputs["conversations"] = [[conversation_id, held_until.isoformat() if held_until else None]
                                   for conversation_id, held_until in facts.conversations]
    return inputs


def facts_of(decision: Decision, rules: Rules | None = None, *, sends: tuple | None = None) -> SendFacts:
    """The SendFacts a stored decision was made from, to decide it again under `rules` (by
    default the rules in force now; inputs["rules"] names the id and version of each rule that
    applied then). The address itself is not kept: a placeholder stands for it. `decision` may
    be any row with the Decision's fields (policy replay reads them as tuples); `sends` replaces
    the ledger it kept (policy replay reads a longer window from the send ledger)."""
    inputs = decision.inputs or {}
    expires_at = inputs.get("expires_at")
    if sends is None:
        sends = tuple((channel, purpose, datetime.fromisoformat(at)) for channel, purpose, at in inputs.get("ledger", ()))
    return SendFacts(
        channel=decision.channel,
        purpose=decision.purpose,
        address=KEPT_ADDRESS if inputs.get("has_address", True) else "",
        consent_status=decision.consent_status,
        consent_change_id=decision.consent_change_id,
        suppression_reasons=tuple(decision.suppressions or ()),
        contact_paused=inputs.get("contact_paused", False),
        channel_paused=inputs.get("channel_paused", False),
        expires_at=datetime.fromisoformat(expires_at) if expires_at else None,
        exemption=inputs.get("exemption", ""),
        contact_id=decision.contact_id,
        zones=tuple(inputs.get("zones", ())),
        zone_source=inputs.get("zone_source", ""),
        country=inputs.get("country", ""),
        region=inputs.get("region", ""),
        lifecycle_stage=inputs.get("lifecycle_stage", ""),
        sends=sends,
        channel_facts=inputs.get("channel_facts", {}),
        conversations=tuple((conversation_id, datetime.fromisoformat(held_until) if held_until else None)
                            for conversation_id, held_until in inputs.get("conversations", ())),
        arbitration=inputs.get("arbitration", {}),
        rules=rules or current_rules(),
    )


def in_words(decision: Decision) -> str:
    """What a refusing (or deferring) decision means, in words an agent can pass on: "The
    contact opted out of informational messages by SMS." """
    reason = decision.reason
    channel = Channel(decision.channel).label if decision.channel in Channel.values else decision.channel
    purpose = Purpose(decision.purpose).label.lower() if decision.purpose in Purpose.values else decision.purpose
    later = ""
    if decision.outcome == DEFER and decision.defer_until:
        later = f" It will be tried again at {decision.defer_until:%Y-%m-%d %H:%M} UTC."
    if reason.startswith("suppressed:"):
        why = reason.removeprefix("suppressed:")
        label = SuppressionReason(why).label.lower() if why in SuppressionReason.values else why
        return f"The {channel} address is on the suppression list ({label})."
    if reason.startswith("arbitration:"):
        displaced_by = (decision.inputs or {}).get("arbitration", {}).get("displaced_by")
        if reason == "arbitration:duplicate_intent":
            return f"The contact was already told this (message {displaced_by}); it is not said twice."
        return f"A more important message (message {displaced_by}) goes to the contact at about the same time.{later}"
    if reason.startswith("conversation_open:"):
        number = reason.removeprefix("conversation_open:")
        return (f"Marketing waits while the contact's support conversation #{number} is open or recently "
                f"closed.{later}")
    words = {
        "expired": "It expired before it could be sent.",
        "no_address": f"The contact has no {channel} address.",
        "contact_paused": "Someone paused all messages to this contact.",
        "opted_out": f"The contact opted out of {purpose} messages by {channel}.",
        "no_marketing_consent": f"The contact has not opted in to marketing by {channel}.",
        "channel_paused": f"Sending by {channel} is paused.{later}",
        "quiet_hours": f"It is quiet hours where the contact is.{later}",
        "frequency_cap": f"The contact has had as many messages as a frequency cap allows.{later}",
    }
    return words.get(reason, f"The gate refused it ({reason}).")


ROW_FIELDS = [*Decision.DIGEST_FIELDS, "digest"]
# ROW_FIELDS but the JSON ones, which come last before the digest (Decision.JSON_DIGEST_FIELDS).
PLAIN_ROW_FIELDS = ROW_FIELDS[:-1 - len(Decision.JSON_DIGEST_FIELDS)]


def record(rulings: list[Ruling], now, *, extra: dict | None = None) -> list[dict]:
    """Store one Decision per ruling and the audit entry that seals each into the chain; return
    the rows written (values() of each).

    `extra` maps a ruling's index to more chained data for its entry (e.g. channels skipped).
    """
    encoded = [_encoded(ruling, now) for ruling in rulings]
    rows = [row for row, _, _ in encoded]
    insert_rows(Decision, ROW_FIELDS, [(*(row[name] for name in PLAIN_ROW_FIELDS), suppressions, inputs, row["digest"])
                                       for row, suppressions, inputs in encoded], json_text=True)
    audit.record_many([
        audit.build(f"gate.{row['outcome']}", contact_id=row["contact_id"],
                    object_ref=(DECISION_LABEL, str(row["id"])), channel=row["channel"], reason=row["reason"],
                    occurred_at=now,
                    data={"message": row["message_id"], "plan_step": row["plan_step"], "digest": row["digest"],
                          **((extra or {}).get(index) or {})})
        for index, row in enumerate(rows)
    ])
    return rows


# --- Verification (registered with omni.audit_verification in compliance's AppConfig.ready) ---

VERIFY_CHUNK = 5000
MAX_PROBLEMS = 20


def sealed_decision_problems(now, lag) -> list[str]:
    """Decision rows whose content does not match the digest sealed in the chain, and decisions
    older than the sealer's allowed lag with no sealed entry (at most MAX_PROBLEMS)."""
    return (_altered_decisions() + _unsealed_decisions(now - lag))[:MAX_PROBLEMS]


def _unsealed_decisions(before) -> list[str]:
    found = []
    chunk = []
    decided = Decision.objects.filter(decided_at__lt=before).order_by("decided_at", "id").values_list("id", flat=True)
    for decision_id in decided.iterator(chunk_size=VERIFY_CHUNK):
        chunk.append(str(decision_id))
        if len(chunk) == VERIFY_CHUNK:
            found += _without_sealed_entry(chunk)
            chunk = []
    found += _without_sealed_entry(chunk)
    return found


def _without_sealed_entry(ids: list[str]) -> list[str]:
    sealed = set(AuditEntry.objects.filter(object_type=DECISION_LABEL, object_id__in=ids, seq__isnull=False)
                 .values_list("object_id", flat=True))
    return [f"decision {decision_id} has no sealed audit entry" for decision_id in ids if decision_id not in sealed]


def _altered_decisions() -> list[str]:
    found = []
    sealed = (
        AuditEntry.objects.filter(seq__isnull=False, object_type=DECISION_LABEL)
        .order_by("seq").values_list("object_id", "data")
    )
    chunk = []
    for object_id, data in sealed.iterator(chunk_size=VERIFY_CHUNK):
        chunk.append((object_id, (data or {}).get("digest")))
        if len(chunk) == VERIFY_CHUNK:
            found += _check_digests(chunk)
            chunk = []
    found += _check_digests(chunk)
    return found


def _check_digests(chunk) -> list[str]:
    rows = {str(row["id"]): row for row in Decision.objects.filter(pk__in=[i for i, _ in chunk])
            .values(*Decision.DIGEST_FIELDS)}
    problems = []
    for object_id, digest in chunk:
        row = rows.get(object_id)
        if row is None:
            problems.append(f"decision {object_id} is missing")
        elif Decision.digest_of(row) != digest:
            problems.append(f"decision {object_id} was altered")
    return problems
