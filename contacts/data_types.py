"""Typed data: the declared types of contact attributes and event properties, and their checks.

A key someone declared (AttributeDefinition, EventPropertyDefinition) must hold a value of its
type; a wrong one is refused with the field named (`properties.amount must be a number, not
"abc"`). Undeclared keys pass, and null is no value of any type (for attributes it removes
the key).

Every event the API receives is checked, so each process keeps the definitions, with the keys
of the lifecycle stages, for OMNI_TYPED_DATA_CACHE_SECONDS, as omni.api keeps verified API
keys: a request costs no query for them. A change saved in this process is seen at once;
another process sees it when its copy expires.
"""
import json
import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from .models import AttributeDefinition, DataType, EventPropertyDefinition, LifecycleStage

DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
# A date, "T", a time to the minute at least, and an offset: what occurred_at accepts too.
DATETIME_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})")
# How much of a refused value the message quotes.
SHOWN_VALUE_LENGTH = 60


class WrongType(ValidationError):
    """A declared key holds a value of another type; `field` names it (e.g. "properties.amount")."""

    def __init__(self, field: str, message: str):
        super().__init__(message, code="wrong_type")
        self.field = field


def is_text(value) -> bool:
    return isinstance(value, str)


def is_number(value) -> bool:
    # JSON true and false are Python ints too.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_boolean(value) -> bool:
    return isinstance(value, bool)


def is_date(value) -> bool:
    """An ISO 8601 calendar date, yyyy-mm-dd."""
    if not isinstance(value, str) or not DATE_PATTERN.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def is_datetime(value) -> bool:
    """An ISO 8601 date and time with its UTC offset ("Z" or ±hh:mm): an instant, never a local time."""
    if not isinstance(value, str) or not DATETIME_PATTERN.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def is_list(value) -> bool:
    return isinstance(value, list)


CHECKS = {
    DataType.TEXT: (is_text, "text"),
    DataType.NUMBER: (is_number, "a number"),
    DataType.BOOLEAN: (is_boolean, "true or false"),
    DataType.DATE: (is_date, "a date as yyyy-mm-dd"),
    DataType.DATETIME: (is_datetime, "a date and time in ISO 8601 with its offset, e.g. 2026-12-03T09:15:00+01:00"),
    DataType.LIST: (is_list, "a list"),
}


def type_problem(path: str, data_type: str, value) -> str | None:
    """Why `value` does not fit `data_type`, naming `path`; None when it fits."""
    if value is None:
        return None
    check, expected = CHECKS[data_type]
    if check(value):
        return None
    return f"{path} must be {expected}, not {shown(value)}."


def shown(value) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= SHOWN_VALUE_LENGTH else text[:SHOWN_VALUE_LENGTH - 1] + "…"


def check_typed(values: dict, types: dict[str, str], *, prefix: str) -> None:
    """WrongType for the first key of `values` whose declared type (`types`) its value does not fit."""
    for name, data_type in types.items():
        if name in values:
            problem = type_problem(f"{prefix}.{name}", data_type, values[name])
            if problem:
                raise WrongType(f"{prefix}.{name}", problem)


def check_attributes(attributes: dict) -> None:
    """WrongType naming `attributes.<name>` when a declared attribute holds a value of another type."""
    check_typed(attributes, definitions().attributes, prefix="attributes")


def check_properties(event: str, properties: dict) -> None:
    """WrongType naming `properties.<name>` when a property declared for `event` holds another type."""
    types = definitions().properties.get(event)
    if types:
        check_typed(properties, types, prefix="properties")


def contact_problems(lifecycle_stage, attributes) -> dict[str, str]:
    """What a contact's declared data says is wrong with these values, by field: its stage must be
    a lifecycle stage and its attributes must fit their declared types. The contact form and the
    import ask this beside Contact.clean() (which cannot: this reads the definition models)."""
    problems = {}
    if not is_lifecycle_stage(lifecycle_stage):
        problems["lifecycle_stage"] = (f"{lifecycle_stage!r} is not a lifecycle stage; the stages are: "
                                       f"{', '.join(LifecycleStage.objects.values_list('key', flat=True))}.")
    if not isinstance(attributes, dict):
        problems["attributes"] = "attributes must be a JSON object."
    else:
        try:
            check_attributes(attributes)
        except WrongType as exc:
            problems["attributes"] = exc.messages[0]
    return problems


def is_lifecycle_stage(key) -> bool:
    """Whether `key` is a lifecycle stage's key. A key this process does not know is looked up, so
    a stage just added elsewhere is accepted at once; only a deleted one may linger."""
    if not isinstance(key, str):
        return False
    return key in definitions().stages or LifecycleStage.objects.filter(key=key).exists()


@dataclass(frozen=True)
class Definitions:
    attributes: dict[str, str] = field(default_factory=dict)  # name -> type
    properties: dict[str, dict[str, str]] = field(default_factory=dict)  # event -> {name: type}
    stages: frozenset[str] = frozenset()


_cached: tuple[float, Definitions] | None = None


def definitions() -> Definitions:
    """The declared types and stage keys, from this process's copy when it is fresh (no query)."""
    global _cached
    now = time.monotonic()
    if _cached is not None and _cached[0] > now:
        return _cached[1]
    loaded = load_definitions()
    _cached = (now + settings.OMNI_TYPED_DATA_CACHE_SECONDS, loaded)
    return loaded


def load_definitions() -> Definitions:
    """Every definition and stage key, in one query."""
    with connection.cursor() as cursor:
        cursor.execute(f"""
            SELECT 'a', '', name, data_type FROM {AttributeDefinition._meta.db_table}
            UNION ALL SELECT 'p', event, name, data_type FROM {EventPropertyDefinition._meta.db_table}
            UNION ALL SELECT 's', '', {connection.ops.quote_name("key")}, '' FROM {LifecycleStage._meta.db_table}""")
        rows = cursor.fetchall()
    attributes, properties, stages = {}, {}, set()
    for kind, event, name, data_type in rows:
        if kind == "a":
            attributes[name] = data_type
        elif kind == "p":
            properties.setdefault(event, {})[name] = data_type
        else:
            stages.add(name)
    return Definitions(attributes, properties, frozenset(stages))


def forget_definitions(**kwargs) -> None:
    """Drop this process's copy (a definition or stage changed); the next check reloads it.
    Also after the change commits, so a check that reloaded meanwhile keeps nothing stale."""
    global _cached
    _cached = None
    if connection.in_atomic_block:
        transaction.on_commit(forget_definitions)
