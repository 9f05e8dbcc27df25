"""Activation refuses a journey that cannot run, naming the step: a loop without a wait, a step
pointing nowhere, a send step whose template was never published."""
import pytest
from django.core.exceptions import ValidationError

from campaigns.actions import activate_journey
from campaigns.models import Journey, JourneyStatus, JourneyStep, StepKind, TriggerType
from templates.models import Template, TemplateVariant

from .conftest import make_journey

pytestmark = pytest.mark.django_db


@pytest.fixture
def journey():
    return make_journey(name="Nudge", slug="nudge", trigger_event="signed_up")


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
    other = make_journey(name="Other", slug="other", trigger_event="x")
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


# --- channel plans and step settings: one validator for the step form and for publishing ----------

BAD_SETTINGS = [
    # (kind, fields, field, words the refusal names)
    (StepKind.SEND, {"channel_plan": [{"chanel": "sms"}]}, "channel_plan", "channel_plan[0].chanel"),
    (StepKind.SEND, {"channel_plan": [{"channel": "email", "fallback_after_seconds": "1h"}, {"channel": "sms"}]},
     "channel_plan", "channel_plan[0].fallback_after_seconds"),
    (StepKind.SEND, {"channel_plan": [{"channel": "fax"}]}, "channel_plan", "channel_plan[0].channel"),
    (StepKind.SEND, {"channel_plan": [{"channel": "email", "fallback_unless": "opened"}]}, "channel_plan",
     "channel_plan[0].fallback_unless"),
    (StepKind.SEND, {"channel_plan": {"channel": "email"}}, "channel_plan", "channel_plan"),
    (StepKind.WAIT, {"config": {"seconds": "1h"}}, "config", "config.seconds"),
    (StepKind.WAIT, {"config": {"seconds": 10 ** 12}}, "config", "config.seconds"),
    (StepKind.WAIT, {"config": {"secs": 60}}, "config", "config.secs"),
    (StepKind.WAIT, {"config": [60]}, "config", "config"),
    (StepKind.CONDITION, {"config": {"check": "seen", "step": "x"}}, "config", "config.check"),
]


def bad_step(journey, email, kind, fields, position=1):
    values = {"template": email} if kind == StepKind.SEND else {}
    return JourneyStep(journey=journey, position=position, key="bad", kind=kind, **{**values, **fields})


@pytest.mark.parametrize("kind, fields, field, named", BAD_SETTINGS)
def test_the_step_form_refuses_a_bad_setting_naming_its_field(journey, welcome_templates, kind, fields, field,
                                                              named):
    step = bad_step(journey, welcome_templates[0], kind, fields)

    with pytest.raises(ValidationError) as refused:
        step.full_clean()

    assert named in " ".join(refused.value.message_dict[field])


@pytest.mark.parametrize("kind, fields, field, named", BAD_SETTINGS)
def test_activation_refuses_a_bad_setting_naming_the_step_and_the_field(journey, welcome_templates, kind, fields,
                                                                        field, named):
    # given the bad step stored as it might be by code or an older form
    bad_step(journey, welcome_templates[0], kind, fields).save()
    add_step(journey, 2, "done", StepKind.EXIT)

    message = refusal(journey)

    assert f"Step 'bad': {named}" in message
    assert not journey.versions.exists()


def test_a_good_plan_with_its_fallback_settings_is_accepted(journey, welcome_templates):
    email, _ = welcome_templates
    add_step(journey, 1, "hello", StepKind.SEND, template=email, channel_plan=[
        {"channel": "email", "fallback_after_seconds": 3600, "fallback_unless": "engaged"}, {"channel": "sms"}])
    add_step(journey, 2, "pause", StepKind.WAIT, config={"seconds": 60})

    JourneyStep.objects.get(key="hello").full_clean()
    activate_journey(journey)

    assert journey.status == JourneyStatus.ACTIVE


# --- what activation cannot run yet ---------------------------------------------------------------

def test_activation_refuses_a_trigger_it_does_not_know_and_names_it(journey, welcome_templates):
    email, _ = welcome_templates
    Journey.objects.filter(pk=journey.pk).update(trigger_type="someday")
    add_step(journey, 1, "hello", StepKind.SEND, template=email, channel_plan=[{"channel": "email"}])

    message = refusal(journey)

    assert "The trigger 'someday' is not one Omni knows" in message
    assert not journey.versions.exists()


def test_activation_refuses_a_plan_channel_the_template_has_no_variant_for_and_names_the_step(journey,
                                                                                              welcome_templates):
    # given a template with an SMS variant only, planned for WhatsApp then SMS
    _, sms = welcome_templates
    add_step(journey, 1, "nudge", StepKind.SEND, template=sms, channel_plan=[{"channel": "whatsapp"},
                                                                             {"channel": "sms"}])

    message = refusal(journey)

    assert ("Send step 'nudge' plans whatsapp, but template 'welcome-sms' v1 has no whatsapp variant "
            "(it has: sms).") in message
