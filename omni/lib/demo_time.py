"""The demo's clock: OMNI_DEMO_TIME_SCALE shortens every wait the engine computes, so a newcomer
watches journeys of days run in minutes (1440: a day lasts a minute).

One place, `scaled()`, divides a wait by the scale: journey waits, wait-for-event and webhook
timeouts, wait_date offsets, channel plan fallback timers and re-entry periods. What is read on
a real clock is not scaled: a time of day (wait_until, quiet hours), a date and the days from it
of a date trigger, and the dates contacts and events carry. omni/checks.py refuses a scale other
than 1 unless every provider is the sandbox: real messages never run on a shortened clock.
"""
from datetime import timedelta

from django.conf import settings


def time_scale() -> float:
    return settings.OMNI_DEMO_TIME_SCALE


def scaled(seconds: float) -> timedelta:
    """How long a wait of `seconds` lasts on the demo's clock (as it is at scale 1)."""
    scale = time_scale()
    return timedelta(seconds=seconds if scale == 1 else seconds / scale)
