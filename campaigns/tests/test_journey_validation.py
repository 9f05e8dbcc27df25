"""Activation refuses a journey that cannot run, naming the step: a loop without a wait, a step
pointing nowhere, a send step whose template was never published."""
import pytest
from django.core.exceptions import ValidationError

from campaigns.actions import activate_journey
from campaigns.models import Journey, JourneyStatus, JourneyStep, StepKind
from templates.models import Template, TemplateVariant

pytestmark = pytest.mark.django_db


@pytest.fixture
def journey():
    return Journey.objects.create(name="Nudge", slug="nudge", trigger_event="signed_up")


def add_step(journey, position, key, kind, **fields):
    return JourneyStep.objects.create(journey=journey, position=position, key=key, kind=kind, **fields)


def refusal(journey) -> str:
    with pytest.raises(ValidationError) as refused:
        activate_journey(journey)
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.DRAFT
    return " ".join(refused.value.messages)


def test_activation_refuses_a_loop_without_a_wait_and_names_its_steps(journey, welcome_templates):
    # given: send, then "not engaged yet?" straight back to the send, with no wait in between
    email, _ = welcome_templates
    send = add_step(journey, 1, "nudge", StepKind.SEND, template=email, channel_plan=[{"channel": "email"}])
    check = add_step(journey, 2, "engaged", StepKind.CONDITION, config={"check": "engaged", "step": "nudge"})
    add_step(journey, 3, "done", StepKind.EXIT)
    check.else_step = send
    check.save()

    # when / then
    message = refusal(journey)
    assert "'nudge' → 'engaged' → 'nudge' loop without a wait step" in message or \
        "'engaged' → 'nudge' → 'engaged' loop without a wait step" in message


def test_a_loop_with_a_wait_on_it_is_allowed(journey, welcome_templates):
    email, _ = welcome_templates
    send = add_step(journey, 1, "nudge", StepKind.SEND, template=email, channel_plan=[{"channel": "email"}])
    add_step(journey, 2, "pause", StepKind.WAIT, config={"seconds": 3600})
    check = add_step(journey, 3, "engaged", StepKind.CONDITION, config={"check": "engaged", "step": "nudge"})
    add_step(journey, 4, "done", StepKind.EXIT)
    check.else_step = send
    check.save()

    activate_journey(journey)

    assert journey.status == JourneyStatus.ACTIVE


def test_activation_refuses_a_condition_checking_a_step_that_does_not_exist_and_names_it(journey):
    add_step(journey, 1, "opened", StepKind.CONDITION, config={"check": "engaged", "step": "welcome-mail"})

    message = refusal(journey)

    assert "Condition step 'opened' checks step 'welcome-mail', which is not a step of this journey." in message


def test_activation_refuses_a_step_leading_to_another_journeys_step_and_names_both(journey):
    other = Journey.objects.create(name="Other", slug="other", trigger_event="x")
    elsewhere = add_step(other, 1, "elsewhere", StepKind.EXIT)
    add_step(journey, 1, "pause", StepKind.WAIT, config={"seconds": 60}, next_step=elsewhere)

    message = refusal(journey)

    assert "Step 'pause' goes next to 'other:elsewhere', which is not a step of this journey." in message


def test_an_attribute_condition_needs_no_step_to_check(journey):
    add_step(journey, 1, "is-pro", StepKind.CONDITION, config={"check": "attribute", "name": "plan", "equals": "pro"})
    add_step(journey, 2, "done", StepKind.EXIT)

    activate_journey(journey)

    assert journey.status == JourneyStatus.ACTIVE


def test_activation_refuses_a_send_step_whose_template_was_never_published(journey):
    # given a template with a draft only
    draft = Template.objects.create(key="launch", name="Launch", purpose="marketing")
    TemplateVariant.objects.create(template=draft, channel="email", subject="Soon", text_body="Soon")
    add_step(journey, 1, "announce", StepKind.SEND, template=draft, channel_plan=[{"channel": "email"}])

    # when / then: refused, naming the step and the template, and the draft stays unpublished
    message = refusal(journey)
    assert "Send step 'announce' uses template 'launch', which has no published version" in message
    assert not draft.versions.exists()


def test_the_step_form_accepts_an_attribute_condition(journey):
    step = JourneyStep(journey=journey, position=1, key="is-pro", kind=StepKind.CONDITION,
                       config={"check": "attribute", "name": "plan", "equals": "pro"})

    step.full_clean()
