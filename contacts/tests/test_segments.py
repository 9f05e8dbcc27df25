"""contacts.segments: each of contacts' filter kinds, nesting, one query per count, refusals
naming the field, and the count under a statement timeout."""
import datetime as dt

import pytest

from contacts import segments
from contacts.models import AttributeDefinition, Contact, ContactEvent, DataType, EventPropertyDefinition
from contacts.segments import CountTooSlow, InvalidDefinition, compile, count_within, definition_problems

NOW = dt.datetime(2026, 3, 15, 12, 0, tzinfo=dt.timezone.utc)


def _event(contact, name, days_ago=1, **properties):
    ContactEvent.objects.create(contact=contact, name=name, properties=properties,
                                occurred_at=NOW - dt.timedelta(days=days_ago),
                                idempotency_key=f"{contact.pk}-{name}-{ContactEvent.objects.count()}")


def _members(definition):
    return set(compile(definition, NOW).values_list("external_id", flat=True))


@pytest.fixture
def people(db):
    """Ann (customer, score 80, bought twice recently), Bob (trial, score 20, bought 40 days ago),
    Cy (lead, score "80" as text, never bought) and an erased customer."""
    AttributeDefinition.objects.create(name="score", data_type=DataType.NUMBER)
    EventPropertyDefinition.objects.create(event="order.placed", name="amount", data_type=DataType.NUMBER)
    ann = Contact.objects.create(external_id="ann", lifecycle_stage="customer", attributes={"score": 80, "plan": "pro"})
    bob = Contact.objects.create(external_id="bob", lifecycle_stage="trial", attributes={"score": 20})
    Contact.objects.create(external_id="cy", lifecycle_stage="lead", attributes={"score": "80", "plan": "Pro"})
    gone = Contact.objects.create(external_id="gone", lifecycle_stage="customer", attributes={"score": 99},
                                  erased_at=NOW)
    _event(ann, "order.placed", 2, amount=150)
    _event(ann, "order.placed", 5, amount=20)
    _event(bob, "order.placed", 40, amount=500)
    _event(gone, "order.placed", 1, amount=500)
    return {"ann": ann, "bob": bob}


def test_an_attribute_is_compared_with_its_declared_type(people):
    # score is a number: Cy's text "80" is not 80
    assert _members({"filters": [{"kind": "attribute", "attribute": "score", "operator": "at_least",
                                  "value": 50}]}) == {"ann"}
    # plan is undeclared: compared as text, exactly
    assert _members({"filters": [{"kind": "attribute", "attribute": "plan", "operator": "equals",
                                  "value": "pro"}]}) == {"ann"}


def test_a_lifecycle_stage_filter_keeps_the_stages_listed(people):
    assert _members({"filters": [{"kind": "lifecycle_stage", "stages": ["trial", "lead"]}]}) == {"bob", "cy"}


@pytest.mark.parametrize("event_filter, expected", [
    ({}, {"ann", "bob"}),
    ({"within_days": 30}, {"ann"}),
    ({"did": False, "within_days": 30}, {"bob", "cy"}),
    ({"count_operator": "at_least", "count": 2}, {"ann"}),
    ({"count_operator": "at_most", "count": 1}, {"bob", "cy"}),
    ({"count_operator": "at_most", "count": 0}, {"cy"}),
    ({"from": "2026-02-01", "to": "2026-02-04"}, {"bob"}),
    ({"from": "2026-03-10"}, {"ann"}),
    ({"conditions": [{"property": "amount", "operator": "greater_than", "value": 100}]}, {"ann", "bob"}),
    ({"conditions": [{"property": "amount", "operator": "greater_than", "value": 100}], "count": 2}, set()),
    ({"conditions": [{"property": "amount", "operator": "at_most", "value": 100}], "within_days": 30}, {"ann"}),
])
def test_an_event_filter_counts_when_how_often_and_with_which_properties(people, event_filter, expected):
    assert _members({"filters": [{"kind": "event", "event": "order.placed", **event_filter}]}) == expected


def test_all_and_any_nest(people):
    # given customers with a high score, or anyone who did not buy in the last 30 days
    definition = {"match": "any", "filters": [
        {"match": "all", "filters": [
            {"kind": "lifecycle_stage", "stages": ["customer"]},
            {"kind": "attribute", "attribute": "score", "operator": "greater_than", "value": 50},
        ]},
        {"kind": "event", "event": "order.placed", "within_days": 30, "did": False},
    ]}

    assert _members(definition) == {"ann", "bob", "cy"}
    assert _members({**definition, "match": "all"}) == set()
    # an empty group keeps every reachable contact
    assert _members({"match": "any", "filters": []}) == {"ann", "bob", "cy"}


def test_a_segment_is_counted_in_one_query_its_declared_types_loaded_in_one(people, django_assert_num_queries):
    definition = {"filters": [
        {"kind": "attribute", "attribute": "score", "operator": "at_least", "value": 50},
        {"kind": "lifecycle_stage", "stages": ["customer"]},
        {"kind": "event", "event": "order.placed", "within_days": 30,
         "conditions": [{"property": "amount", "operator": "greater_than", "value": 100}]},
        {"match": "any", "filters": [{"kind": "event", "event": "order.placed", "count": 2},
                                     {"kind": "attribute", "attribute": "plan", "operator": "is_set"}]},
    ]}
    with django_assert_num_queries(1):
        types = segments.declared_types(definition)
    members = compile(definition, NOW, types)

    with django_assert_num_queries(1):
        assert members.count() == 1


@pytest.mark.parametrize("definition, problem", [
    ({"filters": [{"kind": "attribute", "attribute": "score", "operator": "at_least", "value": "high"}]},
     "filters[0].value must be a number"),
    ({"filters": [{"kind": "attribute", "attribute": "score", "operator": "contains", "value": 1}]},
     "filters[0].operator must be one of"),
    ({"filters": [{"kind": "attribute", "operator": "is_set"}]}, "filters[0].attribute must name an attribute"),
    ({"filters": [{"kind": "lifecycle_stage", "stages": ["vip"]}]},
     "filters[0].stages holds unknown lifecycle stages: vip"),
    ({"filters": [{"kind": "nope"}]}, "filters[0].kind must be one of"),
    ({"match": "most", "filters": []}, "definition.match must be all or any"),
    ({"filters": [{"match": "any", "filters": [{"kind": "event", "event": "order.placed", "within_days": 0}]}]},
     "filters[0].filters[0].within_days must be a whole number of days, 1 or more"),
    ({"filters": [{"kind": "event", "event": "order.placed",
                   "conditions": [{"property": "amount", "operator": "at_least", "value": "lots"}]}]},
     "filters[0].conditions[0].value must be a number"),
    ({"filters": [{"kind": "event", "event": "order.placed", "from": "2026-03-02", "to": "2026-03-01"}]},
     "filters[0].to must not be before filters[0].from"),
    ({"filters": [{"kind": "event", "event": ""}]}, "filters[0].event must name an event"),
])
def test_a_bad_definition_is_refused_naming_the_field(people, definition, problem):
    problems = definition_problems(definition)

    assert any(p.startswith(problem) for p in problems), problems
    with pytest.raises(InvalidDefinition):
        compile(definition, NOW)


# Counts to ten million before finding nothing: seconds on either database.
SLOW_CONDITION = ("EXISTS (WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 10000000) "
                  "SELECT 1 FROM c WHERE n = -1)")


def test_a_count_that_runs_too_long_is_abandoned(people):
    # given a query far slower than the budget
    heavy = Contact.objects.extra(where=[SLOW_CONDITION])

    # when it is counted within 50 ms, then it is given up
    with pytest.raises(CountTooSlow):
        count_within(heavy, 50)
    # and a quick count still answers, and the budget did not outlive its count
    assert count_within(Contact.objects.filter(external_id="ann"), 5000) == 1
    assert Contact.objects.filter(external_id__in=["ann", "bob"]).extra(where=["1 = 1"]).count() == 2
