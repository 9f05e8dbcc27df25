"""Typed conditions: each operator of each type, in SQL (condition_q over Contact.attributes)
and on one Python value (matches), with the same answer for the same values."""
import datetime as dt

import pytest

from contacts.conditions import ConditionError, condition_problems, condition_q, matches, parse_condition
from contacts.models import Contact, DataType

NOW = dt.datetime(2026, 3, 15, 12, 0, tzinfo=dt.timezone.utc)
MISSING = object()

# (type, condition, values that match, values that do not). MISSING: the key is absent.
CASES = [
    (DataType.TEXT, {"operator": "equals", "value": "pro"}, ["pro"], ["Pro", "prof", None, MISSING, 5]),
    (DataType.TEXT, {"operator": "not_equals", "value": "pro"}, ["Pro", None, MISSING, 5], ["pro"]),
    (DataType.TEXT, {"operator": "contains", "value": "RO"}, ["pro", "Brown"], ["p-r-o", MISSING]),
    (DataType.TEXT, {"operator": "starts_with", "value": "pr"}, ["Pro", "premium"], ["a pro", MISSING]),
    (DataType.TEXT, {"operator": "is_set"}, ["", "x", 0, False], [None, MISSING]),
    (DataType.TEXT, {"operator": "is_not_set"}, [None, MISSING], ["", "x"]),
    (DataType.TEXT, {"operator": "equals", "value": "5"}, [5, "5"], [5.5, "five"]),
    (DataType.TEXT, {"operator": "equals", "value": "true"}, [True, "true"], [False]),
    (DataType.NUMBER, {"operator": "equals", "value": 5}, [5, 5.0], [6, "5", True, MISSING]),
    (DataType.NUMBER, {"operator": "not_equals", "value": 5}, [6, "5", MISSING, None], [5, 5.0]),
    (DataType.NUMBER, {"operator": "less_than", "value": 5}, [4.9, -3], [5, 6, "1", MISSING]),
    (DataType.NUMBER, {"operator": "at_most", "value": 5}, [5, 4], [5.01, MISSING]),
    (DataType.NUMBER, {"operator": "greater_than", "value": "5"}, [5.5, 100], [5, "10", MISSING]),
    (DataType.NUMBER, {"operator": "at_least", "value": 5}, [5, 6], [4.99, None]),
    (DataType.NUMBER, {"operator": "between", "value": 1, "value_to": 3}, [1, 2.5, 3], [0.9, 3.1, MISSING]),
    (DataType.BOOLEAN, {"operator": "is_true"}, [True], [False, "true", 1, MISSING]),
    (DataType.BOOLEAN, {"operator": "is_false"}, [False], [True, "false", 0, MISSING]),
    (DataType.BOOLEAN, {"operator": "is_not_set"}, [MISSING, None], [False]),
    (DataType.DATE, {"operator": "before", "value": "2026-03-01"}, ["2026-02-28", "2025-12-31T23:00:00Z"],
     ["2026-03-01", "2026-03-02", "soon", 20260101, MISSING]),
    (DataType.DATE, {"operator": "after", "value": "2026-03-01"}, ["2026-03-02"], ["2026-03-01", "zzz", MISSING]),
    (DataType.DATE, {"operator": "on", "value": "2026-03-01"}, ["2026-03-01"], ["2026-03-02", MISSING]),
    (DataType.DATE, {"operator": "within_last_days", "value": 7}, ["2026-03-08", "2026-03-15"],
     ["2026-03-07", "2026-03-16", MISSING]),
    (DataType.DATE, {"operator": "more_than_days_ago", "value": 7}, ["2026-03-07", "2020-01-01"],
     ["2026-03-08", MISSING]),
    (DataType.DATE, {"operator": "between", "value": "2026-01-01", "value_to": "2026-01-31"},
     ["2026-01-01", "2026-01-31"], ["2025-12-31", "2026-02-01"]),
    (DataType.DATETIME, {"operator": "before", "value": "2026-03-01T10:00:00+02:00"},
     ["2026-03-01T07:59:59Z", "2026-03-01T09:59:00+02:00"], ["2026-03-01T08:00:00Z", "2026-03-01T09:00:00+00:00",
                                                            "not a date", "2026-13-45T00:00:00Z", MISSING]),
    (DataType.DATETIME, {"operator": "after", "value": "2026-03-01"}, ["2026-03-01T00:00:01Z"],
     ["2026-03-01T00:00:00Z", "2026-02-28T21:00:00-02:00", MISSING]),
    (DataType.DATETIME, {"operator": "on", "value": "2026-03-01"}, ["2026-03-01T23:59:59Z", "2026-03-02T01:00:00+02:00"],
     ["2026-03-02T00:00:00Z", "2026-03-01T23:00:00-02:00"]),
    (DataType.DATETIME, {"operator": "within_last_days", "value": 1}, ["2026-03-14T12:00:00Z", "2026-03-15T11:00:00Z"],
     ["2026-03-14T11:59:59Z", "2026-03-15T12:00:01Z", MISSING]),
    (DataType.DATETIME, {"operator": "more_than_days_ago", "value": 1}, ["2026-03-14T11:59:59Z"],
     ["2026-03-14T12:00:00Z", MISSING]),
    (DataType.DATETIME, {"operator": "between", "value": "2026-03-01T00:00:00Z", "value_to": "2026-03-02"},
     ["2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"], ["2026-03-02T00:00:01Z"]),
    (DataType.LIST, {"operator": "contains", "value": "vip"}, [["vip", "new"], ["vip"]],
     [["VIP"], [], "vip", MISSING, None]),
    (DataType.LIST, {"operator": "contains", "value": "3"}, [[1, 3], ["3"]], [[33]]),
    (DataType.LIST, {"operator": "not_contains", "value": "vip"}, [["new"], [], MISSING, "vip"], [["vip", "x"]]),
]


def _contact(value):
    return Contact.objects.create(attributes={} if value is MISSING else {"k": value})


@pytest.mark.parametrize("data_type, raw, matching, other", CASES,
                         ids=[f"{c[0]}-{c[1]['operator']}-{i}" for i, c in enumerate(CASES)])
def test_an_operator_keeps_the_same_contacts_in_sql_and_in_python(db, data_type, raw, matching, other):
    # given a contact per value and a condition on its "k" attribute
    condition = parse_condition(raw, data_type)
    kept = [_contact(v) for v in matching]
    for value in other:
        _contact(value)

    # when the condition filters them in SQL, and is evaluated on each value in Python
    found = set(Contact.objects.filter(condition_q("attributes__k", condition, NOW)).values_list("pk", flat=True))

    # then both keep exactly the matching ones
    assert found == {c.pk for c in kept}
    for value in matching:
        assert matches(condition, None if value is MISSING else value, NOW), value
    for value in other:
        assert not matches(condition, None if value is MISSING else value, NOW), value


@pytest.mark.parametrize("data_type, raw, problem", [
    (DataType.NUMBER, {"operator": "equals", "value": "lots"}, "conditions[0].value must be a number"),
    (DataType.NUMBER, {"operator": "between", "value": 1}, "conditions[0].value_to must be a number"),
    (DataType.NUMBER, {"operator": "between", "value": 3, "value_to": 1},
     "conditions[0].value_to must not be before conditions[0].value"),
    (DataType.NUMBER, {"operator": "contains", "value": 1}, "conditions[0].operator must be one of equals"),
    (DataType.DATE, {"operator": "before", "value": "March"}, "conditions[0].value must be a date (YYYY-MM-DD)"),
    (DataType.DATE, {"operator": "within_last_days", "value": 0},
     "conditions[0].value must be a whole number of days"),
    (DataType.DATETIME, {"operator": "after", "value": "tomorrow"}, "conditions[0].value must be a date and time"),
    (DataType.TEXT, {"operator": "equals", "value": ""}, "conditions[0].value must be a text"),
    (DataType.TEXT, "equals pro", "conditions[0] must be an object with an operator"),
    (DataType.BOOLEAN, {"operator": "equals", "value": True}, "conditions[0].operator must be one of is_true"),
])
def test_a_bad_condition_is_refused_naming_the_field(data_type, raw, problem):
    problems = condition_problems(raw, data_type, "conditions[0]")

    assert len(problems) == 1 and problems[0].startswith(problem), problems
    with pytest.raises(ConditionError):
        parse_condition(raw, data_type, "conditions[0]")


def test_an_undeclared_key_is_compared_as_text(db):
    condition = parse_condition({"operator": "equals", "value": "10"}, None)

    assert condition.data_type == DataType.TEXT
    assert matches(condition, 10) and not matches(condition, 10.5)


def test_a_condition_reaches_a_key_across_a_relation(db):
    # given two contacts, one with an event whose amount is large
    from contacts.models import ContactEvent
    big, small = Contact.objects.create(), Contact.objects.create()
    ContactEvent.objects.create(contact=big, name="order", properties={"amount": 120}, idempotency_key="1")
    ContactEvent.objects.create(contact=small, name="order", properties={"amount": 12}, idempotency_key="2")
    condition = parse_condition({"operator": "greater_than", "value": 100}, DataType.NUMBER)

    # when contacts are filtered on their events' amount
    found = Contact.objects.filter(condition_q("events__properties__amount", condition, NOW))

    # then only the big spender is kept
    assert list(found) == [big]
