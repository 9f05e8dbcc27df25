"""Journeys change while contacts are in them: each contact runs on the version it entered on,
new enrollments take the latest published one, and only an audited move changes that."""
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns.tick import tick
from campaigns.actions import (
    activate_journey,
    enroll_contact,
    move_to_latest_version,
    pause_journey,
    publish_journey,
    resume_journey,
)
from campaigns.models import Enrollment, EnrollmentState, JourneyStep, JourneyStepVisit, JourneyVersion
from channels.delivery import send_delivery
from channels.models import Delivery, Message
from contacts.models import ContactEvent
from omni import audit
from omni.models import AuditEntry
from templates.actions import publish_template
from templates.models import Template, TemplateVariant

from .conftest import make_contact

pytestmark = pytest.mark.django_db
# One tick over one batch that sends and waits: claims, versions, template versions, the
# contacts' reachability on the journey's channels (the rules' version and consents: who opted
# out exits), messages, arbitration (its rules, and the messages already said with the same
# intents), the support conversations holding marketing, the gate's inputs,
# deliveries, decisions, audit, visits, the empty later stages (the replies stage's claim, the
# segment stage's look for segments in use, the date triggers' look for a journey due, support
# automation's and the conversations waiting for an agent among them, the A/B tests due, the
# campaign recipients due and the campaigns ended), arbitration's reads of its rules and of the sends already made,
# and the savepoint (and its release) each stage's batch runs in, so one bad row cannot stop the
# rest (at most 49: each campaign stage looks once even with no campaign running; auto-pause has its
# own beat entry).
TICK_QUERIES_ONE_BATCH = 49


def signed_up(contact, name="signed_up"):
    return ContactEvent.objects.create(contact=contact, name=name, idempotency_key=f"{name}-{contact.external_id}",
                                       source="test")


def sms_text(contact) -> str:
    """The SMS the contact is sent: the channel worker renders it when it sends."""
    delivery = Delivery.objects.get(contact=contact, channel="sms")
    send_delivery(delivery.pk)
    delivery.refresh_from_db()
    return delivery.text_body


@pytest.fixture
def reminder_template(db):
    template = Template.objects.create(key="reminder-sms", name="Reminder SMS", purpose="marketing")
    TemplateVariant.objects.create(template=template, channel="sms",
                                   text_body="{{ first_name }}, one more thing. Reply STOP to opt out.")
    publish_template(template)
    return template


def test_activation_publishes_version_1_which_enrollments_pin(welcome_journey):
    ann = make_contact("ann", email="ann@example.com")

    enrollment = enroll_contact(welcome_journey, ann)

    version = welcome_journey.live_version
    assert version.number == 1
    assert [s["key"] for s in version.steps] == ["welcome-email", "wait", "opened", "welcome-sms", "done"]
    assert (enrollment.journey_version, enrollment.current_step_key) == (version, "welcome-email")
    sms = version.steps[3]
    assert (sms["template_key"], sms["template_version_number"], sms["next"]) == ("welcome-sms", 1, "done")
    published = AuditEntry.objects.get(action="journey.published")
    assert published.data == {"journey": welcome_journey.pk, "version": 1, "steps": 5}


def test_editing_an_active_journeys_steps_changes_nothing_for_contacts_in_it(welcome_journey, reminder_template,
                                                                             now):
    # given Ann in the journey, waiting before the SMS step
    ann = make_contact("ann", email="ann@example.com", phone="+14155550101")
    signed_up(ann)
    tick(now)

    # when a marketer edits the draft: another template for the SMS, and the exit step removed
    JourneyStep.objects.filter(journey=welcome_journey, key="welcome-sms").update(template=reminder_template)
    JourneyStep.objects.filter(journey=welcome_journey, key="done").delete()
    tick(now + timedelta(seconds=61))

    # then Ann ran the steps she entered on, old SMS and exit included
    assert sms_text(ann) == "Hi Ann, did you see our email? Reply STOP to opt out."
    enrollment = Enrollment.objects.get(contact=ann)
    assert (enrollment.state, enrollment.end_reason) == (EnrollmentState.EXITED, "exit:done")


def test_published_changes_reach_new_enrollments_while_those_in_flight_stay_on_their_version(
    welcome_journey, reminder_template, now,
):
    # given Ann on version 1, waiting before the SMS step
    ann = make_contact("ann", email="ann@example.com", phone="+14155550101")
    signed_up(ann)
    tick(now)

    # when the SMS step's template changes and the change is published
    JourneyStep.objects.filter(journey=welcome_journey, key="welcome-sms").update(template=reminder_template)
    version = publish_journey(welcome_journey)
    bob = make_contact("bob", email="bob@example.com", phone="+14155550102")
    signed_up(bob)
    tick(now + timedelta(seconds=1))
    tick(now + timedelta(seconds=62))

    # then Bob entered on version 2 and got its SMS; Ann kept version 1's
    assert version.number == 2 and welcome_journey.live_version == version
    assert Enrollment.objects.get(contact=bob).journey_version == version
    assert Enrollment.objects.get(contact=ann).journey_version.number == 1
    assert sms_text(bob) == "Bob, one more thing. Reply STOP to opt out."
    assert sms_text(ann) == "Hi Ann, did you see our email? Reply STOP to opt out."
    visits = JourneyStepVisit.objects.filter(step_key="welcome-sms")
    assert sorted(visits.values_list("enrollment__contact__external_id", "journey_version__number")) == [
        ("ann", 1), ("bob", 2),
    ]
    assert AuditEntry.objects.filter(action="journey.published").count() == 2


def test_a_journey_sends_the_template_version_it_pinned_until_it_publishes_again(welcome_journey, now):
    # given the SMS template republished after the journey was
    sms_template = Template.objects.get(key="welcome-sms")
    sms_template.variants.update(text_body="Hi {{ first_name }}, new words. Reply STOP to opt out.")
    publish_template(sms_template)
    ann = make_contact("ann", email="ann@example.com", phone="+14155550101")
    signed_up(ann)

    # when Ann reaches the SMS step
    tick(now)
    tick(now + timedelta(seconds=61))

    # then she gets the template version the journey pinned; publishing the journey picks up the new one
    assert Message.objects.get(contact=ann, template_version__template=sms_template).template_version.number == 1
    assert sms_text(ann) == "Hi Ann, did you see our email? Reply STOP to opt out."
    assert publish_journey(welcome_journey).steps[3]["template_version_number"] == 2


def test_each_enrollment_converts_on_its_own_versions_goal(welcome_templates, now):
    from .conftest import build_welcome_journey

    journey = build_welcome_journey(*welcome_templates, goal_event="purchased")
    ann = make_contact("ann", email="ann@example.com")
    signed_up(ann)
    tick(now)
    journey.goal_event = "upgraded"
    journey.save()
    publish_journey(journey)

    signed_up(ann, name="purchased")
    tick(now + timedelta(seconds=1))

    assert Enrollment.objects.get(contact=ann).end_reason == "goal:purchased"


def test_publishing_refuses_a_draft_with_nothing_new(welcome_journey):
    with pytest.raises(ValidationError, match="Nothing to publish: the steps and settings are those of version 1"):
        publish_journey(welcome_journey)

    assert welcome_journey.versions.count() == 1


def test_publishing_refuses_an_invalid_draft_and_the_running_version_carries_on(welcome_journey, now):
    # given Ann on version 1
    ann = make_contact("ann", email="ann@example.com", phone="+14155550101", consents=(("email", "marketing"),))
    signed_up(ann)
    tick(now)

    # when the draft gains a loop without a wait and someone tries to publish it
    steps = {s.key: s for s in welcome_journey.steps.all()}
    steps["welcome-sms"].next_step = steps["opened"]
    steps["welcome-sms"].save()
    with pytest.raises(ValidationError) as refused:
        publish_journey(welcome_journey)

    # then nothing is published and Ann still runs version 1 to its end
    assert "loop without a wait step" in " ".join(refused.value.messages)
    assert welcome_journey.versions.count() == 1
    tick(now + timedelta(seconds=61))
    assert Enrollment.objects.get(contact=ann).end_reason == "exit:done"


def test_resuming_keeps_draft_changes_unpublished_and_activating_publishes_them(welcome_journey, reminder_template):
    pause_journey(welcome_journey)
    JourneyStep.objects.filter(journey=welcome_journey, key="welcome-sms").update(template=reminder_template)

    resume_journey(welcome_journey)
    after_resume = welcome_journey.live_version.number
    activate_journey(welcome_journey)

    assert (after_resume, welcome_journey.live_version.number) == (1, 2)


def test_a_published_version_cannot_be_changed(welcome_journey):
    version = welcome_journey.live_version
    version.steps = []

    with pytest.raises(ValueError, match="immutable"):
        version.save()

    assert JourneyVersion.objects.get(pk=version.pk).steps != []


@pytest.mark.postgres
def test_the_database_refuses_to_rewrite_a_published_journey_version(welcome_journey):
    from django.db import DatabaseError, transaction

    version = welcome_journey.live_version

    with pytest.raises(DatabaseError, match="Cannot update"), transaction.atomic():
        JourneyVersion.objects.filter(pk=version.pk).update(steps=[], trigger_event="other")

    assert JourneyVersion.objects.get(pk=version.pk).steps == version.steps


@pytest.mark.postgres
def test_a_deleted_user_is_still_unlinked_from_the_journey_versions_they_published(welcome_journey,
                                                                                  django_user_model):
    # given a version published by a user who then leaves
    marketer = django_user_model.objects.create_user("marketer")
    welcome_journey.steps.filter(kind="wait").update(config={"seconds": 120})
    version = publish_journey(welcome_journey, actor=marketer)

    # when
    marketer.delete()

    # then the version stays as published, its publisher forgotten
    version.refresh_from_db()
    assert version.published_by is None


# --- moving contacts to the latest version --------------------------------------------------------

@pytest.fixture
def ann_waiting_on_version_1(welcome_journey, now):
    ann = make_contact("ann", email="ann@example.com", phone="+14155550101")
    signed_up(ann)
    tick(now)
    return Enrollment.objects.get(contact=ann)


def test_moving_contacts_puts_them_on_the_latest_version_at_the_same_step_and_audits_it(
    welcome_journey, ann_waiting_on_version_1, reminder_template, now, admin_user,
):
    # given version 2 with another SMS
    JourneyStep.objects.filter(journey=welcome_journey, key="welcome-sms").update(template=reminder_template)
    version = publish_journey(welcome_journey)

    # when the contacts are moved
    moved = move_to_latest_version(welcome_journey, actor=admin_user)
    tick(now + timedelta(seconds=61))

    # then Ann carries on from her step on version 2, and both the move and its reason are audited
    enrollment = Enrollment.objects.get(pk=ann_waiting_on_version_1.pk)
    assert moved == 1
    assert (enrollment.journey_version, enrollment.state) == (version, EnrollmentState.EXITED)
    assert sms_text(enrollment.contact) == "Ann, one more thing. Reply STOP to opt out."
    entry = audit.for_object(enrollment).get(action="journey.enrollment_moved")
    assert (entry.actor_id, entry.contact_id) == (admin_user.pk, enrollment.contact_id)
    assert entry.data == {"journey": welcome_journey.pk, "from_version": 1, "to_version": 2, "step": "opened"}
    summary = audit.for_object(welcome_journey).get(action="journey.contacts_moved")
    assert summary.data == {"to_version": 2, "moved": 1, "from_versions": {"1": 1}}


def test_moving_refuses_naming_the_steps_the_latest_version_lacks_and_moves_nobody(
    welcome_journey, ann_waiting_on_version_1,
):
    # given version 2 without the condition step Ann waits to run
    opened = JourneyStep.objects.get(journey=welcome_journey, key="opened")
    JourneyStep.objects.filter(journey=welcome_journey, key="wait").update(next_step=None)
    opened.delete()
    publish_journey(welcome_journey)

    # when / then
    with pytest.raises(ValidationError) as refused:
        move_to_latest_version(welcome_journey)
    assert refused.value.messages == [
        "Nobody was moved: version 2 has no step 'opened' (1 contact on version 1). Publish a version that keeps "
        "these steps, or let those contacts finish on their version."
    ]
    assert Enrollment.objects.get(pk=ann_waiting_on_version_1.pk).journey_version.number == 1
    assert not AuditEntry.objects.filter(action__in=["journey.enrollment_moved", "journey.contacts_moved"]).exists()


# --- the tick's cost ------------------------------------------------------------------------------

def enroll_many(journey, count, prefix):
    for index in range(count):
        contact = make_contact(f"{prefix}{index}", email=f"{prefix}{index}@example.com",
                               phone=f"+1415555{index:04d}")
        enroll_contact(journey, contact)


def test_a_batch_loads_its_versions_in_a_fixed_number_of_queries(welcome_journey, reminder_template,
                                                                 django_assert_max_num_queries):
    welcome_sms = Template.objects.get(key="welcome-sms")

    def tick_contacts_on_two_versions(count, prefix, sms_template):
        # given `count` contacts due on the live version and `count` on a newer one
        Enrollment.objects.update(state=EnrollmentState.COMPLETED, next_run_at=None)  # the last round, done
        enroll_many(welcome_journey, count, f"{prefix}-old-")
        JourneyStep.objects.filter(journey=welcome_journey, key="welcome-sms").update(template=sms_template)
        publish_journey(welcome_journey)
        enroll_many(welcome_journey, count, f"{prefix}-new-")
        with django_assert_max_num_queries(TICK_QUERIES_ONE_BATCH) as captured:
            report = tick(timezone.now() + timedelta(seconds=1))
        return len(captured), report.steps

    # when the tick runs 3 and then 12 contacts per version (each sends, then waits); more would
    # split SQLite's bulk inserts at its 999 parameters, which is not what this counts
    few = tick_contacts_on_two_versions(3, "few", reminder_template)
    many = tick_contacts_on_two_versions(12, "many", welcome_sms)

    # then both cost the same queries: a batch loads its versions, and their template versions, once
    assert (few[1], many[1]) == (12, 48)
    assert few[0] == many[0]
