"""Hooks through which the apps above compliance act on consent changes.

Compliance imports no app above it, yet some consent changes call for a message: the first
message after an SMS opt-in confirms the program, how often it messages, HELP and STOP. Each
such announcement is a signal here; the app that sends messages (channels) connects its
receiver in its AppConfig.ready(), and compliance sends it inside the consent change's
transaction, so the message is made if and only if the change is kept.
"""
from django.core.exceptions import ImproperlyConfigured
from django.dispatch import Signal

# A contact opted in on a channel where no purpose was granted before (a form, the API, an
# agent; imports and keywords only when asked: compliance.actions.announces_opt_in).
# Arguments: change (the ConsentChange that granted it).
opted_in = Signal()


def send(signal: Signal, **kwargs) -> None:
    """Send a hook that some app must handle; refuse to drop it when none is connected."""
    if not signal.has_listeners():
        raise ImproperlyConfigured("No app handles this compliance hook; is the channels app installed?")
    signal.send(sender=None, **kwargs)
