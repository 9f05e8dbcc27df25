"""The contact's preferred channel goes first in the plan of a message when it is created, unless
the message is urgent; fallback then follows the plan as stored."""
import pytest

from channels import routing
from channels.models import Message, MessageSource, MessageStatus
from compliance.models import Decision

pytestmark = pytest.mark.django_db

EMAIL_FIRST = [{"channel": "email", "fallback_after_seconds": 3600, "fallback_unless": "delivered"},
               {"channel": "sms"}, {"channel": "whatsapp"}]


@pytest.fixture
def prefers_sms(contact):
    contact.preferred_channel = "sms"
    contact.save(update_fields=["preferred_channel"])
    return contact


def create(contact, template_version, urgency="normal", plan=EMAIL_FIRST):
    message, _ = routing.create_message(contact=contact, template_version=template_version, channel_plan=plan,
                                        source=MessageSource.API, urgency=urgency)
    return message


def test_the_preferred_channel_goes_first_and_the_others_keep_their_order(prefers_sms, template_version):
    message = create(prefers_sms, template_version)

    message.refresh_from_db()
    assert message.channel_plan == [{"channel": "sms"}, EMAIL_FIRST[0], {"channel": "whatsapp"}]
    assert message.preferred_channel_first == "sms"


@pytest.mark.parametrize("urgency", ["high", "critical"])
def test_an_urgent_message_keeps_its_plans_order(prefers_sms, template_version, urgency):
    message = create(prefers_sms, template_version, urgency=urgency)

    message.refresh_from_db()
    assert message.channel_plan == EMAIL_FIRST
    assert message.preferred_channel_first == ""


@pytest.mark.parametrize("preferred, plan", [("push", EMAIL_FIRST), ("", EMAIL_FIRST),
                                             ("sms", [{"channel": "email"}])])
def test_a_preference_the_plan_cannot_follow_changes_nothing(contact, template_version, preferred, plan):
    contact.preferred_channel = preferred
    contact.save(update_fields=["preferred_channel"])

    message = create(contact, template_version, plan=plan)

    message.refresh_from_db()
    assert message.channel_plan == plan and message.preferred_channel_first == ""


def test_the_decision_keeps_the_preference_in_its_inputs_not_in_its_columns(prefers_sms, template_version, now):
    message = create(prefers_sms, template_version)

    delivery = routing.dispatch(message, now=now)

    assert delivery.channel == "sms" and delivery.plan_step == 0
    decision = Decision.objects.get(message_id=message.pk)
    assert decision.inputs["channel_facts"] == {"preferred_channel_first": "sms"}
    assert not [name for name in Decision.DIGEST_FIELDS if "prefer" in name]


def test_an_urgent_decision_says_nothing_of_the_preference(prefers_sms, template_version, now):
    message = create(prefers_sms, template_version, urgency="high")

    delivery = routing.dispatch(message, now=now)

    assert delivery.channel == "email"
    assert "channel_facts" not in Decision.objects.get(message_id=message.pk).inputs


def test_fallback_moves_to_the_next_step_of_the_plan_as_stored(prefers_sms, template_version, now):
    message = create(prefers_sms, template_version)
    first = routing.dispatch(message, now=now)

    second = routing.fall_back(first, "failed", now=now)

    assert (first.channel, second.channel, second.plan_step) == ("sms", "email", 1)
    message.refresh_from_db()
    assert message.plan_step == 1 and message.status == MessageStatus.QUEUED
    # The email step's own fallback timer came with it.
    assert second.fallback_due_at is not None


def test_messages_built_without_their_contact_read_the_preferences_in_one_query(
        prefers_sms, template_version, django_assert_num_queries):
    unsaved = [Message(contact_id=prefers_sms.pk, template_version=template_version, channel_plan=EMAIL_FIRST,
                       source=MessageSource.JOURNEY, purpose="transactional") for _ in range(3)]

    with django_assert_num_queries(1):
        routing.put_preferred_channel_first(unsaved)

    assert [m.channel_plan[0]["channel"] for m in unsaved] == ["sms", "sms", "sms"]
