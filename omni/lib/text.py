"""Text from outside that the database cannot store.

PostgreSQL refuses U+0000 in text and jsonb, and no UTF-8 codec can encode a lone surrogate
("\\ud800", which JSON allows), so either one would fail the INSERT with a 500.
"""
import math
import re

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_reason(text: str) -> str:
    """Why `text` cannot be stored, or "" when it can."""
    match = UNSTORABLE.search(text)
    if match is None:
        return ""
    return "a NUL character (\\u0000)" if match.group() == "\x00" else "a lone surrogate (\\ud800-\\udfff)"


def first_unstorable(value, path: str = "") -> tuple[str, str] | None:
    """(path, reason) of the first string, key or number in a JSON value that cannot be stored.

    Paths read like "properties.items[2].name"; non-finite numbers (1e400 parses as infinity)
    are refused too, since JSON has no infinity and jsonb refuses it.
    """
    pending = [(path, value)]
    while pending:
        where, item = pending.pop(0)
        if isinstance(item, str):
            reason = unstorable_reason(item)
            if reason:
                return where, reason
        elif isinstance(item, float) and not math.isfinite(item):
            return where, "a number out of range"
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{where}.{key}" if where else str(key)
                reason = unstorable_reason(key) if isinstance(key, str) else ""
                if reason:
                    return (where or "body"), reason
                pending.append((child_path, child))
        elif isinstance(item, list):
            pending.extend((f"{where}[{index}]", child) for index, child in enumerate(item))
    return None


def storable(value):
    """A copy of a JSON value with NULs and lone surrogates replaced by U+FFFD, and non-finite
    numbers by None: for what providers sent, which we keep rather than refuse."""
    if isinstance(value, str):
        return UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {storable(str(key)): storable(child) for key, child in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(child) for child in value]
    return value
