"""The builder's draft edits (campaigns.drafts): every link kept as steps are added, moved and
removed, branch targets refused without a single next, stale pages refused, each edit audited."""
import pytest
from django.core.exceptions import ValidationError

from campaigns import drafts
from campaigns.actions import draft_snapshot, validate_journey
from campaigns.models import Journey, JourneyStep, StepKind, plan_steps
from omni import audit

pytestmark = pytest.mark.django_db

WAIT = {"config": {"seconds": 3600}}


def flow(journey) -> dict:
    """Each step's key -> (where it goes next, where its else goes, its split paths), as published."""
    snapshot = draft_snapshot(journey)
    planned = plan_steps(snapshot["steps"])
    return {key: (step.following, step.else_key,
                  tuple((p["name"], p.get("step")) for p in step.config.get("paths", [])))
            for key, step in planned.items()}


def order(journey) -> list[str]:
    return list(journey.steps.order_by("position").values_list("key", flat=True))


def rev(journey) -> int:
    journey.refresh_from_db(fields=["draft_revision"])
    return journey.draft_revision


def add(journey, kind=StepKind.WAIT, values=None, **where):
    return drafts.add_step(journey, revision=rev(journey), kind=kind, values=values or dict(WAIT), **where)


@pytest.fixture
def journey(db):
    return Journey.objects.create(name="Flow", slug="flow", trigger_event="signed_up")


def test_steps_added_one_after_another_are_linked_as_they_are_added(journey):
    first = add(journey)
    second = add(journey, after=first.key)
    # a step added between two is linked in between
    middle = add(journey, StepKind.UPDATE, {"config": {"attribute": "plan", "value": "pro"}}, after=first.key)

    assert [first.key, second.key] == ["wait", "wait-2"]
    assert order(journey) == ["wait", "update", "wait-2"]
    assert flow(journey) == {"wait": ("update", None, ()), "update": ("wait-2", None, ()),
                             "wait-2": (None, None, ())}
    assert middle.key == "update"
    # and a new first step leads to the old first
    add(journey, StepKind.EXIT, {"config": {}})
    assert order(journey)[0] == "exit" and flow(journey)["exit"][0] == "wait"


def test_steps_added_on_an_else_branch_and_a_split_path_take_that_branch_over(journey):
    check = add(journey, StepKind.CONDITION, {"config": {"check": "event", "name": "activated"}})
    after_yes = add(journey, after=check.key)
    on_no = add(journey, StepKind.UPDATE, {"config": {"lifecycle_stage": "lost"}}, after=check.key, branch="else")
    split = add(journey, StepKind.SPLIT, {"config": {"paths": [{"name": "A", "weight": 1}, {"name": "B", "weight": 1}]}},
                after=after_yes.key)
    on_b = add(journey, after=split.key, branch="path:B")

    links = flow(journey)
    assert links[check.key] == (after_yes.key, on_no.key, ())
    assert links[on_no.key][0] is None  # the condition's no branch ended the journey; so does its new step
    assert links[split.key] == (None, None, (("A", None), ("B", on_b.key)))
    assert links[on_b.key][0] is None


def test_moving_a_step_up_and_down_keeps_every_other_link(journey):
    a = add(journey)
    b = add(journey, StepKind.UPDATE, {"config": {"attribute": "plan", "value": "pro"}}, after=a.key)
    c = add(journey, StepKind.EXIT, {"config": {}}, after=b.key)

    drafts.move_step(journey, c, revision=rev(journey), direction="up")
    assert order(journey) == ["wait", "exit", "update"]
    assert flow(journey) == {"wait": ("exit", None, ()), "exit": ("update", None, ()), "update": (None, None, ())}

    drafts.move_step(journey, c, revision=rev(journey), direction="down")
    assert order(journey) == ["wait", "update", "exit"]
    assert flow(journey) == {"wait": ("update", None, ()), "update": ("exit", None, ()), "exit": (None, None, ())}

    # the first step moves down too: the journey then starts with the second
    drafts.move_step(journey, a, revision=rev(journey), direction="down")
    assert order(journey)[0] == "update" and flow(journey)["update"][0] == "wait"


def test_moving_the_first_step_up_is_refused(journey):
    a = add(journey)
    with pytest.raises(ValidationError, match="first of its path"):
        drafts.move_step(journey, a, revision=rev(journey), direction="up")


def test_removing_a_step_relinks_what_led_to_it_including_branches_splits_and_loops(journey):
    check = add(journey, StepKind.CONDITION, {"config": {"check": "event", "name": "activated"}})
    wait = add(journey, after=check.key)
    update = add(journey, StepKind.UPDATE, {"config": {"attribute": "plan", "value": "pro"}}, after=wait.key)
    split = add(journey, StepKind.SPLIT, {"config": {"paths": [{"name": "A", "weight": 1}, {"name": "B", "weight": 1}]}},
                after=update.key)
    # a loop: the split's path A goes back to the wait, path B to the update; the condition's no to the update
    JourneyStep.objects.filter(pk=split.pk).update(config={"paths": [
        {"name": "A", "weight": 1, "step": wait.key}, {"name": "B", "weight": 1, "step": update.key}]})
    JourneyStep.objects.filter(pk=check.pk).update(else_step=update)

    drafts.remove_step(journey, update, revision=rev(journey))

    links = flow(journey)
    assert links[wait.key][0] == split.key
    assert links[check.key] == (wait.key, split.key, ())
    assert links[split.key][2] == (("A", wait.key), ("B", split.key))
    assert not JourneyStep.objects.filter(pk=update.pk).exists()


def test_removing_a_branch_target_with_no_single_next_is_refused_naming_the_steps(journey):
    first = add(journey)
    check = add(journey, StepKind.CONDITION, {"config": {"check": "event", "name": "activated"}}, after=first.key)
    add(journey, after=check.key)
    add(journey, StepKind.EXIT, {"config": {}}, after=check.key, branch="else")

    with pytest.raises(ValidationError) as refused:
        drafts.remove_step(journey, check, revision=rev(journey))

    message = refused.value.messages[0]
    assert "'condition'" in message and "'wait'" in message and "wait-2" in message and "exit" in message
    assert JourneyStep.objects.filter(pk=check.pk).exists()


def test_an_edit_from_a_stale_page_is_refused_and_changes_nothing(journey):
    first = add(journey)
    stale = rev(journey) - 1

    with pytest.raises(drafts.StaleDraft, match="out of date"):
        drafts.add_step(journey, revision=stale, kind=StepKind.WAIT, values=dict(WAIT), after=first.key)
    with pytest.raises(drafts.StaleDraft):
        drafts.remove_step(journey, first, revision=stale)

    assert order(journey) == ["wait"]


def test_each_edit_bumps_the_revision_and_is_audited_with_what_changed(journey, django_user_model):
    marketer = django_user_model.objects.create_user(username="marketer")
    before = rev(journey)
    step = drafts.add_step(journey, revision=before, kind=StepKind.WAIT, values=dict(WAIT), actor=marketer)
    drafts.change_step(journey, step, revision=rev(journey), values={"config": {"seconds": 60}}, actor=marketer)
    drafts.remove_step(journey, step, revision=rev(journey), actor=marketer)

    assert rev(journey) == before + 3
    entries = list(audit.for_object(journey).filter(action="journey.draft_changed").order_by("pk"))
    assert [(e.data["change"], e.data["step"], e.data["kind"]) for e in entries] == [
        ("added", "wait", "wait"), ("changed", "wait", "wait"), ("removed", "wait", "wait")]
    assert all(e.actor_id == marketer.pk for e in entries)


def test_steps_written_before_the_builder_lead_where_they_did_once_it_edits_them(journey):
    # next empty: the next position (the last step completes)
    JourneyStep.objects.create(journey=journey, key="one", position=1, kind=StepKind.WAIT, config={"seconds": 60})
    JourneyStep.objects.create(journey=journey, key="two", position=2, kind=StepKind.WAIT, config={"seconds": 60})
    before = flow(journey)

    add(journey, StepKind.EXIT, {"config": {}}, after="two")

    after = flow(journey)
    assert after["one"] == before["one"] and after["two"][0] == "exit" and after["exit"][0] is None


def test_an_explicit_end_ends_the_journey_and_is_in_the_snapshot_only_when_set(journey):
    JourneyStep.objects.create(journey=journey, key="one", position=1, kind=StepKind.WAIT, config={"seconds": 60},
                               ends=True)
    JourneyStep.objects.create(journey=journey, key="two", position=2, kind=StepKind.WAIT, config={"seconds": 60})

    rows = draft_snapshot(journey)["steps"]
    assert rows[0]["end"] is True and "end" not in rows[1]
    assert flow(journey)["one"][0] is None


def test_problems_name_their_step_and_field(journey):
    add(journey, StepKind.SEND, {"config": {}, "channel_plan": [{"channel": "email"}]})

    problems = validate_journey(journey)

    template = next(p for p in problems if "needs a template" in p)
    assert (template.step, template.field) == ("send", "template")
