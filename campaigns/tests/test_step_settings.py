"""Each kind of step is configured through JSON in the step inline until "Journeys II" brings a
form per kind: every bad setting is refused naming `config.<name>`, publishing checks what
depends on other steps and on declared types, loops without a wait are refused, and a version's
page describes each step in words."""
import pytest
from django.core.exceptions import ValidationError

from campaigns.actions import activate_journey, loops_without_wait
from campaigns.admin import describe_step
from campaigns.models import JourneyStatus, JourneyStep, StepKind

from .conftest import make_journey

pytestmark = pytest.mark.django_db


@pytest.fixture
def journey():
    return make_journey(name="Kinds", slug="kinds", trigger_event="signed_up")


BAD_CONFIGS = [
    # (kind, config, the setting the refusal names)
    (StepKind.WAIT_UNTIL, {}, "config.time"),
    (StepKind.WAIT_UNTIL, {"time": "9am"}, "config.time"),
    (StepKind.WAIT_UNTIL, {"time": "24:00"}, "config.time"),
    (StepKind.WAIT_UNTIL, {"time": "09:00", "days": ["monday"]}, "config.days"),
    (StepKind.WAIT_UNTIL, {"time": "09:00", "zone": "UTC"}, "config.zone"),
    (StepKind.WAIT_DATE, {}, "config.attribute or config.property"),
    (StepKind.WAIT_DATE, {"attribute": "a", "property": "b"}, "config.attribute or config.property"),
    (StepKind.WAIT_DATE, {"attribute": ""}, "config.attribute"),
    (StepKind.WAIT_DATE, {"attribute": "appointment_at", "offset_seconds": "-1d"}, "config.offset_seconds"),
    (StepKind.WAIT_EVENT, {"event": "purchased"}, "config.timeout_seconds"),
    (StepKind.WAIT_EVENT, {"event": "purchased", "timeout_seconds": 0}, "config.timeout_seconds"),
    (StepKind.WAIT_EVENT, {"timeout_seconds": 60}, "config.event or config.engagement"),
    (StepKind.WAIT_EVENT, {"engagement": "seen", "step": "welcome", "timeout_seconds": 60}, "config.engagement"),
    (StepKind.WAIT_EVENT, {"engagement": "opened", "timeout_seconds": 60}, "config.step"),
    (StepKind.WAIT_EVENT, {"event": "x", "step": "welcome", "timeout_seconds": 60}, "config.step"),
    (StepKind.CONDITION, {"check": "attribute", "name": "score", "operator": "above", "value": 1}, "config.operator"),
    (StepKind.CONDITION, {"check": "attribute", "name": "score", "equals": 1, "operator": "equals"},
     "config.equals"),
    (StepKind.CONDITION, {"check": "attribute", "name": "score", "type": "number", "operator": "equals"},
     "config.type"),
    (StepKind.CONDITION, {"check": "webhook", "step": "ask", "name": "n", "type": "number", "operator": "at_least",
                          "value": "x"}, "config.value"),
    (StepKind.CONDITION, {"check": "webhook", "step": "ask", "name": "n", "type": "money", "operator": "equals"},
     "config.type"),
    (StepKind.CONDITION, {"check": "event"}, "config.name"),
    (StepKind.CONDITION, {"check": "event", "name": "bought", "within_days": -1}, "config.within_days"),
    (StepKind.CONDITION, {"check": "clicked"}, "config.step"),
    (StepKind.CONDITION, {"check": "webhook", "name": "decision", "equals": "yes"}, "config.step"),
    (StepKind.SPLIT, {"paths": [{"name": "A", "weight": 1}]}, "config.paths"),
    (StepKind.SPLIT, {"paths": [{"name": "A", "weight": 1}, {"name": "A", "weight": 1}]}, "config.paths[1].name"),
    (StepKind.SPLIT, {"paths": [{"name": "A", "weight": 0}, {"name": "B", "weight": 1}]}, "config.paths[0].weight"),
    (StepKind.SPLIT, {"paths": [{"name": "A", "weight": 1, "to": "x"}, {"name": "B", "weight": 1}]},
     "config.paths[0].to"),
    (StepKind.UPDATE, {}, "config.attribute (with config.value) or config.lifecycle_stage"),
    (StepKind.UPDATE, {"attribute": "plan"}, "config.value"),
    (StepKind.UPDATE, {"lifecycle_stage": ""}, "config.lifecycle_stage"),
    (StepKind.WEBHOOK, {"timeout_seconds": 60}, "config.endpoint"),
    (StepKind.WEBHOOK, {"endpoint": "CRM"}, "config.timeout_seconds"),
    (StepKind.WEBHOOK, {"endpoint": "CRM", "timeout_seconds": 60, "data": [1]}, "config.data"),
]


@pytest.mark.parametrize("kind, config, named", BAD_CONFIGS)
def test_the_step_form_refuses_a_bad_config_naming_the_setting(journey, kind, config, named):
    step = JourneyStep(journey=journey, position=1, key="bad", kind=kind, config=config)

    with pytest.raises(ValidationError) as refused:
        step.full_clean()

    messages = refused.value.message_dict["config"]
    assert any(message.startswith(named) or f" {named} " in f" {message} " for message in messages), messages


GOOD_CONFIGS = [
    (StepKind.WAIT_UNTIL, {"time": "09:00", "days": ["mon", "fri"]}),
    (StepKind.WAIT_DATE, {"property": "appointment_at", "offset_seconds": -86400}),
    (StepKind.WAIT_EVENT, {"event": "purchased", "timeout_seconds": 3600}),
    (StepKind.CONDITION, {"check": "attribute", "name": "score", "operator": "at_least", "value": 10}),
    (StepKind.CONDITION, {"check": "webhook", "step": "ask", "name": "decision", "operator": "equals",
                          "value": "yes"}),
    (StepKind.CONDITION, {"check": "event", "name": "purchased", "within_days": 7}),
    (StepKind.SPLIT, {"paths": [{"name": "A", "weight": 1, "step": "x"}, {"name": "B", "weight": 3}]}),
    (StepKind.UPDATE, {"lifecycle_stage": "customer"}),
    (StepKind.UPDATE, {"attribute": "tags", "value": ["vip"]}),
    (StepKind.WEBHOOK, {"endpoint": "CRM", "timeout_seconds": 600, "data": {"offer": "spring"}}),
]


@pytest.mark.parametrize("kind, config", GOOD_CONFIGS)
def test_the_step_form_accepts_each_kinds_settings(journey, kind, config):
    JourneyStep(journey=journey, position=1, key="good", kind=kind, config=config).full_clean()


def add(journey, position, key, kind, config=None, **fields):
    return JourneyStep.objects.create(journey=journey, position=position, key=key, kind=kind, config=config or {},
                                      **fields)


def refusal(journey) -> str:
    with pytest.raises(ValidationError) as refused:
        activate_journey(journey)
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.DRAFT
    return " ".join(refused.value.messages)


def test_publishing_refuses_steps_that_name_missing_or_wrong_steps(journey, welcome_templates):
    add(journey, 1, "pause", StepKind.WAIT, {"seconds": 60})
    add(journey, 2, "await", StepKind.WAIT_EVENT, {"engagement": "opened", "step": "pause", "timeout_seconds": 60})
    add(journey, 3, "clicked", StepKind.CONDITION, {"check": "clicked", "step": "welcome"})
    add(journey, 4, "ab", StepKind.SPLIT, {"paths": [{"name": "A", "weight": 1, "step": "nowhere"},
                                                     {"name": "B", "weight": 1}]})
    add(journey, 5, "done", StepKind.EXIT)

    message = refusal(journey)

    assert "Wait step 'await' checks step 'pause', which sends no message." in message
    assert "Condition step 'clicked' checks step 'welcome', which is not a step of this journey." in message
    assert "Split step 'ab' sends path 'A' to 'nowhere', which is not a step of this journey." in message


def test_publishing_refuses_a_date_wait_on_an_attribute_declared_as_no_date(journey):
    from contacts.models import AttributeDefinition

    AttributeDefinition.objects.create(name="appointment_at", data_type="number")
    add(journey, 1, "day-before", StepKind.WAIT_DATE, {"attribute": "appointment_at"})

    assert "Wait step 'day-before': config.attribute 'appointment_at' is declared a number, not a date." in \
        refusal(journey)


def steps_of(*specs):
    """Snapshot step rows from (key, kind, config, next, else)."""
    return [{"key": key, "kind": kind, "config": config, "next": following, "else": otherwise}
            for key, kind, config, following, otherwise in specs]


@pytest.mark.parametrize("looping", [
    # a split whose path goes back
    steps_of(("tag", StepKind.UPDATE, {}, None, None),
             ("ab", StepKind.SPLIT, {"paths": [{"name": "A", "weight": 1, "step": "tag"}, {"name": "B", "weight": 1}]},
              None, None)),
    # a date already past does not wait
    steps_of(("day-before", StepKind.WAIT_DATE, {"attribute": "x"}, None, None),
             ("again", StepKind.CONDITION, {"check": "attribute", "name": "x", "equals": 1}, "day-before", None)),
    # nor an engagement that already happened
    steps_of(("await", StepKind.WAIT_EVENT, {"engagement": "opened", "step": "s", "timeout_seconds": 60}, None, None),
             ("tag", StepKind.UPDATE, {}, "await", None)),
])
def test_a_loop_through_steps_that_may_not_wait_is_found(looping):
    assert loops_without_wait(looping)


@pytest.mark.parametrize("waiting", [
    steps_of(("morning", StepKind.WAIT_UNTIL, {"time": "09:00"}, None, None), ("tag", StepKind.UPDATE, {}, "morning", None)),
    steps_of(("await", StepKind.WAIT_EVENT, {"event": "x", "timeout_seconds": 60}, None, None),
             ("tag", StepKind.UPDATE, {}, "await", None)),
])
def test_a_loop_through_a_wait_for_a_time_or_an_event_is_allowed(waiting):
    assert loops_without_wait(waiting) == []


@pytest.mark.parametrize("step, words", [
    ({"key": "m", "kind": "wait_until", "config": {"time": "09:00", "days": ["mon"]}},
     "m: wait until 09:00 on mon, contact's time"),
    ({"key": "d", "kind": "wait_date", "config": {"attribute": "appointment_at", "offset_seconds": -86400},
      "else": "skip"}, "d: wait until 1 day before attribute appointment_at (without it, go to skip)"),
    ({"key": "w", "kind": "wait_event", "config": {"engagement": "opened", "step": "welcome", "timeout_seconds": 60}},
     "w: wait for opened of welcome, at most 1 minute, then go to the next step"),
    ({"key": "c", "kind": "condition", "config": {"check": "attribute", "name": "score", "operator": "at_least",
                                                  "value": 10}, "else": "other"},
     "c: if attribute score at least 10, else go to other"),
    ({"key": "e", "kind": "condition", "config": {"check": "event", "name": "bought", "within_days": 7}},
     "e: if did bought in the last 7 days, else go to the end"),
    ({"key": "s", "kind": "split", "config": {"paths": [{"name": "A", "weight": 1, "step": "x"},
                                                       {"name": "B", "weight": 3}]}},
     "s: split A 25% → x, B 75% → next"),
    ({"key": "u", "kind": "update", "config": {"lifecycle_stage": "customer"}}, "u: set lifecycle stage to customer"),
    ({"key": "u", "kind": "update", "config": {"attribute": "plan", "value": "pro"}}, "u: set attribute plan to 'pro'"),
    ({"key": "ask", "kind": "webhook", "config": {"endpoint": "CRM", "timeout_seconds": 600}, "else": "other",
      "next": "is-vip"},
     "ask: call webhook CRM, wait at most 10 minutes for its answer; without one, go to other → is-vip"),
])
def test_a_version_describes_each_kind_of_step_in_words(step, words):
    assert describe_step(step) == words
