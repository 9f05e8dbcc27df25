"""Segments: a saved definition compiled into one set-based SQL query over contacts.

A definition is a group of filters, nested as deep as needed:

    {"match": "all",                       # or "any"
     "filters": [
        {"kind": "attribute", "attribute": "score", "operator": "at_least", "value": 50},
        {"kind": "lifecycle_stage", "stages": ["trial", "customer"]},
        {"kind": "event", "event": "order.placed", "did": true,
         "count_operator": "at_least", "count": 2,          # optional: at_least / at_most N times
         "within_days": 30,                                 # or "from"/"to" dates, or neither: ever
         "conditions": [{"property": "amount", "operator": "greater_than", "value": 100}]},
        {"match": "any", "filters": [...]},                 # a nested group
     ]}

A definition without filters keeps every contact. A nested group must hold a filter: an empty
one would keep everyone inside "all" but add nobody inside "any", so it is refused, naming it.
Attribute and property conditions are typed by AttributeDefinition and EventPropertyDefinition
(undeclared: text); their operators and values are those of contacts/conditions.py.

Filter kinds are registered here (`register(FilterKind(...))`): contacts registers attribute,
lifecycle_stage and event; compliance registers consent and channels engagement, each in its
AppConfig.ready(), so this module never imports them. A kind brings its form fields (plain
data the segment form draws), its validation (problems naming the field, such as
`filters[1].filters[0].value must be a number`) and its SQL: a Q on Contact built from
Exists/Subquery/IN, never a query per contact.

compile(definition, now) returns the reachable contacts who match, as one SQL query;
count_within(...) counts them under a statement timeout.
"""
import datetime as dt
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import OperationalError, connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, Value
from django.db.utils import DatabaseError
from django.utils import timezone
from django.utils.dateparse import parse_date

from .conditions import ConditionError, condition_q, operators_by_type, parse_condition
from .models import AttributeDefinition, Contact, ContactEvent, EventPropertyDefinition, Segment, lifecycle_stage_keys

MATCHES = ("all", "any")
# Nesting beyond this is refused: deeper definitions are a mistake, not an audience.
MAX_DEPTH = 5
MAX_FILTERS = 100


@dataclass(frozen=True)
class FormField:
    """One input of a filter kind in the segment form. `input` is one of: select, multiselect,
    number, text, date, boolean, attribute_condition (an attribute, its operator and values),
    property_conditions (a list of conditions on the event's properties)."""

    name: str
    label: str
    input: str
    choices: Callable[[], list[tuple[str, str]]] | list[tuple[str, str]] = ()
    required: bool = True
    help: str = ""

    def as_data(self) -> dict:
        choices = self.choices() if callable(self.choices) else self.choices
        return {"name": self.name, "label": self.label, "input": self.input, "required": self.required,
                "help": self.help, "choices": [[str(v), str(label)] for v, label in choices]}


@dataclass(frozen=True)
class FilterKind:
    """A kind of filter: `validate(config, field) -> problems` (each naming `field.<name>`), and
    `to_q(config, now) -> Q` on Contact for a valid config."""

    name: str
    label: str
    fields: list[FormField]
    validate: Callable[[dict, str], list[str]]
    to_q: Callable[[dict, dt.datetime], Q]
    # Filled before validate and to_q where the kind's values are typed (see _typed_config).
    typed: bool = False
    order: int = field(default=100)


_KINDS: dict[str, FilterKind] = {}


def register(kind: FilterKind) -> None:
    _KINDS[kind.name] = kind


def kinds() -> list[FilterKind]:
    return sorted(_KINDS.values(), key=lambda k: (k.order, k.label))


def form_catalog() -> dict:
    """Everything the segment form needs to draw filters: the kinds and their fields, the
    declared attributes and event properties with their types, and the operators per type."""
    properties: dict[str, dict[str, str]] = {}
    for event, name, data_type in EventPropertyDefinition.objects.values_list("event", "name", "data_type"):
        properties.setdefault(event, {})[name] = data_type
    return {
        "kinds": [{"name": k.name, "label": k.label, "fields": [f.as_data() for f in k.fields]} for k in kinds()],
        "attributes": dict(AttributeDefinition.objects.values_list("name", "data_type")),
        "properties": properties,
        "operators": operators_by_type(),
    }


# ---------------------------------------------------------------- declared types


@dataclass(frozen=True)
class DeclaredTypes:
    attributes: dict[str, str]
    properties: dict[tuple[str, str], str]


def declared_types(definition) -> DeclaredTypes:
    """The declared types of the attributes and event properties `definition` names: one query
    (none when it names none)."""
    attributes, properties = set(), set()
    for config in _leaves(definition):
        if config.get("kind") == "attribute" and isinstance(config.get("attribute"), str):
            attributes.add(config["attribute"])
        if config.get("kind") == "event" and isinstance(config.get("conditions"), list):
            properties |= {(config.get("event"), c.get("property")) for c in config["conditions"] if isinstance(c, dict)}
    if not attributes and not properties:
        return DeclaredTypes({}, {})
    rows = (AttributeDefinition.objects.filter(name__in=attributes).order_by().values_list(Value(""), "name", "data_type")
            .union(EventPropertyDefinition.objects.filter(name__in={p for _, p in properties}, event__in={e for e, _ in properties})
                   .order_by().values_list("event", "name", "data_type"), all=True))
    found_attributes, found_properties = {}, {}
    for event, name, data_type in rows:
        if event == "" and name in attributes:
            found_attributes[name] = data_type
        if (event, name) in properties:
            found_properties[(event, name)] = data_type
    return DeclaredTypes(found_attributes, found_properties)


def _leaves(definition):
    if not isinstance(definition, dict):
        return
    if "filters" in definition and "kind" not in definition:
        for child in definition["filters"] if isinstance(definition["filters"], list) else []:
            yield from _leaves(child)
    else:
        yield definition


def segments_filtering_on_stage(key: str, **kwargs) -> str | None:
    """How many segments filter on the lifecycle stage `key` (asked before deleting it)."""
    count = sum(1 for definition in Segment.objects.values_list("definition", flat=True)
                if any(leaf.get("kind") == "lifecycle_stage" and key in (leaf.get("stages") or ())
                       for leaf in _leaves(definition)))
    if count:
        return f"{count} segment{'s' if count != 1 else ''}"
    return None


def _typed_config(config: dict, types: DeclaredTypes) -> dict:
    """The config with the declared types written in: `data_type` on an attribute filter, and on
    each of an event filter's conditions."""
    if config.get("kind") == "attribute":
        return {**config, "data_type": types.attributes.get(config.get("attribute"))}
    if config.get("kind") == "event" and isinstance(config.get("conditions"), list):
        event = config.get("event")
        return {**config, "conditions": [
            {**c, "data_type": types.properties.get((event, c.get("property")))} if isinstance(c, dict) else c
            for c in config["conditions"]]}
    return config


# ---------------------------------------------------------------- validation and compiling


def definition_problems(definition, types: DeclaredTypes | None = None) -> list[str]:
    """What is wrong with `definition`, each problem naming its field; [] when it compiles."""
    types = types or declared_types(definition)
    problems: list[str] = []
    _group_problems(definition, "definition", 1, types, problems)
    return problems


def _group_problems(group, path, depth, types, problems):
    if not isinstance(group, dict):
        problems.append(f"{path} must be a group with match and filters")
        return
    if group.get("match", "all") not in MATCHES:
        problems.append(f"{path}.match must be all or any")
    filters = group.get("filters", [])
    if not isinstance(filters, list):
        problems.append(f"{path}.filters must be a list")
        return
    if len(filters) > MAX_FILTERS:
        problems.append(f"{path}.filters holds more than {MAX_FILTERS} filters")
    if not filters and depth > 1:
        problems.append(f"{path} is an empty group: add a filter to it or remove it")
    for i, child in enumerate(filters):
        child_path = f"filters[{i}]" if path == "definition" else f"{path}.filters[{i}]"
        if isinstance(child, dict) and "kind" not in child and "filters" in child:
            if depth >= MAX_DEPTH:
                problems.append(f"{child_path} nests groups deeper than {MAX_DEPTH}")
            else:
                _group_problems(child, child_path, depth + 1, types, problems)
            continue
        kind = _KINDS.get(child.get("kind")) if isinstance(child, dict) else None
        if kind is None:
            problems.append(f"{child_path}.kind must be one of {', '.join(sorted(_KINDS))}")
            continue
        problems.extend(kind.validate(_typed_config(child, types) if kind.typed else child, child_path))


class InvalidDefinition(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def compile(definition, now=None, types: DeclaredTypes | None = None):  # noqa: A001 (the module's verb)
    """The reachable contacts `definition` keeps, as a QuerySet that is one SQL query. Loads the
    declared types it needs (one query) unless given. Raises InvalidDefinition."""
    return matching(definition, now, types).reachable()


def matching(definition, now=None, types: DeclaredTypes | None = None):
    """Every contact `definition` keeps, erased ones included (a campaign's snapshot records them
    as left out, with the reason), as one SQL query. Raises InvalidDefinition."""
    now = now or timezone.now()
    types = types or declared_types(definition)
    problems = definition_problems(definition, types)
    if problems:
        raise InvalidDefinition(problems)
    return Contact.objects.filter(_group_q(definition, now, types))


def _group_q(group, now, types) -> Q:
    parts = []
    for child in group.get("filters", []):
        if "kind" not in child:
            parts.append(_group_q(child, now, types))
        else:
            kind = _KINDS[child["kind"]]
            parts.append(kind.to_q(_typed_config(child, types) if kind.typed else child, now))
    if not parts:
        return Q()
    combined = parts[0]
    for part in parts[1:]:
        combined = combined | part if group.get("match", "all") == "any" else combined & part
    # Q() combined with x is x: an empty nested group would keep nobody more inside "any", so
    # validation refuses it (only the whole definition may be empty: everyone).
    return combined


class CountTooSlow(Exception):
    pass


SAMPLE_SIZE = 10


@contextmanager
def statement_budget(timeout_ms: int):
    """Run the queries inside within `timeout_ms` each; raises CountTooSlow past it. PostgreSQL:
    SET LOCAL statement_timeout in a transaction (savepoint) of its own, given back after;
    SQLite: a progress handler interrupts the statement."""
    if connection.vendor == "postgresql":
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT current_setting('statement_timeout'), set_config('statement_timeout', %s, true)",
                               [str(int(timeout_ms))])
                previous = cursor.fetchone()[0]
                yield
                # SET LOCAL lasts until the outermost transaction ends: give the caller's back.
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])
        except DatabaseError as error:
            if getattr(error.__cause__, "sqlstate", None) == "57014":  # query_canceled
                raise CountTooSlow from error
            raise
    elif connection.vendor == "sqlite":
        connection.ensure_connection()
        deadline = time.monotonic() + timeout_ms / 1000
        raw = connection.connection
        # Called every N virtual machine steps; a true answer interrupts the statement.
        raw.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
        try:
            yield
        except OperationalError as error:
            if "interrupted" in str(error):
                raise CountTooSlow from error
            raise
        finally:
            raw.set_progress_handler(None, 1000)
    else:
        yield


def count_within(queryset, timeout_ms: int) -> int:
    """queryset.count(), abandoned after `timeout_ms`: raises CountTooSlow."""
    with statement_budget(timeout_ms):
        return queryset.count()


@dataclass
class Preview:
    """What the segment page shows under the form for an unsaved definition."""

    problems: list[str]
    count: int | None = None
    sample: list[Contact] = field(default_factory=list)
    too_slow: bool = False


def preview(definition, now=None, *, timeout_ms: int) -> Preview:
    """Count the contacts `definition` keeps and pick a sample of them, each query under the
    statement timeout; or say what is wrong with it, or that it was too slow to count."""
    now = now or timezone.now()
    types = declared_types(definition)
    problems = definition_problems(definition, types)
    if problems:
        return Preview(problems)
    members = compile(definition, now, types)
    try:
        with statement_budget(timeout_ms):
            count = members.count()
            sample = list(members.order_by("-pk")[:SAMPLE_SIZE]) if count else []
    except CountTooSlow:
        return Preview([], too_slow=True)
    return Preview([], count, sample)


# ---------------------------------------------------------------- contacts' own kinds


def _problems_of_condition(raw, data_type, field_name) -> list[str]:
    try:
        parse_condition(raw, data_type, field_name)
    except ConditionError as error:
        return error.problems
    return []


def _attribute_problems(config, path):
    if not isinstance(config.get("attribute"), str) or not config["attribute"].strip():
        return [f"{path}.attribute must name an attribute"]
    return _problems_of_condition(config, config.get("data_type"), path)


def _attribute_q(config, now):
    condition = parse_condition(config, config.get("data_type"))
    return condition_q(f"attributes__{config['attribute']}", condition, now)


register(FilterKind(
    name="attribute", label="Attribute", typed=True, order=10,
    fields=[FormField("attribute", "Attribute", "attribute_condition")],
    validate=_attribute_problems, to_q=_attribute_q,
))


def _stage_choices():
    return [(key, key.replace("_", " ").capitalize()) for key in lifecycle_stage_keys()]


def _stage_problems(config, path):
    stages = config.get("stages")
    if not isinstance(stages, list) or not stages:
        return [f"{path}.stages must list at least one lifecycle stage"]
    known = set(lifecycle_stage_keys())
    unknown = [s for s in stages if s not in known]
    return [f"{path}.stages holds unknown lifecycle stages: {', '.join(map(str, unknown))}"] if unknown else []


register(FilterKind(
    name="lifecycle_stage", label="Lifecycle stage", order=20,
    fields=[FormField("stages", "Is one of", "multiselect", choices=_stage_choices)],
    validate=_stage_problems, to_q=lambda config, now: Q(lifecycle_stage__in=config["stages"]),
))

COUNT_OPERATORS = ("at_least", "at_most")


def _whole(value, minimum=0):
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= minimum else None


def _event_problems(config, path):
    problems = []
    if not isinstance(config.get("event"), str) or not config["event"].strip():
        problems.append(f"{path}.event must name an event")
    if not isinstance(config.get("did", True), bool):
        problems.append(f"{path}.did must be true or false")
    if config.get("count_operator", "at_least") not in COUNT_OPERATORS:
        problems.append(f"{path}.count_operator must be at_least or at_most")
    at_least = config.get("count_operator", "at_least") == "at_least"
    # "At least 0 times" would read as at least once (an Exists): ask for 1 or more.
    if _whole(config.get("count", 1), 1 if at_least else 0) is None:
        problems.append(f"{path}.count must be a whole number" + (", 1 or more" if at_least else ""))
    if config.get("within_days") not in (None, "") and _whole(config["within_days"], 1) is None:
        problems.append(f"{path}.within_days must be a whole number of days, 1 or more")
    for bound in ("from", "to"):
        if config.get(bound) not in (None, "") and _date(config[bound]) is None:
            problems.append(f"{path}.{bound} must be a date (YYYY-MM-DD)")
    if config.get("within_days") not in (None, "") and (config.get("from") or config.get("to")):
        problems.append(f"{path}.within_days cannot be combined with from and to")
    if not problems and config.get("from") and config.get("to") and _date(config["to"]) < _date(config["from"]):
        problems.append(f"{path}.to must not be before {path}.from")
    conditions = config.get("conditions", [])
    if not isinstance(conditions, list):
        return problems + [f"{path}.conditions must be a list"]
    for i, condition in enumerate(conditions):
        where = f"{path}.conditions[{i}]"
        if not isinstance(condition, dict) or not isinstance(condition.get("property"), str) or not condition["property"]:
            problems.append(f"{where}.property must name a property")
            continue
        problems.extend(_problems_of_condition(condition, condition.get("data_type"), where))
    return problems


def _date(value):
    try:
        return parse_date(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _event_q(config, now):
    events = ContactEvent.objects.filter(name=config["event"])
    if config.get("within_days") not in (None, ""):
        events = events.filter(occurred_at__gte=now - dt.timedelta(days=_whole(config["within_days"], 1)),
                               occurred_at__lte=now)
    if config.get("from"):
        events = events.filter(occurred_at__gte=dt.datetime.combine(_date(config["from"]), dt.time(), dt.timezone.utc))
    if config.get("to"):
        events = events.filter(occurred_at__lt=dt.datetime.combine(_date(config["to"]) + dt.timedelta(days=1), dt.time(),
                                                                   dt.timezone.utc))
    for condition in config.get("conditions", []):
        parsed = parse_condition(condition, condition.get("data_type"))
        events = events.filter(condition_q(f"properties__{condition['property']}", parsed, now))
    count = _whole(config.get("count", 1))
    at_most = config.get("count_operator", "at_least") == "at_most"
    if not at_most and count <= 1:
        q = Exists(events.filter(contact=OuterRef("pk")))
    else:
        # The contacts with enough (at least N, or more than N for "at most") such events, as
        # one grouped set; "at most N" keeps everyone else, those with none included.
        counted = events.values("contact").annotate(n=Count("contact"))
        q = Q(pk__in=(counted.filter(n__gte=count) if not at_most else counted.filter(n__gt=count)).values("contact"))
        q = ~q if at_most else q
    return q if config.get("did", True) else ~q


register(FilterKind(
    name="event", label="Event", typed=True, order=30,
    fields=[
        FormField("did", "Did or did not", "select", choices=[("true", "did"), ("false", "did not")]),
        FormField("event", "Event", "text", help="The event name, e.g. order.placed."),
        FormField("count_operator", "How often", "select", choices=[("at_least", "at least"), ("at_most", "at most")],
                  required=False),
        FormField("count", "Times", "number", required=False),
        FormField("within_days", "In the last N days", "number", required=False, help="Empty: ever."),
        FormField("from", "From", "date", required=False),
        FormField("to", "To", "date", required=False),
        FormField("conditions", "Where", "property_conditions", required=False),
    ],
    validate=_event_problems, to_q=_event_q,
))
