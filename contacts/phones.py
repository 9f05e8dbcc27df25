"""Phone numbers: parsed and validated with `phonenumbers`, stored as E.164."""
import functools
import re

import phonenumbers
from django.core.exceptions import ValidationError
from phonenumbers import timezone as phone_timezones

# ISO 3166-2: the country's alpha-2 code, a hyphen, and one to three letters or digits (US-FL, GB-ENG, FR-75).
REGION_PATTERN = re.compile(r"([A-Z]{2})-[A-Z0-9]{1,3}")


def normalize_phone(raw: str, default_region: str | None = None) -> str:
    """Return raw as E.164 (+14155550100) or raise ValidationError saying why not.

    A number in national format, such as (415) 555-0199, needs `default_region` (an ISO
    country code such as US, in any case).
    """
    text = (raw or "").strip()
    if not text:
        raise ValidationError("Phone number is empty.")
    try:
        number = phonenumbers.parse(text, (default_region or "").strip().upper() or None)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(f"{raw!r} is not a phone number: {exc._msg}") from exc
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        raise ValidationError(f"{raw!r} is not a valid phone number; use E.164 such as +14155550100.")
    if number.extension:
        # E.164 has no room for it and no text message reaches it: storing the number without
        # it would message the switchboard, and make everyone behind it one number.
        raise ValidationError(f"{raw!r} has an extension, which messages cannot reach; give a direct number.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@functools.lru_cache(maxsize=65536)
def country_of(e164: str) -> str:
    """ISO country code of a stored E.164 number ('' when unknown)."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164)) or ""
    except phonenumbers.NumberParseException:
        return ""


@functools.lru_cache(maxsize=65536)
def timezones_of(e164: str) -> tuple[str, ...]:
    """The IANA zones a stored E.164 number may be in, per phonenumbers' prefix data: one for
    most numbers, several where a prefix spans zones (an area code on a zone line, a mobile or
    toll-free range), none when unknown. Cached: the lookup costs tens of microseconds and the
    gate asks for every send."""
    try:
        zones = phone_timezones.time_zones_for_number(phonenumbers.parse(e164))
    except phonenumbers.NumberParseException:
        return ()
    return tuple(zone for zone in zones if zone != phone_timezones.UNKNOWN_TIMEZONE)


def validate_region(value: str) -> None:
    """An ISO 3166-2 subdivision code such as US-FL (any case), of a country phonenumbers knows;
    ValidationError otherwise."""
    match = REGION_PATTERN.fullmatch((value or "").upper())
    if not match or match.group(1) not in phonenumbers.SUPPORTED_REGIONS:
        raise ValidationError(f"{value!r} is not an ISO 3166-2 region code such as US-FL.", code="invalid_region")


def validate_country(value: str) -> None:
    """An ISO 3166-1 alpha-2 country code phonenumbers knows (any case); ValidationError otherwise."""
    if value and value.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ValidationError(f"{value!r} is not an ISO 3166-1 alpha-2 country code such as US.",
                              code="invalid_country")
