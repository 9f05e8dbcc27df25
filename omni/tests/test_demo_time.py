"""OMNI_DEMO_TIME_SCALE: the demo's shortened clock, and the system check that keeps it to the sandbox."""
from datetime import timedelta

from django.core import checks

from omni.lib.demo_time import scaled

SANDBOX_EVERYWHERE = {"email": "sandbox", "sms": "sandbox", "whatsapp": "sandbox", "rcs": "sandbox", "push": "sandbox"}


def errors_of(ids):
    return [message for message in checks.run_checks() if message.id in ids]


def test_the_time_scale_is_refused_when_a_channel_has_a_real_provider(settings):
    # given a demo clock and Twilio configured for SMS
    settings.OMNI_DEMO_TIME_SCALE = 1440
    settings.OMNI_PROVIDERS = {**SANDBOX_EVERYWHERE, "sms": "twilio"}
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_FROM_NUMBER = "AC1", "token", "+15005550006"

    # when Django runs its system checks (runserver, migrate and the worker's start do)
    refused = errors_of({"omni.E031"})

    # then an error stops the start, naming the setting and the real provider
    assert len(refused) == 1 and refused[0].level == checks.ERROR
    assert "OMNI_DEMO_TIME_SCALE=1440" in refused[0].msg and "OMNI_SMS_PROVIDER='twilio'" in refused[0].msg


def test_the_time_scale_is_accepted_when_every_provider_is_the_sandbox(settings):
    settings.OMNI_DEMO_TIME_SCALE = 1440
    settings.OMNI_PROVIDERS = dict(SANDBOX_EVERYWHERE)

    assert errors_of({"omni.E030", "omni.E031"}) == []


def test_real_time_is_accepted_with_real_providers(settings):
    settings.OMNI_DEMO_TIME_SCALE = 1
    settings.OMNI_PROVIDERS = {**SANDBOX_EVERYWHERE, "email": "ses"}
    settings.SES_FROM_EMAIL = "news@example.com"

    assert errors_of({"omni.E030", "omni.E031"}) == []


def test_a_scale_of_zero_or_less_is_refused(settings):
    settings.OMNI_PROVIDERS = dict(SANDBOX_EVERYWHERE)
    for scale in (0, -2):
        settings.OMNI_DEMO_TIME_SCALE = scale
        assert [e.id for e in errors_of({"omni.E030", "omni.E031"})] == ["omni.E030"]


def test_scaled_divides_a_wait_by_the_scale(settings):
    settings.OMNI_DEMO_TIME_SCALE = 1440
    assert scaled(3 * 24 * 3600) == timedelta(minutes=3)
    assert scaled(-24 * 3600) == timedelta(minutes=-1)

    settings.OMNI_DEMO_TIME_SCALE = 1
    assert scaled(3 * 24 * 3600) == timedelta(days=3)
