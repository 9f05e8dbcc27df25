"""A send step without a channel plan pins the default for its purpose and urgency when its
journey is published: the version holds the plan, the draft stays blank."""
import pytest
from django.core.exceptions import ValidationError

from campaigns.actions import activate_journey, has_unpublished_changes, publish_journey
from campaigns.models import JourneyStatus, JourneyStep, StepKind
from channels.models import DefaultChannelPlan
from templates.actions import publish_template
from templates.models import Template, TemplateVariant

from .conftest import make_journey

pytestmark = pytest.mark.django_db

SMS_THEN_EMAIL = [{"channel": "sms", "fallback_after_seconds": 300, "fallback_unless": "delivered"},
                  {"channel": "email"}]


@pytest.fixture
def receipt(db):
    """A transactional template with email and SMS variants, published."""
    template = Template.objects.create(key="receipt", name="Receipt", purpose="transactional")
    TemplateVariant.objects.create(template=template, channel="email", subject="Your receipt", text_body="Paid.")
    TemplateVariant.objects.create(template=template, channel="sms", text_body="Paid. Reply STOP to opt out.")
    publish_template(template)
    return template


@pytest.fixture
def journey(receipt):
    journey = make_journey(name="Receipts", slug="receipts", trigger_event="paid")
    JourneyStep.objects.create(journey=journey, key="receipt", position=1, kind=StepKind.SEND, template=receipt,
                               urgency="high")
    return journey


def set_default(purpose, urgency, plan):
    DefaultChannelPlan.objects.update_or_create(purpose=purpose, urgency=urgency, defaults={"channel_plan": plan})


def published_plan(journey, key="receipt"):
    journey.refresh_from_db()
    return next(step["channel_plan"] for step in journey.live_version.snapshot()["steps"] if step["key"] == key)


def test_publishing_pins_the_default_plan_for_the_steps_purpose_and_urgency(journey):
    set_default("transactional", "high", SMS_THEN_EMAIL)
    set_default("transactional", "normal", [{"channel": "email"}])

    activate_journey(journey)

    assert published_plan(journey) == SMS_THEN_EMAIL
    assert JourneyStep.objects.get(key="receipt").channel_plan == []


def test_a_later_change_of_the_default_reaches_only_the_next_version(journey):
    set_default("transactional", "high", SMS_THEN_EMAIL)
    activate_journey(journey)

    set_default("transactional", "high", [{"channel": "email"}])

    assert published_plan(journey) == SMS_THEN_EMAIL
    assert has_unpublished_changes(journey)
    publish_journey(journey)
    assert published_plan(journey) == [{"channel": "email"}]


def test_a_step_with_its_own_plan_keeps_it(journey):
    JourneyStep.objects.filter(key="receipt").update(channel_plan=[{"channel": "email"}])
    set_default("transactional", "high", SMS_THEN_EMAIL)

    activate_journey(journey)

    assert published_plan(journey) == [{"channel": "email"}]


def test_a_blank_purpose_reads_the_templates(journey, receipt):
    set_default("transactional", "high", SMS_THEN_EMAIL)
    set_default("marketing", "high", [{"channel": "email"}])

    activate_journey(journey)

    assert JourneyStep.objects.get(key="receipt").purpose == ""
    assert published_plan(journey) == SMS_THEN_EMAIL


def test_the_default_is_kept_to_the_channels_the_template_has_variants_for(journey):
    set_default("transactional", "high", [
        {"channel": "push", "fallback_after_seconds": 60, "fallback_unless": "delivered"},
        {"channel": "email", "fallback_after_seconds": 600, "fallback_unless": "delivered"},
        {"channel": "whatsapp"}])

    activate_journey(journey)

    assert published_plan(journey) == [{"channel": "email"}]


def test_publishing_is_refused_clearly_when_no_default_exists(journey):
    DefaultChannelPlan.objects.filter(purpose="transactional", urgency="high").delete()

    with pytest.raises(ValidationError) as refused:
        activate_journey(journey)

    assert refused.value.messages == [
        "Send step 'receipt' has no channel plan, and there is no default channel plan for transactional messages "
        "of high urgency: add one under Default channel plans, or give the step its own plan."]
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.DRAFT and journey.live_version is None


def test_publishing_is_refused_when_the_default_names_no_channel_of_the_template(journey):
    set_default("transactional", "high", [{"channel": "push"}])

    with pytest.raises(ValidationError) as refused:
        activate_journey(journey)

    assert refused.value.messages == [
        "Send step 'receipt' has no channel plan, and the default for transactional messages of high urgency (push) "
        "names no channel template 'receipt' v1 has a variant for (it has: email, sms): give the step its own plan, "
        "or add a variant."]


def test_the_step_form_accepts_a_blank_plan_but_still_refuses_a_broken_one(journey):
    step = JourneyStep.objects.get(key="receipt")
    step.full_clean()

    step.channel_plan = [{"chanel": "sms"}]
    with pytest.raises(ValidationError) as refused:
        step.full_clean()
    assert "channel_plan" in refused.value.message_dict


def test_the_step_form_says_a_blank_plan_takes_the_default(journey, admin_client):
    from django.urls import reverse

    step = journey.steps.get(key="receipt")
    page = admin_client.get(reverse("admin:campaigns_journey_step_change", args=[journey.pk, step.pk])).content.decode()

    assert "The default channel plan for the step's purpose and urgency is pinned when the journey is published" in page
