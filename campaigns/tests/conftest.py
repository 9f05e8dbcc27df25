from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from compliance.actions import record_consent_change
from contacts.models import Contact, LifecycleStage, Segment
from templates.actions import publish_template
from templates.models import Template, TemplateVariant

from campaigns.actions import activate_journey
from campaigns.models import Campaign, Journey, JourneyStep, StepKind


@pytest.fixture
def welcome_templates(db):
    email = Template.objects.create(key="welcome-email", name="Welcome email", purpose="marketing")
    TemplateVariant.objects.create(template=email, channel="email", subject="Welcome, {{ first_name }}!",
                                   text_body="Hi {{ first_name }}",
                                   html_body='<p>Hi {{ first_name }}</p>'
                                             '<a href="{{ unsubscribe_url }}">Unsubscribe</a>')
    TemplateVariant.objects.create(template=email, channel="sms", text_body="Hi {{ first_name }}, welcome (sms). Reply STOP to opt out.")
    sms = Template.objects.create(key="welcome-sms", name="Welcome SMS", purpose="marketing")
    TemplateVariant.objects.create(template=sms, channel="sms", text_body="Hi {{ first_name }}, did you see our email? Reply STOP to opt out.")
    publish_template(email)
    publish_template(sms)
    return email, sms


def ready_fields(**fields) -> dict:
    """What activation asks of a journey besides valid steps (campaigns.actions.ownership_problems):
    an owner, an objective, a lifecycle stage and a goal event; `fields` win over these."""
    owner, _ = get_user_model().objects.get_or_create(username="journey-owner")
    # get_or_create: tests that flush the database lose the stages the migration made.
    stage, _ = LifecycleStage.objects.get_or_create(key="trial", defaults={"name": "Trial", "order": 30})
    return {"owner": owner, "objective": "Tested behaviour", "lifecycle_stage": stage, "goal_event": "goal-reached",
            **fields}


def make_journey(**fields) -> Journey:
    """A journey that activation accepts once its steps are valid (see ready_fields)."""
    return Journey.objects.create(**ready_fields(**fields))


def build_welcome_journey(email_template, sms_template, wait_seconds=60, **fields):
    """Email now; wait; if the email was not opened or clicked, an SMS; then exit. Activated: version 1."""
    journey = make_journey(name="Welcome", slug="welcome", trigger_event="signed_up", **fields)
    JourneyStep.objects.create(journey=journey, key="welcome-email", position=1, kind=StepKind.SEND,
                               template=email_template, channel_plan=[{"channel": "email"}])
    JourneyStep.objects.create(journey=journey, key="wait", position=2, kind=StepKind.WAIT,
                               config={"seconds": wait_seconds})
    check = JourneyStep.objects.create(journey=journey, key="opened", position=3, kind=StepKind.CONDITION,
                                       config={"check": "engaged", "step": "welcome-email"})
    send_sms = JourneyStep.objects.create(journey=journey, key="welcome-sms", position=4, kind=StepKind.SEND,
                                          template=sms_template, channel_plan=[{"channel": "sms"}])
    done = JourneyStep.objects.create(journey=journey, key="done", position=5, kind=StepKind.EXIT)
    check.next_step, check.else_step = done, send_sms
    check.save()
    send_sms.next_step = done
    send_sms.save()
    return activate_journey(journey)


@pytest.fixture
def welcome_journey(welcome_templates):
    return build_welcome_journey(*welcome_templates, goal_event="purchased")


def make_contact(external_id, email="", phone="", consents=(("email", "marketing"), ("sms", "marketing")), **extra):
    contact = Contact.objects.create(external_id=external_id, email=email, phone=phone, first_name=external_id.title(),
                                     **extra)
    for channel, purpose in consents:
        # Opted in before the test: its SMS opt-in confirmation is not what these tests are about.
        record_consent_change(contact, channel, purpose, "granted", "form", evidence={"form": "signup"}, announce=False)
    return contact


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def marketer(user_in):
    return user_in("mara", "Marketers")


@pytest.fixture
def approver(user_in):
    return user_in("abe", "Marketing approvers")


def add_send(journey: Journey, template: Template, key="hello", position=1, **fields) -> JourneyStep:
    return JourneyStep.objects.create(journey=journey, key=key, position=position, kind=StepKind.SEND,
                                      template=template, channel_plan=[{"channel": "email"}], **fields)


@pytest.fixture
def marketing_draft(welcome_templates, marketer):
    """A draft journey that sends a marketing email (its template's purpose), owned by the marketer."""
    journey = make_journey(name="Newsletter", slug="newsletter", trigger_event="signed_up", owner=marketer)
    add_send(journey, welcome_templates[0])
    JourneyStep.objects.create(journey=journey, key="pause", position=2, kind=StepKind.WAIT,
                               config={"seconds": 3600})
    return journey


@pytest.fixture
def segment(db):
    """Trial users: the audience of the campaign drafts."""
    return Segment.objects.create(name="Trial users", definition={
        "match": "all", "filters": [{"kind": "lifecycle_stage", "stages": ["trial"]}]})


@pytest.fixture
def draft(welcome_templates, segment, marketer):
    """A draft campaign, ready to start but for its approval."""
    return Campaign.objects.create(
        name="Spring sale", template=welcome_templates[0], segment=segment, owner=marketer, objective="Sell",
        lifecycle_stage=LifecycleStage.objects.get(key="trial"), goal_event="purchased", goal_window=timedelta(days=7),
        channel_plan=[{"channel": "email"}], created_by=marketer)
