"""Typed conditions on one key of a JSON field: `plan equals pro`, `amount at least 100`,
`renews_at within the last 7 days`, `tags contains vip`.

A condition is written as a dict and checked against the key's declared type (contacts.models.
DataType; an undeclared key is compared as text):

    {"operator": "at_least", "value": 100}
    {"operator": "between", "value": "2026-01-01", "value_to": "2026-01-31"}

The same condition becomes a Q over a JSON path (`condition_q("attributes__plan", ...)`, for a
set of contacts or events, on SQLite and PostgreSQL) or is evaluated on one Python value
(`matches(...)`, for a single event), with the same semantics:

- A missing key or a JSON null matches nothing but `is_not_set`, `not_equals` and
  `not_contains` (a contact without a plan is "not pro").
- text: `equals` and `not_equals` are exact; `contains` and `starts_with` ignore case.
- number: only JSON numbers compare (the string "42" is not the number 42).
- boolean: only JSON true and false.
- date: the first ten characters of an ISO 8601 string (YYYY-MM-DD). datetime: an ISO 8601
  instant (without an offset it is UTC); `on` a date means that UTC day. "Within the last N
  days" runs from N days before now (today, for dates) to now; "more than N days ago" is
  before that.
- list: a JSON array whose elements are compared as text, exactly.

`parse_condition` refuses a bad condition with ConditionError, whose problems name the field
(`conditions[0].value must be a number`); `condition_problems` returns them instead.
"""
import datetime as dt
import json
import re
from dataclasses import dataclass

from django.db.models import BooleanField, DateTimeField, F, FloatField, Func, Q, TextField
from django.db.models.functions import Substr
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    IContains,
    IsNull,
    IStartsWith,
    LessThan,
    LessThanOrEqual,
    Regex,
)
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from .models import DataType

# How a value is entered for an operator (the segment form draws its inputs from this).
NO_VALUE = "none"
ONE_VALUE = "value"  # of the key's type
TWO_VALUES = "range"  # value and value_to, of the key's type
DAYS = "days"  # a whole number of days


@dataclass(frozen=True)
class Operator:
    name: str
    label: str
    takes: str = ONE_VALUE


_SET = [Operator("is_set", "is set", NO_VALUE), Operator("is_not_set", "is not set", NO_VALUE)]
_DATES = [
    Operator("before", "before"),
    Operator("after", "after"),
    Operator("on", "on"),
    Operator("within_last_days", "within the last N days", DAYS),
    Operator("more_than_days_ago", "more than N days ago", DAYS),
    Operator("between", "between", TWO_VALUES),
]

OPERATORS: dict[str, list[Operator]] = {
    DataType.TEXT: [
        Operator("equals", "equals"),
        Operator("not_equals", "does not equal"),
        Operator("contains", "contains"),
        Operator("starts_with", "starts with"),
        *_SET,
    ],
    DataType.NUMBER: [
        Operator("equals", "="),
        Operator("not_equals", "≠"),
        Operator("less_than", "<"),
        Operator("at_most", "≤"),
        Operator("greater_than", ">"),
        Operator("at_least", "≥"),
        Operator("between", "between", TWO_VALUES),
        *_SET,
    ],
    DataType.BOOLEAN: [Operator("is_true", "is true", NO_VALUE), Operator("is_false", "is false", NO_VALUE), *_SET],
    DataType.DATE: [*_DATES, *_SET],
    DataType.DATETIME: [*_DATES, *_SET],
    DataType.LIST: [
        Operator("contains", "contains"),
        Operator("not_contains", "does not contain"),
        *_SET,
    ],
}

# Days in "within the last N days": a bound that keeps date arithmetic far from its limits.
MAX_DAYS = 36500


def operators_for(data_type: str) -> list[Operator]:
    return OPERATORS.get(data_type, OPERATORS[DataType.TEXT])


def operators_by_type() -> dict:
    """The operators of every type, as plain data for the segment form."""
    return {t: [{"name": o.name, "label": o.label, "takes": o.takes} for o in ops] for t, ops in OPERATORS.items()}


@dataclass(frozen=True)
class Condition:
    """A checked condition: its values already of the key's type (float, bool, date, aware
    datetime, str, or int days)."""

    data_type: str
    operator: str
    value: object = None
    value_to: object = None


class ConditionError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_condition(raw, data_type: str | None, field: str = "condition") -> Condition:
    """The condition `raw` (a dict) checked against `data_type` (None: text). Raises
    ConditionError naming `field` (`conditions[0].value must be a number`)."""
    data_type = data_type if data_type in OPERATORS else DataType.TEXT
    if not isinstance(raw, dict):
        raise ConditionError([f"{field} must be an object with an operator"])
    operators = {o.name: o for o in operators_for(data_type)}
    operator = operators.get(raw.get("operator"))
    if operator is None:
        raise ConditionError([f"{field}.operator must be one of {', '.join(operators)} for a {data_type} value"])
    problems = []
    value = value_to = None
    if operator.takes == DAYS:
        value = _days(raw.get("value"), f"{field}.value", problems)
    elif operator.takes in (ONE_VALUE, TWO_VALUES):
        value = _typed(raw.get("value"), data_type, operator.name, f"{field}.value", problems)
        if operator.takes == TWO_VALUES:
            value_to = _typed(raw.get("value_to"), data_type, operator.name, f"{field}.value_to", problems)
            if not problems and value_to < value:
                problems.append(f"{field}.value_to must not be before {field}.value")
    if problems:
        raise ConditionError(problems)
    return Condition(data_type, operator.name, value, value_to)


def condition_problems(raw, data_type: str | None, field: str = "condition") -> list[str]:
    try:
        parse_condition(raw, data_type, field)
    except ConditionError as error:
        return error.problems
    return []


_EXPECTED = {
    DataType.TEXT: "a text",
    DataType.NUMBER: "a number",
    DataType.DATE: "a date (YYYY-MM-DD)",
    DataType.DATETIME: "a date and time (ISO 8601, e.g. 2026-03-01T09:00:00Z) or a date",
    DataType.LIST: "a text (one element of the list)",
}


def _typed(value, data_type, operator, field, problems):
    parsed = None
    if data_type == DataType.NUMBER:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parsed = float(value)
        elif isinstance(value, str):
            try:
                parsed = float(value.strip())
            except ValueError:
                pass
    elif data_type == DataType.DATE:
        parsed = _as_date(value)
    elif data_type == DataType.DATETIME:
        # "on" a day takes a date; the other operators an instant (a date: its midnight, UTC).
        parsed = _as_date(value) if operator == "on" else _as_datetime(value)
    elif isinstance(value, str) and value != "":
        parsed = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        parsed = _text(value)
    if parsed is None:
        expected = "a date (YYYY-MM-DD)" if data_type == DataType.DATETIME and operator == "on" else _EXPECTED[data_type]
        problems.append(f"{field} must be {expected}")
    return parsed


def _days(value, field, problems):
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_DAYS:
        return value
    problems.append(f"{field} must be a whole number of days from 1 to {MAX_DAYS}")
    return None


_DATE_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}")
# What the PostgreSQL cast to timestamptz is trusted with; anything else counts as no value.
_INSTANT_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])([T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"


def _as_date(value) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).date() if timezone.is_aware(value) else value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and _DATE_PREFIX.match(value):
        try:
            return parse_date(value[:10])
        except ValueError:
            return None
    return None


def _as_datetime(value) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime.combine(value, dt.time())
    elif isinstance(value, str) and re.match(_INSTANT_PATTERN, value.strip()):
        text = value.strip()
        try:
            parsed = parse_datetime(text) if len(text) > 10 else dt.datetime.combine(parse_date(text), dt.time())
        except ValueError:
            return None
        if parsed is None:
            return None
    else:
        return None
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    # SQLite compares instants as text to the second (see JsonInstant).
    return parsed.astimezone(dt.timezone.utc).replace(microsecond=0)


def _text(value) -> str | None:
    """A JSON value as text, as PostgreSQL's ->> writes it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, separators=(", ", ": "))


def _bounds(condition: Condition, now):
    """The (low, high) bounds of the date operators, inclusive, of the key's type."""
    days = condition.value
    if condition.data_type == DataType.DATE:
        today = now.astimezone(dt.timezone.utc).date()
        return today - dt.timedelta(days=days), today
    moment = now.astimezone(dt.timezone.utc).replace(microsecond=0)
    return moment - dt.timedelta(days=days), moment


# ---------------------------------------------------------------- one Python value


def matches(condition: Condition, value, now=None) -> bool:
    """Whether `value` (a key's value from a JSON object; None when missing) meets the
    condition. The same semantics as condition_q."""
    now = now or timezone.now()
    op = condition.operator
    if op == "is_set":
        return value is not None
    if op == "is_not_set":
        return value is None
    data_type = condition.data_type
    if data_type == DataType.TEXT:
        text = _text(value)
        if op == "not_equals":
            return text != condition.value
        if text is None:
            return False
        return {
            "equals": lambda: text == condition.value,
            "contains": lambda: condition.value.upper() in text.upper(),
            "starts_with": lambda: text.upper().startswith(condition.value.upper()),
        }[op]()
    if data_type == DataType.NUMBER:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if op == "not_equals":
            return number != condition.value
        return number is not None and _compare(op, number, condition)
    if data_type == DataType.BOOLEAN:
        return isinstance(value, bool) and value == (op == "is_true")
    if data_type == DataType.LIST:
        elements = {_text(e) for e in value} if isinstance(value, list) else set()
        return (condition.value in elements) == (op == "contains")
    if data_type == DataType.DATE:
        day = _as_date(value) if isinstance(value, str) else None
        return day is not None and _compare_dates(op, day, condition, now)
    instant = _as_datetime(value) if isinstance(value, (str, dt.datetime)) else None
    if instant is None:
        return False
    if op == "on":
        return instant.date() == condition.value
    return _compare_dates(op, instant, condition, now)


def _compare(op, left, condition) -> bool:
    right = condition.value
    return {
        "equals": lambda: left == right,
        "less_than": lambda: left < right,
        "at_most": lambda: left <= right,
        "greater_than": lambda: left > right,
        "at_least": lambda: left >= right,
        "between": lambda: right <= left <= condition.value_to,
    }[op]()


def _compare_dates(op, left, condition, now) -> bool:
    if op in ("within_last_days", "more_than_days_ago"):
        low, high = _bounds(condition, now)
        return low <= left <= high if op == "within_last_days" else left < low
    return _compare(_DATE_OPERATORS[op], left, condition)


# ---------------------------------------------------------------- SQL over a JSON path


class _JsonKey(Func):
    """One key of a JSON column, as a value of one type; NULL when missing or of another type.
    Subclasses write the SQL per database with {column}, {key} and {extra} placeholders."""

    postgresql = sqlite = ""

    def __init__(self, column: str, key: str, output_field, argument=None):
        super().__init__(F(column), output_field=output_field)
        self.key = key
        self.argument = argument

    def as_sql(self, compiler, connection, **kwargs):
        column_sql, column_params = compiler.compile(self.source_expressions[0])
        if connection.vendor == "postgresql":
            template, key = self.postgresql, self.key
        else:
            template, key = self.sqlite, '$."' + self.key.replace('"', '\\"') + '"'
        params = []
        for name in re.findall(r"\{(column|key|extra)\}", template):
            params += {"column": list(column_params), "key": [key], "extra": [self.argument]}[name]
        return template.format(column=column_sql, key="%s", extra="%s"), params


class JsonType(_JsonKey):
    """The JSON type of the value; NULL when missing, 'null' for a JSON null."""

    postgresql = "jsonb_typeof({column} -> {key}::text)"
    sqlite = "json_type({column}, {key})"

    def __init__(self, column, key):
        super().__init__(column, key, TextField())


class JsonText(_JsonKey):
    """The value as text, as PostgreSQL's ->> writes it (true, 42, 4.5, "abc" as abc)."""

    postgresql = "({column} ->> {key}::text)"
    sqlite = ("CASE json_type({column}, {key}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
              "WHEN 'null' THEN NULL ELSE CAST(json_extract({column}, {key}) AS TEXT) END")

    def __init__(self, column, key):
        super().__init__(column, key, TextField())


class JsonNumber(_JsonKey):
    """A JSON number; NULL for anything else, so a stray string never breaks a cast."""

    postgresql = ("CASE WHEN jsonb_typeof({column} -> {key}::text) = 'number' "
                  "THEN ({column} ->> {key}::text)::double precision END")
    sqlite = "CASE WHEN json_type({column}, {key}) IN ('integer', 'real') THEN json_extract({column}, {key}) END"

    def __init__(self, column, key):
        super().__init__(column, key, FloatField())


class JsonBoolean(_JsonKey):
    """'true' or 'false' for a JSON boolean, NULL otherwise."""

    postgresql = "CASE WHEN jsonb_typeof({column} -> {key}::text) = 'boolean' THEN ({column} ->> {key}::text) END"
    sqlite = "CASE WHEN json_type({column}, {key}) IN ('true', 'false') THEN json_type({column}, {key}) END"

    def __init__(self, column, key):
        super().__init__(column, key, TextField())


class JsonInstant(_JsonKey):
    """An ISO 8601 string as an instant, to the second: timestamptz on PostgreSQL (only for
    strings that look like one, so the cast cannot fail on a stray value; fractions dropped as
    SQLite and matches() drop them), UTC text 'YYYY-MM-DD HH:MM:SS' on SQLite (datetime()
    applies the offset, and gives NULL for anything it cannot read)."""

    postgresql = ("CASE WHEN ({column} ->> {key}::text) ~ {extra} "
                  "THEN date_trunc('second', ({column} ->> {key}::text)::timestamptz) END")
    sqlite = "CASE WHEN json_type({column}, {key}) = 'text' THEN datetime(json_extract({column}, {key})) END"

    def __init__(self, column, key):
        super().__init__(column, key, DateTimeField(), argument=_INSTANT_PATTERN)


class JsonListContains(_JsonKey):
    """Whether a JSON array holds an element whose text equals `element`."""

    postgresql = ("EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof({column} -> {key}::text) "
                  "= 'array' THEN {column} -> {key}::text END) AS element(value) WHERE element.value = {extra})")
    sqlite = ("(json_type({column}, {key}) = 'array' AND EXISTS (SELECT 1 FROM json_each({column}, {key}) AS element "
              "WHERE CASE element.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
              "ELSE CAST(element.value AS TEXT) END = {extra}))")

    def __init__(self, column, key, element: str):
        super().__init__(column, key, BooleanField(), argument=element)


def _split(path: str) -> tuple[str, str]:
    column, _, key = path.rpartition("__")
    if not column or not key:
        raise ValueError(f"{path!r} is not a JSON path like attributes__plan")
    return column, key


def condition_q(path: str, condition: Condition, now=None) -> Q:
    """A Q keeping the rows whose JSON key at `path` ("attributes__plan", or across a relation,
    "events__properties__amount") meets the condition."""
    now = now or timezone.now()
    column, key = _split(path)
    op = condition.operator
    kind = JsonType(column, key)
    if op == "is_set":
        return Q(IsNull(kind, False)) & ~Q(Exact(kind, "null"))
    if op == "is_not_set":
        return Q(IsNull(kind, True)) | Q(Exact(kind, "null"))
    data_type = condition.data_type
    if data_type == DataType.BOOLEAN:
        return Q(Exact(JsonBoolean(column, key), "true" if op == "is_true" else "false"))
    if data_type == DataType.LIST:
        contains = Q(JsonListContains(column, key, condition.value))
        return contains if op == "contains" else ~contains
    if data_type == DataType.TEXT:
        text = JsonText(column, key)
        if op == "not_equals":
            return Q(IsNull(text, True)) | ~Q(Exact(text, condition.value))
        lookup = {"equals": Exact, "contains": IContains, "starts_with": IStartsWith}[op]
        return Q(lookup(text, condition.value))
    if data_type == DataType.NUMBER:
        number = JsonNumber(column, key)
        if op == "not_equals":
            return Q(IsNull(number, True)) | ~Q(Exact(number, condition.value))
        return _compared(number, op, condition.value, condition.value_to)
    if data_type == DataType.DATE:
        day = Substr(JsonText(column, key), 1, 10, output_field=TextField())
        valid = Q(Regex(JsonText(column, key), r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"))
        if op in ("within_last_days", "more_than_days_ago"):
            low, high = _bounds(condition, now)
            if op == "more_than_days_ago":
                return valid & Q(LessThan(day, low.isoformat()))
            return valid & _compared(day, "between", low.isoformat(), high.isoformat())
        value_to = condition.value_to.isoformat() if condition.value_to else None
        return valid & _compared(day, _DATE_OPERATORS[op], condition.value.isoformat(), value_to)
    instant = JsonInstant(column, key)
    if op in ("within_last_days", "more_than_days_ago"):
        low, high = _bounds(condition, now)
        return Q(LessThan(instant, low)) if op == "more_than_days_ago" else _compared(instant, "between", low, high)
    if op == "on":
        start = dt.datetime.combine(condition.value, dt.time(), tzinfo=dt.timezone.utc)
        return Q(GreaterThanOrEqual(instant, start)) & Q(LessThan(instant, start + dt.timedelta(days=1)))
    return _compared(instant, _DATE_OPERATORS[op], condition.value, condition.value_to)


_DATE_OPERATORS = {"before": "less_than", "after": "greater_than", "on": "equals", "between": "between"}
_LOOKUPS = {"equals": Exact, "less_than": LessThan, "at_most": LessThanOrEqual, "greater_than": GreaterThan,
            "at_least": GreaterThanOrEqual}


def _compared(expression, op, value, value_to=None) -> Q:
    if op == "between":
        return Q(GreaterThanOrEqual(expression, value)) & Q(LessThanOrEqual(expression, value_to))
    return Q(_LOOKUPS[op](expression, value))
