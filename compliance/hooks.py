"""Hooks through which the apps above compliance act on its changes (as contacts/hooks.py does).

Compliance imports no app above it, yet some of its changes call for a message: the
confirmation of a double opt-in, and the first message after an SMS opt-in, which confirms
the program, how often it messages, HELP and STOP. Each is a signal here; the app that sends
messages (channels) connects its receiver in its AppConfig.ready(), and compliance sends it
inside the change's own transaction, so the message is made if and only if the change is kept
(a receiver's error rolls the change back).
"""
from django.core.exceptions import ImproperlyConfigured
from django.dispatch import Signal

# A marketing-email consent was recorded as pending (double opt-in): send the confirmation.
# Arguments: contact, change (the pending ConsentChange), confirm_url (the signed link that confirms it).
double_opt_in_requested = Signal()

# A contact opted in on a channel where no purpose was granted before (a form, the API, an
# agent; imports and keywords only when asked: compliance.actions.announces_opt_in).
# Arguments: change (the ConsentChange that granted it).
opted_in = Signal()


def send(signal: Signal, **kwargs) -> None:
    """Send a hook that some app must handle; refuse to drop the write when none is connected."""
    if not signal.has_listeners():
        raise ImproperlyConfigured("No app handles this compliance hook; is the channels app installed?")
    signal.send(sender=None, **kwargs)
