"""The builder's forms (campaigns.step_forms, campaigns.builder_admin): each kind's fields become its
config and back, each bad value is an error on its field, a channel the template has no
variant for is flagged on it, and the pages refuse a stale revision."""
import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from campaigns.builder_admin import JourneyForm
from campaigns.models import Journey, JourneyStep, StepKind
from campaigns.step_forms import FORMS
from contacts.models import AttributeDefinition
from omni import audit

pytestmark = pytest.mark.django_db


@pytest.fixture
def journey(db):
    journey = Journey.objects.create(name="Forms", slug="forms", trigger_event="signed_up")
    JourneyStep.objects.create(journey=journey, key="send-welcome-email", position=0, kind=StepKind.SEND, ends=True)
    return journey


def form(kind, data, journey, step=None):
    return FORMS[kind](data, journey=journey, step=step)


@pytest.mark.parametrize("kind, data, field", [
    (StepKind.WAIT, {"duration_0": "0", "duration_1": "days"}, "duration"),
    (StepKind.WAIT, {"duration_0": "", "duration_1": "days"}, "duration"),
    (StepKind.WAIT, {"duration_0": "999999", "duration_1": "days"}, "duration"),
    (StepKind.WAIT_UNTIL, {"time": "25:00"}, "time"),
    (StepKind.WAIT_DATE, {"source": "property", "property": ""}, "property"),
    (StepKind.WAIT_EVENT, {"waits_for": "event", "event": "", "timeout_0": "3", "timeout_1": "days"}, "event"),
    (StepKind.WAIT_EVENT, {"waits_for": "engagement", "engagement": "opened", "timeout_0": "3",
                           "timeout_1": "days"}, "send_step"),
    (StepKind.WAIT_EVENT, {"waits_for": "event", "event": "activated"}, "timeout"),
    (StepKind.CONDITION, {"check": "opened"}, "checked_step"),
    (StepKind.CONDITION, {"check": "attribute", "name": ""}, "name"),
    (StepKind.CONDITION, {"check": "attribute", "name": "score", "operator": "at_least", "value": "lots"}, "value"),
    (StepKind.CONDITION, {"check": "attribute", "name": "score", "operator": ""}, "operator"),
    (StepKind.CONDITION, {"check": "webhook", "checked_step": "", "name": "decision", "answer_type": "text",
                          "operator": "equals", "value": "yes"}, "checked_step"),
    (StepKind.SPLIT, {"path_name_1": "A", "path_weight_1": "1"}, "path_name_1"),
    (StepKind.SPLIT, {"path_name_1": "A", "path_weight_1": "1", "path_name_2": "A", "path_weight_2": "1"},
     "path_name_2"),
    (StepKind.SPLIT, {"path_name_1": "A", "path_weight_1": "1", "path_weight_2": "2"}, "path_name_2"),
    (StepKind.UPDATE, {"sets": "attribute", "attribute": ""}, "attribute"),
    (StepKind.UPDATE, {"sets": "attribute", "attribute": "score", "value": "high"}, "value"),
    (StepKind.UPDATE, {"sets": "lifecycle_stage", "lifecycle_stage": "nope"}, "lifecycle_stage"),
    (StepKind.WEBHOOK, {"endpoint": "", "timeout_0": "10", "timeout_1": "minutes"}, "endpoint"),
    (StepKind.WEBHOOK, {"endpoint": "", "timeout_0": "", "timeout_1": "minutes"}, "timeout"),
    (StepKind.SEND, {"urgency": "normal", "plan": "own", "channel_1": "email"}, "template"),
    (StepKind.SEND, {"urgency": "normal", "plan": "own"}, "channel_1"),
    (StepKind.SEND, {"urgency": "normal", "plan": "own", "channel_1": "email", "fallback_1": "not_delivered",
                     "channel_2": "sms"}, "within_1"),
])
def test_each_kind_refuses_a_bad_value_on_its_field(journey, kind, data, field):
    AttributeDefinition.objects.create(name="score", data_type="number")

    bound = form(kind, data, journey)

    assert not bound.is_valid()
    assert field in bound.errors, bound.errors


def test_a_welcome_wait_becomes_its_config_and_reads_back(journey):
    bound = form(StepKind.WAIT_EVENT, {"waits_for": "event", "event": "activated", "timeout_0": "3",
                                        "timeout_1": "days"}, journey)
    assert bound.is_valid(), bound.errors
    assert bound.values()["config"] == {"event": "activated", "timeout_seconds": 3 * 86400}

    step = JourneyStep.objects.create(journey=journey, key="wait-event", kind=StepKind.WAIT_EVENT,
                                      config=bound.values()["config"], ends=True)
    shown = form(StepKind.WAIT_EVENT, None, journey, step)
    assert shown.initial["event"] == "activated" and shown.initial["timeout"] == 3 * 86400
    assert shown.initial["next"] == "end"
    assert shown.fields["timeout"].widget.decompress(3 * 86400) == [3, "days"]


def test_a_channel_plan_with_fallbacks_becomes_the_plan_entries(journey, welcome_templates):
    email, _ = welcome_templates
    bound = form(StepKind.SEND, {"template": email.pk, "urgency": "normal", "plan": "own", "channel_1": "email",
                                 "fallback_1": "not_opened", "within_1_0": "2", "within_1_1": "hours",
                                 "channel_2": "sms"}, journey)

    assert bound.is_valid(), bound.errors
    assert bound.values()["channel_plan"] == [
        {"channel": "email", "fallback_after_seconds": 7200, "fallback_unless": "engaged"}, {"channel": "sms"}]

    default = form(StepKind.SEND, {"template": email.pk, "urgency": "normal", "plan": "default"}, journey)
    assert default.is_valid(), default.errors
    assert default.values()["channel_plan"] == []


def test_the_channel_plan_flags_a_channel_the_template_has_no_variant_for(journey, welcome_templates):
    _, sms = welcome_templates

    bound = form(StepKind.SEND, {"template": sms.pk, "urgency": "normal", "plan": "own", "channel_1": "email",
                                 "fallback_1": "failed", "channel_2": "sms"}, journey)

    assert not bound.is_valid()
    assert bound.errors["channel_1"] == ["Template 'welcome-sms' v1 has no Email variant (it has: sms)."]
    assert "channel_2" not in bound.errors


def test_an_attribute_branch_types_its_value_from_the_declaration(journey):
    AttributeDefinition.objects.create(name="score", data_type="number")
    bound = form(StepKind.CONDITION, {"check": "attribute", "name": "score", "operator": "between", "value": "10",
                                      "value_to": "20.5"}, journey)

    assert bound.is_valid(), bound.errors
    assert bound.values()["config"] == {"check": "attribute", "name": "score", "operator": "between", "value": 10,
                                        "value_to": 20.5}


def test_split_paths_are_rows_with_their_targets(journey):
    bound = form(StepKind.SPLIT, {"path_name_1": "A", "path_weight_1": "70", "path_step_1": "send-welcome-email",
                                  "path_name_2": "B", "path_weight_2": "30"}, journey)

    assert bound.is_valid(), bound.errors
    assert bound.values()["config"] == {"paths": [{"name": "A", "weight": 70, "step": "send-welcome-email"},
                                                  {"name": "B", "weight": 30}]}


@pytest.fixture
def marketer(client, django_user_model, role_groups):
    user = django_user_model.objects.create_user(username="marketer", password="not-used", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketers"))
    client.force_login(user)
    return user


def test_a_marketer_adds_a_step_through_the_pages_and_a_stale_page_is_refused(client, marketer, journey):
    url = reverse("admin:campaigns_journey_step_add", args=[journey.pk])
    picker = client.get(url + "?after=send-welcome-email")
    assert picker.status_code == 200 and "Wait for an event or engagement" in picker.content.decode()

    data = {"revision": 0, "kind": "wait", "duration_0": "3", "duration_1": "days"}
    response = client.post(url + "?after=send-welcome-email", data)

    assert response.status_code == 302
    step = JourneyStep.objects.get(journey=journey, key="wait")
    assert step.config == {"seconds": 3 * 86400}
    assert JourneyStep.objects.get(key="send-welcome-email").next_step == step
    assert audit.for_object(journey).get(action="journey.draft_changed").actor_id == marketer.pk

    # the same form again, from the page that read revision 0
    stale = client.post(url + "?after=send-welcome-email", data, follow=True)
    assert "out of date" in stale.content.decode()
    assert JourneyStep.objects.filter(journey=journey).count() == 2

    page = client.get(reverse("admin:campaigns_journey_change", args=[journey.pk]))
    html = page.content.decode()
    assert "Draft steps" in html and "wait: wait 3 days" in html
    assert '"seconds"' not in html  # no JSON


def test_a_bad_value_on_the_page_is_a_form_error_not_a_500(client, marketer, journey):
    url = reverse("admin:campaigns_journey_step_add", args=[journey.pk]) + "?after=send-welcome-email"
    response = client.post(url, {"revision": 0, "kind": "wait_until", "time": "nine"})
    assert response.status_code == 200
    assert "time" in response.context["form"].errors


def test_only_those_who_may_change_journeys_open_the_builder(client, django_user_model, role_groups, journey):
    user = django_user_model.objects.create_user(username="compliance", password="not-used", is_staff=True)
    user.groups.add(Group.objects.get(name="Compliance"))
    client.force_login(user)
    assert not user.has_perm("campaigns.change_journey")

    response = client.post(reverse("admin:campaigns_journey_step_add", args=[journey.pk]),
                           {"revision": 0, "kind": "exit"})

    assert response.status_code == 403
    assert JourneyStep.objects.filter(journey=journey).count() == 1


def test_the_journey_form_refuses_a_stale_page_and_a_bad_trigger_condition_and_audits_its_edit(journey, marketer):
    base = {"name": "Forms", "slug": "forms", "trigger_type": "event", "trigger_event": "signed_up",
            "trigger_date_offset_days": "0", "reentry": "never", "on_reply": "continue", "status": "draft"}
    rows = {"trigger_conditions-0-property": "amount", "trigger_conditions-0-operator": "at_least",
            "trigger_conditions-0-value": "100"}
    from contacts.models import EventPropertyDefinition
    EventPropertyDefinition.objects.create(event="signed_up", name="amount", data_type="number")

    stale = JourneyForm({**base, **rows, "draft_revision_seen": "7"}, instance=journey)
    assert not stale.is_valid() and "out of date" in str(stale.non_field_errors())

    bad = JourneyForm({**base, "trigger_conditions-0-property": "amount", "trigger_conditions-0-operator": "at_least",
                       "trigger_conditions-0-value": "lots", "draft_revision_seen": "0"}, instance=journey)
    assert not bad.is_valid() and "trigger_conditions" in bad.errors

    good = JourneyForm({**base, **rows, "draft_revision_seen": "0"}, instance=journey)
    assert good.is_valid(), good.errors
    assert good.cleaned_data["trigger_conditions"] == [{"property": "amount", "operator": "at_least", "value": 100}]


def test_saving_the_journey_page_with_a_new_goal_is_a_draft_edit(client, marketer, journey):
    from .test_admin_versions import change_form_data

    url = reverse("admin:campaigns_journey_change", args=[journey.pk])
    page = client.get(url)
    assert "trigger_conditions-0-property" in page.content.decode()  # rows, not a JSON box
    data = change_form_data(page)
    data.update({"goal_event": "activated", "trigger_conditions-0-property": ""})
    data = {name: value for name, value in data.items() if name != "trigger_conditions"}

    response = client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    journey.refresh_from_db()
    assert (journey.goal_event, journey.draft_revision) == ("activated", 1)
    entry = audit.for_object(journey).get(action="journey.draft_changed")
    assert entry.data["fields"] == ["goal_event"] and entry.actor_id == marketer.pk

    # the same page again, now stale
    again = client.post(url, {**data, "goal_event": "purchased"})
    assert again.status_code == 200 and "out of date" in again.content.decode()
