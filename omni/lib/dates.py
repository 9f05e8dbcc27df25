"""Dates that come in from outside: one rule for every door (API, webhooks, imports).

A date far in the past (year 1 with a +14:00 offset) cannot even be converted to UTC without
overflowing, and it broke the tick and the admin pages once stored. A date days ahead is a
sender's bug (often a misapplied time zone) that would make time-based steps fire at the
wrong moment. So only aware datetimes between EARLIEST and now + MAX_AHEAD are accepted.
"""
from datetime import UTC, datetime, timedelta

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

# Nothing Omni hears about happened before it could have been sent by a system of this century.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
# A sender's clock may run ahead a little.
MAX_AHEAD = timedelta(days=1)


class InvalidDate(ValidationError):
    """A date that cannot be stored; `field` names where it came from."""

    def __init__(self, field: str, message: str):
        super().__init__(message, code="invalid_field")
        self.field = field


def clean_datetime(value, *, field: str, now: datetime | None = None) -> datetime:
    """`value` (an aware datetime or an ISO 8601 string with an offset) as a UTC datetime.

    InvalidDate names `field` when the value is not a date, has no UTC offset, or lies before
    EARLIEST or more than MAX_AHEAD after now.
    """
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value.strip())
        except (ValueError, OverflowError):
            parsed = None
        if parsed is None:
            raise InvalidDate(field, f"{field}: {value[:64]!r} is not an ISO 8601 date and time.")
        value = parsed
    if not isinstance(value, datetime):
        raise InvalidDate(field, f"{field} must be an ISO 8601 string such as 2025-05-01T12:00:00Z.")
    if timezone.is_naive(value):
        raise InvalidDate(field, f"{field} needs a UTC offset or Z, e.g. 2025-05-01T12:00:00Z.")
    try:
        value = value.astimezone(UTC)
    except (OverflowError, ValueError):
        # Year 1 with a positive offset is before the first representable UTC instant.
        raise InvalidDate(field, f"{field} is before {EARLIEST:%Y-%m-%d}.") from None
    now = now or timezone.now()
    if value < EARLIEST:
        raise InvalidDate(field, f"{field} is before {EARLIEST:%Y-%m-%d}.")
    if value > now + MAX_AHEAD:
        raise InvalidDate(field, f"{field} is more than a day in the future.")
    return value


def provider_time(value, *, received_at: datetime | None = None) -> datetime:
    """A provider's timestamp if it is a sane date, else the time we received it.

    Webhooks use this instead of refusing: the provider signed that timestamp and would send
    the very same one again on every retry, so a 400 would only buy an endless retry loop.
    The raw payload is kept, so the provider's own value is never lost.
    """
    received_at = received_at or timezone.now()
    try:
        return clean_datetime(value, field="timestamp", now=received_at)
    except InvalidDate:
        return received_at
