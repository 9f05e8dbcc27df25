"""Conditions an event trigger puts on its event's properties: all must hold for the event to enroll.

A journey keeps them as [{"property": "amount", "operator": "gte", "value": 100}, ...]. Journeys
(and published versions, which never change) saved before typed conditions hold {"plan": "pro"},
which reads as [{"property": "plan", "operator": "eq", "value": "pro"}].
"""

OLD_SHAPE_OPERATOR = "eq"


def conditions_of(raw) -> list[dict]:
    """The conditions as a list, whichever shape they were saved in."""
    if isinstance(raw, dict):
        return [{"property": name, "operator": OLD_SHAPE_OPERATOR, "value": value} for name, value in raw.items()]
    return list(raw or [])


def condition_problems(raw, event_name: str) -> list[str]:
    """What is wrong with a trigger's conditions, each naming the condition and its setting."""
    if not isinstance(raw, (dict, list)):
        return ['The trigger conditions must be a list such as [{"property": "plan", "operator": "eq", '
                '"value": "pro"}].']
    problems = []
    for index, condition in enumerate(conditions_of(raw)):
        where = f"trigger_conditions[{index}]"
        if not isinstance(condition, dict):
            problems.append(f"{where} must be an object with property, operator and value.")
            continue
        if not isinstance(condition.get("property"), str) or not condition["property"]:
            problems.append(f"{where}.property must name a property of the event {event_name!r}.")
        if condition.get("operator") != OLD_SHAPE_OPERATOR:
            problems.append(f"{where}.operator must be eq, not {condition.get('operator')!r}.")
    return problems


def event_matches(raw, properties: dict) -> bool:
    """Whether an event's properties meet every condition."""
    properties = properties or {}
    return all(properties.get(c["property"]) == c.get("value") for c in conditions_of(raw))
