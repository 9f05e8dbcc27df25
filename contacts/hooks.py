"""Hooks through which the apps above contacts act on a contact's changes.

Dependencies point one way (contacts imports no other app), yet some writes must reach an app
above: consent given with a contact upsert belongs to compliance; erasure and retention will
reach every app. Each such write is a signal here; the owning app connects its receiver in
its AppConfig.ready(), and contacts sends it inside its own transaction, so a receiver's
error rolls the whole change back. Questions only the apps above can answer (does anything of
yours use this lifecycle stage?) are signals too, whose receivers answer.
"""
from django.core.exceptions import ImproperlyConfigured
from django.dispatch import Signal

# Consents submitted, already validated in shape, in one of two forms (a receiver takes both):
# - with one contact (the API's PUT): contact, consents ([{"channel", "purpose", "status",
#   "lawful_basis", "evidence"}]), source, actor_label;
# - for many contacts at once (the contact import, contacts/imports.py): batch ([{"contact_id",
#   "channel", "purpose", "status", "lawful_basis", "evidence" (a dict), "occurred_at"}], in the
#   order they are to be recorded; an older change never replaces a newer one), source, actor (a
#   user or None), actor_label. No query per change: the receiver writes the batch in bulk.
consents_submitted = Signal()


# A contact's personal data is being erased on request (contacts.actions.erase_contact), inside
# its transaction: each app empties what it keeps of the contact, set-based (one UPDATE per
# table), and answers how many rows it emptied by name ({"channels.deliveries": 3}), for the
# erasure's audit entry. Arguments: contact (its profile still filled in), now.
erase_contact = Signal()


# Asked before a lifecycle stage is deleted. Arguments: key. A receiver answers what of its own
# still uses the stage ("2 frequency caps"), or nothing; any answer refuses the delete.
lifecycle_stage_used = Signal()


def lifecycle_stage_uses(key: str) -> list[str]:
    """What the apps above say still uses the lifecycle stage `key`, e.g. ["2 frequency caps"]."""
    return [answer for _, answer in lifecycle_stage_used.send(sender=None, key=key) if answer]


def send(signal: Signal, **kwargs) -> list:
    """Send a hook that some app must handle; refuse to drop the write when none is connected.
    Returns the receivers' answers as Signal.send does: [(receiver, answer)]."""
    if not signal.has_listeners():
        raise ImproperlyConfigured("No app handles this contacts hook; is the app that owns it installed?")
    return signal.send(sender=None, **kwargs)
