"""Phone numbers: parsed and validated with `phonenumbers`, stored as E.164."""
import phonenumbers
from django.core.exceptions import ValidationError


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
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def country_of(e164: str) -> str:
    """ISO country code of a stored E.164 number ('' when unknown)."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164)) or ""
    except phonenumbers.NumberParseException:
        return ""
