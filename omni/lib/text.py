"""Text from outside that the database cannot store.

PostgreSQL refuses U+0000 in text and jsonb, and no UTF-8 codec can encode a lone surrogate
("\\ud800", which JSON allows), so either one would fail the INSERT with a 500.
"""
import hashlib
import math
import re
from collections import deque

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Deeper JSON is refused: nothing Omni stores needs it, and code that walks JSON recursively
# (encoders, drivers) would otherwise run out of stack on it, a 500.
MAX_JSON_DEPTH = 64


def unstorable_reason(text: str) -> str:
    """Why `text` cannot be stored, or "" when it can."""
    match = UNSTORABLE.search(text)
    if match is None:
        return ""
    return "a NUL character (\\u0000)" if match.group() == "\x00" else "a lone surrogate (\\ud800-\\udfff)"


def refuse_non_json_number(token: str):
    """json.loads' parse_constant: Python's json accepts NaN and Infinity, which are not JSON and
    which jsonb refuses."""
    raise ValueError(f"{token} is not a JSON number")


def first_unstorable(value, path: str = "", *, max_depth: int = MAX_JSON_DEPTH) -> tuple[str, str] | None:
    """(path, reason) of the first string, key or number in a JSON value that cannot be stored,
    or of the first array or object nested deeper than `max_depth` levels.

    Paths read like "properties.items[2].name"; non-finite numbers (1e400 parses as infinity)
    are refused too, since JSON has no infinity and jsonb refuses it. Each value is visited
    once, breadth first, without recursion.
    """
    pending = deque([(path, value, 1)])
    while pending:
        where, item, depth = pending.popleft()
        if isinstance(item, str):
            reason = unstorable_reason(item)
            if reason:
                return where, reason
        elif isinstance(item, float) and not math.isfinite(item):
            return where, "a number out of range"
        elif isinstance(item, dict | list) and depth > max_depth:
            return where, f"arrays or objects nested deeper than {max_depth} levels"
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{where}.{key}" if where else str(key)
                reason = unstorable_reason(key) if isinstance(key, str) else ""
                if reason:
                    return (where or "body"), reason
                pending.append((child_path, child, depth + 1))
        elif isinstance(item, list):
            pending.extend((f"{where}[{index}]", child, depth + 1) for index, child in enumerate(item))
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


def hash_address(address: str) -> str:
    """The stable hash kept of an address that must itself be forgotten (an erased contact's
    suppressions and blocks), by which it is still looked up."""
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()
