"""Hooks through which the apps above compliance act on its changes (as contacts/hooks.py does).

Compliance imports no app above it, yet some of its changes need a message sent: each is a
signal here, connected by the app that sends (channels, in its AppConfig.ready()) and sent
inside compliance's own transaction, so a receiver's error rolls the change back.
"""
from django.core.exceptions import ImproperlyConfigured
from django.dispatch import Signal

# A marketing-email consent was recorded as pending (double opt-in): send the confirmation.
# Arguments: contact, change (the pending ConsentChange), confirm_url (the signed link that confirms it).
double_opt_in_requested = Signal()


def send(signal: Signal, **kwargs) -> None:
    """Send a hook that some app must handle; refuse to drop the write when none is connected."""
    if not signal.has_listeners():
        raise ImproperlyConfigured("No app handles this compliance hook; is the channels app installed?")
    signal.send(sender=None, **kwargs)
