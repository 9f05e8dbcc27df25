"""Conditions an event trigger puts on its event's properties: all must hold for the event to enroll.

A journey keeps them as a list, each a typed condition of contacts.conditions on one property:

    [{"property": "amount", "operator": "at_least", "value": 100},
     {"property": "plan", "operator": "equals", "value": "pro"}]

typed by the property's contacts.EventPropertyDefinition (undeclared: text). Journeys, and the
published versions that never change, saved before typed conditions hold {"plan": "pro"}
(properties.plan equals "pro"): read_conditions turns each pair into the same list, typed by
the definition or else by the value (true: is true; 100: the number 100; null: is not set; a
date property: on that day). A pair no typed operator can say (an object, a list compared
whole) keeps its old meaning, exact equality, so that no journey saved before stops enrolling.
"""
from dataclasses import dataclass

from django.utils import timezone

from contacts.conditions import Condition, ConditionError, matches, parse_condition
from contacts.data_types import definitions
from contacts.models import DataType

# The type an old {"name": value} pair compares as, when the property is not declared.
OLD_SHAPE_TYPES = ((bool, DataType.BOOLEAN), ((int, float), DataType.NUMBER))


def read_conditions(raw) -> list[dict]:
    """The conditions as a list of {"property", "operator", ...}, whichever shape they were saved in."""
    if isinstance(raw, dict):
        return [_from_old_shape(name, value) for name, value in raw.items()]
    return list(raw) if isinstance(raw, list) else []


def _from_old_shape(name: str, value) -> dict:
    # The value stays, for the exact equality an old pair falls back to (OldEquality).
    operator = "is_not_set" if value is None else ("is_true" if value else "is_false") if isinstance(value, bool) \
        else "equals"
    return {"property": name, "operator": operator, "value": value, "old_shape": True}


def _type_of(condition: dict, declared: dict[str, str]) -> str | None:
    name = condition.get("property")
    if name in declared:
        return declared[name]
    if condition.get("old_shape"):
        if condition["operator"] in ("is_true", "is_false"):
            return DataType.BOOLEAN
        for python_types, data_type in OLD_SHAPE_TYPES:
            if isinstance(condition.get("value"), python_types):
                return data_type
    return None


@dataclass(frozen=True)
class OldEquality:
    """An old {"name": value} pair no typed condition can say: the property equals the value exactly."""

    value: object


def compile_conditions(raw, declared: dict[str, str]) -> list[tuple[str, Condition | OldEquality]] | None:
    """The conditions as (property, contacts.conditions.Condition) pairs; None when one cannot be
    read (publishing refuses such a journey, naming it; a version that holds one enrolls nobody)."""
    compiled = []
    for condition in read_conditions(raw):
        if not isinstance(condition, dict) or not isinstance(condition.get("property"), str):
            return None
        data_type = _type_of(condition, declared)
        try:
            compiled.append((condition["property"], parse_condition(_typed_operator(condition, data_type), data_type)))
        except ConditionError:
            if not condition.get("old_shape"):
                return None
            compiled.append((condition["property"], OldEquality(condition.get("value"))))
    return compiled


def _typed_operator(condition: dict, data_type: str | None) -> dict:
    """An old pair's equality as its type says it: a date is "on" that day."""
    if condition.get("old_shape") and condition["operator"] == "equals" and data_type in (DataType.DATE,
                                                                                           DataType.DATETIME):
        return {**condition, "operator": "on"}
    return condition


def event_matches(compiled: list[tuple[str, Condition | OldEquality]] | None, properties: dict, now=None) -> bool:
    """Whether an event's properties meet every compiled condition."""
    if compiled is None:
        return False
    properties = properties or {}
    now = now or timezone.now()
    return all(properties.get(name) == condition.value if isinstance(condition, OldEquality)
               else matches(condition, properties.get(name), now)
               for name, condition in compiled)


def condition_problems(raw, event_name: str) -> list[str]:
    """What is wrong with a trigger's conditions, each naming the condition and its setting
    (trigger_conditions[0].value must be a number)."""
    if not isinstance(raw, (dict, list)):
        return ['The trigger conditions must be a list such as [{"property": "plan", "operator": "equals", '
                '"value": "pro"}].']
    declared = definitions().properties.get(event_name, {}) if raw else {}
    problems = []
    for index, condition in enumerate(read_conditions(raw)):
        field = f"trigger_conditions[{index}]"
        if not isinstance(condition, dict):
            problems.append(f"{field} must be an object with a property, an operator and a value.")
            continue
        if not isinstance(condition.get("property"), str) or not condition["property"]:
            problems.append(f"{field}.property must name a property of the event {event_name!r}.")
            continue
        if condition.get("old_shape"):
            continue  # it keeps its old meaning whatever its type (compile_conditions)
        try:
            parse_condition(condition, _type_of(condition, declared), field)
        except ConditionError as error:
            problems.extend(f"{problem}." for problem in error.problems)
    return problems
