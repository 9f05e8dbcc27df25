"""What contacts itself keeps of a person, emptied on erasure (contacts.actions.erase_contact).

The contact row stays (messages, decisions and consent history point at it) with its profile
blanked. Its external_id is kept: it is the customer's own key for the person, not a way to
reach them, and keeping it is what lets upsert_contact refuse to fill the erased contact in
again (ContactErased, a 409 over the API) instead of quietly making a new one.
"""
from django.db.models import F, Value
from django.db.models.functions import Cast, Concat

from .import_erasure import erase_from_imports, imports_naming
from .models import Contact, ContactEvent, Device

# The profile as it is after erasure: nothing that names, reaches or locates the person.
BLANK_PROFILE = {"email": "", "phone": "", "first_name": "", "last_name": "", "timezone": "", "country": "",
                 "region": "", "attributes": {}, "preferred_channel": ""}


def erase_profile(contact: Contact, now) -> dict | None:
    """Blank the contact's profile, attributes, event properties and devices and set erased_at:
    one UPDATE per table, and take their values out of contact imports (erase_from_imports).
    Returns how many rows each changed, or None when the contact was already erased (by another
    request meanwhile): then nothing is changed."""
    # The imports naming the contact are locked first, in the order a running import's chunk
    # takes its locks (its upload, then its contacts): the two take turns and never deadlock.
    naming = imports_naming(contact)
    if not Contact.objects.filter(pk=contact.pk, erased_at__isnull=True).update(**BLANK_PROFILE, erased_at=now,
                                                                               updated_at=now):
        return None
    imports = erase_from_imports(contact, naming)  # before the values it looks for are blanked below
    for name, value in BLANK_PROFILE.items():
        setattr(contact, name, value)
    contact.erased_at = contact.updated_at = now
    # Why the tick set an event aside is a failure's text, which may name the person (the audit
    # log keeps it as personal data): it goes, the event stays set aside.
    events = ContactEvent.objects.filter(contact=contact).update(properties={}, quarantine_reason="")
    # A token is unique per platform, so it cannot simply become "": it becomes a placeholder
    # of the row's own id, which reaches no device.
    devices = Device.objects.filter(contact=contact).update(
        token=Concat(Value("erased:"), Cast(F("pk"), output_field=Device._meta.get_field("token"))),
        provider_endpoint="", app_version="", enabled=False, disabled_reason="erased")
    return {"events": events, "devices": devices, **imports}
