"""Edges of segments a marketer meets: empty nested groups, "at least 0 times", instants with
fractions of a second on both databases."""
import datetime as dt

import pytest

from contacts import segments
from contacts.models import AttributeDefinition, Contact, DataType
from contacts.segments import compile, definition_problems

NOW = dt.datetime(2026, 3, 15, 12, 0, tzinfo=dt.timezone.utc)
PRO = {"kind": "attribute", "attribute": "plan", "operator": "equals", "value": "pro"}


def _members(definition):
    return set(compile(definition, NOW).values_list("external_id", flat=True))


@pytest.fixture
def people(db):
    AttributeDefinition.objects.create(name="seen", data_type=DataType.DATETIME)
    Contact.objects.create(external_id="ann", attributes={"plan": "pro", "seen": "2026-03-01T10:00:00.500Z"})
    Contact.objects.create(external_id="bob", attributes={"plan": "basic", "seen": "2026-03-01T10:00:01Z"})


@pytest.mark.parametrize("match", ["any", "all"])
def test_an_empty_nested_group_is_refused_naming_it(people, match):
    # The form's "Add a group" adds {"match": "any", "filters": []}: inside "any" it added nobody
    # while the same group inside "all" kept everyone. Refused instead, so the count says why.
    definition = {"match": match, "filters": [PRO, {"match": "any", "filters": []}]}

    assert definition_problems(definition) == ["filters[1] is an empty group: add a filter to it or remove it"]
    assert segments.preview(definition, NOW, timeout_ms=3000).problems == definition_problems(definition)
    # the whole definition may still be empty: everyone
    assert _members({"match": "any", "filters": []}) == {"ann", "bob"}


def test_at_least_zero_times_is_refused_rather_than_read_as_at_least_once(people):
    # "did x at least 0 times" kept only who did it once or more; "at most 0" (never) still reads.
    assert definition_problems({"filters": [{"kind": "event", "event": "x", "count_operator": "at_least",
                                             "count": 0}]}) == ["filters[0].count must be a whole number, 1 or more"]
    assert _members({"filters": [{"kind": "event", "event": "x", "count_operator": "at_most",
                                  "count": 0}]}) == {"ann", "bob"}


@pytest.mark.parametrize("operator, value, expected", [
    ("after", "2026-03-01T10:00:00Z", {"bob"}),
    ("before", "2026-03-01T10:00:01Z", {"ann"}),
    ("between", "2026-03-01T10:00:00Z", {"ann"}),
])
def test_an_instant_with_fractions_of_a_second_compares_to_the_second_on_every_database(people, operator, value,
                                                                                         expected):
    # SQLite and matches() compare to the second; PostgreSQL kept the fraction, so "after 10:00:00"
    # held 10:00:00.5 there only.
    condition = {"kind": "attribute", "attribute": "seen", "operator": operator, "value": value}
    if operator == "between":
        condition["value_to"] = value
    assert _members({"filters": [condition]}) == expected
