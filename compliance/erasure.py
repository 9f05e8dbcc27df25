"""What compliance keeps of a person, emptied on erasure (contacts.hooks.erase_contact).

Consent history keeps its rows (what was allowed, when and on which basis) without the
evidence (IP addresses, user agents, texts received). Suppressions keep only their hashes:
the gate looks addresses up by hash (compliance.gate), so an erased address stays suppressed,
and erasure itself suppresses every address the contact had, on every channel and purpose, so a
new contact made later with the same address is never messaged either.
"""
from django.db.models import Q

from .models import ConsentChange, Suppression, SuppressionReason, hash_address


def erase_compliance_data(sender, contact, now, **kwargs) -> dict:
    hashes = sorted({hash_address(address) for address in (contact.email, contact.phone) if address})
    evidence = ConsentChange.objects.filter(contact_id=contact.pk).exclude(evidence={}).update(evidence={})
    Suppression.objects.bulk_create(
        [Suppression(address="", address_hash=address_hash, channel="", purpose="", reason=SuppressionReason.ERASURE,
                     contact_id=contact.pk, created_at=now) for address_hash in hashes],
        ignore_conflicts=True)  # an address already suppressed everywhere stays as it is
    # The contact's own suppressions, and any other row for one of its addresses.
    suppressions = Suppression.objects.filter(Q(contact_id=contact.pk) | Q(address_hash__in=hashes)).update(
        address="", detail="")
    return {"compliance.consent_evidence": evidence, "compliance.suppressions": suppressions}
