"""Which provider carries which channel: settings.OMNI_PROVIDERS, imported lazily, cached."""
import functools

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from .base import Provider

# The values settings.OMNI_PROVIDERS may hold, and the class behind each. Imported only when
# first used, so a deployment without Twilio never imports the twilio package.
PROVIDER_CLASSES = {
    "sandbox": "channels.providers.sandbox.SandboxProvider",
    "ses": "channels.providers.ses.SesProvider",
    "twilio": "channels.providers.twilio.TwilioProvider",
    "sns": "channels.providers.sns_sms.SnsSmsProvider",
}


@functools.cache
def provider_named(name: str) -> Provider:
    """The provider stored as Delivery.provider, e.g. "ses". One shared instance per name."""
    try:
        path = PROVIDER_CLASSES[name]
    except KeyError:
        raise ImproperlyConfigured(f"Unknown provider {name!r}; known: {', '.join(PROVIDER_CLASSES)}.") from None
    return import_string(path)()


def provider_for(channel: str) -> Provider:
    """The provider settings.OMNI_PROVIDERS chooses for a channel."""
    name = settings.OMNI_PROVIDERS.get(channel)
    if not name:
        raise ImproperlyConfigured(f"No provider configured for channel {channel!r} in OMNI_PROVIDERS.")
    provider = provider_named(name)
    if channel not in provider.channels:
        raise ImproperlyConfigured(f"Provider {name!r} cannot deliver {channel!r} (OMNI_{channel.upper()}_PROVIDER).")
    return provider


@receiver(setting_changed)
def _forget_providers(**kwargs):
    # Providers build their API clients from settings on first use; tests switch endpoints
    # and credentials with override_settings, so a changed setting must drop those clients.
    provider_named.cache_clear()
