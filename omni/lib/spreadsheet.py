"""Cells for files people open in a spreadsheet: every export writes its cells through here.

A cell starting with one of FORMULA_PREFIXES is run as a formula by Excel, LibreOffice and
Google Sheets (=HYPERLINK(...) leaks data, +cmd|... runs a command); a leading apostrophe makes
it plain text (OWASP "CSV injection"). Tab and carriage return are on OWASP's list too.
"""
import json
import re

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# A number alone (an E.164 phone number, a negative amount) runs nothing: it stays as written,
# so a phone number exports as +14155550100 and imports back as the same number.
PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def neutralize_formula(value) -> str:
    """The cell text for value, safe to open in a spreadsheet."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True, default=str)
    elif hasattr(value, "isoformat"):
        text = value.isoformat()
    else:
        text = str(value)
    return "'" + text if _runs_as_formula(text) else text


def restore_formula_text(text: str) -> str:
    """A cell neutralize_formula() wrote, read back as the text it was given, so that an exported
    file imports unchanged."""
    if text.startswith("'") and _runs_as_formula(text[1:]):
        return text[1:]
    return text


def _runs_as_formula(text: str) -> bool:
    return text.startswith(FORMULA_PREFIXES) and PLAIN_NUMBER.fullmatch(text) is None
