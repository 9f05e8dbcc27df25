"""A conversation an agent opened: the first response counts from the customer's first message,
not from the agent's; and a failed reply is sent again once, however often its button is clicked."""
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest

from channels import replies
from channels.models import Conversation, Message, MessageStatus, ServiceLevel
from channels.provider_reports import record_inbound_message

UTC = dt_timezone.utc
NOON = datetime(2026, 6, 2, 19, 0, tzinfo=UTC)  # noon in Los Angeles, where a +1 415 number's clock is


@pytest.fixture
def agent(django_user_model):
    return django_user_model.objects.create_user(username="sam", password="not-used", is_staff=True)


def customer_wrote(contact, *, at, sid):
    inbound, _ = record_inbound_message("twilio", sid, "sms", contact.phone, "+15005550006", "Where is my order?",
                                        received_at=at)
    return Conversation.objects.get(pk=inbound.conversation_id)


def test_the_first_response_to_a_customer_answering_an_agent_counts_from_the_customers_message(contact, agent):
    # given an agent wrote first, and the customer answered three days later
    conversation, _ = replies.start_conversation(contact, "sms", agent=agent, body="Your order is ready.",
                                                 form_token="start", now=NOON)
    answered = NOON + timedelta(days=3)
    assert customer_wrote(contact, at=answered, sid="SM1") == conversation

    # when the agent replies ten minutes after the customer's message
    replies.reply(Conversation.objects.get(pk=conversation.pk), agent=agent, body="Great, see you then.",
                  form_token="reply", now=answered + timedelta(minutes=10))

    # then the customer waited ten minutes for an answer, not the three days they took to write back
    conversation.refresh_from_db()
    assert conversation.first_response_at == answered + timedelta(minutes=10)
    assert conversation.first_response_seconds == 600
    assert conversation.first_response_business_seconds == 600


def test_a_failed_reply_sent_again_is_not_sent_a_second_time_from_a_reloaded_page(
    contact, agent, twilio_settings, twilio_server, eager_celery, django_capture_on_commit_callbacks
):
    # given a reply Twilio refused, sent again once from the thread
    conversation = customer_wrote(contact, at=NOON, sid="SM1")
    twilio_server.fail_next(400, code=21408, message="Permission to send an SMS has not been enabled for the region")
    with django_capture_on_commit_callbacks(execute=True):
        failed = replies.reply(conversation, agent=agent, body="On its way.", form_token="t1", now=NOON)
    failed.refresh_from_db()
    assert failed.status == MessageStatus.FAILED
    with django_capture_on_commit_callbacks(execute=True):
        again = replies.resend(failed, agent=agent, form_token="page1", now=NOON + timedelta(minutes=1))

    # when the page is drawn again (a new token) and the failed reply's "Send again" is clicked once more
    with pytest.raises(replies.ReplyError, match="already sent again"):
        with django_capture_on_commit_callbacks(execute=True):
            replies.resend(failed, agent=agent, form_token="page2", now=NOON + timedelta(minutes=2))

    # then the customer got it once more only
    assert list(Message.objects.filter(resent_from=failed)) == [again]
    assert [m["Body"] for m in twilio_server.messages] == ["On its way.", "On its way."]


def test_a_customer_answering_an_agent_gets_the_due_times_of_a_message_that_opens_a_conversation(contact, agent):
    # given SMS answered within 30 minutes and resolved within a day, around the clock
    ServiceLevel.objects.create(channel="sms", first_response_minutes=30, resolution_minutes=24 * 60)
    # and an agent wrote first: the conversation waits on the customer, nothing is due
    conversation, _ = replies.start_conversation(contact, "sms", agent=agent, body="Your order is ready.",
                                                 form_token="start", now=NOON)
    conversation.refresh_from_db()
    assert conversation.first_response_due_at is None

    # when the customer answers three days later
    answered = NOON + timedelta(days=3)
    customer_wrote(contact, at=answered, sid="SM1")

    # then an answer is due as for any customer who writes in, and the inbox can mark it breached
    conversation.refresh_from_db()
    assert conversation.status == "open"
    assert conversation.first_response_due_at == answered + timedelta(minutes=30)
    assert conversation.resolution_due_at == answered + timedelta(days=1)

    # and the customer writing again changes nothing that is due
    customer_wrote(contact, at=answered + timedelta(minutes=5), sid="SM2")
    conversation.refresh_from_db()
    assert conversation.first_response_due_at == answered + timedelta(minutes=30)
