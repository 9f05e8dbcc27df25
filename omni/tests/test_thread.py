"""The support thread (omni.web.thread): every kind of entry in the order agents read it, a
failure shown as a failure whoever sent the message, why a message was not sent in the words
channels.replies uses, and a fixed number of queries however many entries were refused."""
import re
import uuid

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from campaigns.tick import tick
from channels import conversations, replies, routing
from channels.erasure import cancel_unsent
from channels.models import Conversation, Message, MessageSource, MessageStatus
from channels.providers.sandbox import UNDELIVERABLE_NUMBER
from channels.provider_reports import record_inbound_message
from contacts.models import Contact
from omni.choices import Purpose
from omni.web import thread


@pytest.fixture
def agent(django_user_model, role_groups):
    user = django_user_model.objects.create_user(username="agent", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="Support agents"))
    return user


@pytest.fixture
def bob(db):
    return Contact.objects.create(external_id="bob", first_name="Bob", phone="+14155550123")


@pytest.fixture
def dave(db):
    """A contact whose number the sandbox reports undelivered."""
    return Contact.objects.create(external_id="dave", first_name="Dave", phone=UNDELIVERABLE_NUMBER)


def writes_in(contact, body) -> Conversation:
    """The contact texts in through the webhooks' path; returns their conversation."""
    inbound, _ = record_inbound_message("sandbox", uuid.uuid4().hex, "sms", contact.phone, body=body)
    return Conversation.objects.get(pk=inbound.conversation_id)


def an_automated_message(conversation, text) -> Message:
    """A message of Omni's own in the conversation, routed as channels.consent_messages does."""
    message, _ = routing.create_message(
        contact=conversation.contact, channel_plan=[{"channel": "sms"}], source=MessageSource.SYSTEM,
        content=[{"channel": "sms", "text_body": text}], purpose=Purpose.TRANSACTIONAL, conversation=conversation)
    routing.dispatch(message)
    return message


def a_reply(conversation, agent, body) -> Message:
    return replies.reply(conversation, agent=agent, body=body, form_token=str(uuid.uuid4()))


def thread_page(client, conversation) -> str:
    response = client.get(reverse("omni-web:thread", args=[conversation.pk]))
    assert response.status_code == 200
    return response.content.decode()


def entry_html(page, message) -> str:
    found = re.search(rf'<article [^>]*id="message-{message.pk}">.*?</article>', page, re.S)
    assert found, f"message {message.pk} is not in the thread"
    return found.group(0)


def label_of(entry) -> str:
    """The status label's words and colour in one entry of the page."""
    label = re.search(r'<span class="delivery-status[^"]*">\s*<span class="([^"]*)"[^>]*>\s*(.*?)\s*</span>',
                      entry, re.S)
    assert label, "the entry has no status label"
    classes, words = label.groups()
    colour = next(c for c in ("red", "green", "orange") if f"bg-{c}-100" in classes)
    return f"{words} ({colour})"


# --- the order ------------------------------------------------------------------------------------

def test_the_thread_shows_every_kind_of_entry_oldest_first(client, agent, bob, keyword_lists, eager_celery,
                                                          django_capture_on_commit_callbacks):
    # given a conversation holding each kind, made one after the other
    with django_capture_on_commit_callbacks(execute=True):
        conversation = writes_in(bob, "Can I move to the yearly plan?")
        writes_in(bob, "HELP")
        automated = an_automated_message(conversation, "We answer within the hour.")
        reply = a_reply(conversation, agent, "Yes, from your next invoice.")
    conversations.add_note(conversation, "Asked about yearly pricing before.", author=agent)
    confirmation = Message.objects.get(conversation=conversation, idempotency_key__startswith="keyword:")
    client.force_login(agent)

    # when an agent opens it
    page = thread_page(client, conversation)

    # then each entry is shown once, as what it is, in the order it happened
    kinds = re.findall(r'<article class="thread-entry [^"]*" data-kind="(\w+)"', page)
    assert kinds == ["inbound", "inbound", "keyword", "automated", "reply", "note"]
    assert [entry.kind for entry in thread.read(conversation).entries] == kinds
    bodies = re.findall(r'<pre class="body">(.*?)</pre>', page, re.S)
    assert bodies == [escape(text) for text in (
        "Can I move to the yearly plan?", "HELP", confirmation.content[0]["text_body"], "We answer within the hour.",
        "Yes, from your next invoice.", "Asked about yearly pricing before.")]
    assert label_of(entry_html(page, automated)) == label_of(entry_html(page, reply)) == "Delivered (green)"


# --- failures -------------------------------------------------------------------------------------

def test_a_failed_automated_message_or_keyword_confirmation_is_shown_failed_without_send_again(
        client, agent, dave, keyword_lists, eager_celery, django_capture_on_commit_callbacks):
    # given automated messages to a number the provider reports undelivered
    with django_capture_on_commit_callbacks(execute=True):
        conversation = writes_in(dave, "hello?")
        writes_in(dave, "HELP")
        automated = an_automated_message(conversation, "We answer within the hour.")
    confirmation = Message.objects.get(conversation=conversation, idempotency_key__startswith="keyword:")
    client.force_login(agent)

    # then, undelivered while it waits for a fallback, it is not shown as a success
    page = thread_page(client, conversation)
    assert label_of(entry_html(page, automated)) == "Undelivered (red)"

    # and once no channel is left (the tick fails it), neither is
    with django_capture_on_commit_callbacks(execute=True):
        tick()
    automated.refresh_from_db()
    assert automated.status == MessageStatus.FAILED
    page = thread_page(client, conversation)
    for message in (automated, confirmation):
        entry = entry_html(page, message)
        assert label_of(entry) == "Undelivered (red)"
        # only an agent's reply can be sent again from the thread (channels.replies.resend)
        assert "Send again" not in entry


def test_a_failed_reply_offers_send_again_until_it_was_sent_again(
        client, agent, dave, eager_celery, django_capture_on_commit_callbacks):
    # given an agent's reply to a number the provider reports undelivered, failed once no channel is left
    with django_capture_on_commit_callbacks(execute=True):
        conversation = writes_in(dave, "hello?")
        failed = a_reply(conversation, agent, "On its way.")
    with django_capture_on_commit_callbacks(execute=True):
        tick()
    failed.refresh_from_db()
    assert failed.status == MessageStatus.FAILED
    client.force_login(agent)
    assert "Send again" in entry_html(thread_page(client, conversation), failed)

    # when it is sent again
    again = replies.resend(failed, agent=agent, form_token=str(uuid.uuid4()))

    # then the failed one no longer offers it (resend refuses a second time)
    page = thread_page(client, conversation)
    assert "Send again" not in entry_html(page, failed)
    assert f"sent again from message {failed.pk}" in entry_html(page, again)


# --- why a message was not sent --------------------------------------------------------------------

def test_the_thread_explains_a_refusal_in_the_words_of_channels_replies(agent, dave, eager_celery,
                                                                       django_capture_on_commit_callbacks):
    from compliance.actions import suppress

    # given a failed reply, a cancelled one and a suppressed one
    conversation = writes_in(dave, "hello?")
    with django_capture_on_commit_callbacks(execute=True):
        failed = a_reply(conversation, agent, "This one fails")
    with django_capture_on_commit_callbacks(execute=True):
        tick()
    cancelled = a_reply(conversation, agent, "This one waits")  # its send task never runs
    cancel_unsent(dave.pk, timezone.now())
    suppress(dave.phone, channel="sms", reason="manual")
    suppressed = a_reply(conversation, agent, "This one is refused")
    assert list(Message.objects.filter(conversation=conversation).order_by("pk").values_list("status", flat=True)) == [
        MessageStatus.FAILED, MessageStatus.CANCELLED, MessageStatus.SUPPRESSED]

    # when the thread reads them
    entries = {entry.row.pk: entry for entry in thread.read(conversation).entries}

    # then it says what channels.replies says of each not sent, from the rows it already read (a
    # failed one shows its delivery's error instead)
    assert entries[failed.pk].refusal == ""
    for message in (cancelled, suppressed):
        expected = replies.refusal_in_words(entries[message.pk].row)
        assert expected and entries[message.pk].refusal == expected
    assert entries[cancelled.pk].refusal == "It was cancelled before it went out."
    assert "suppression list" in entries[suppressed.pk].refusal


# --- fixed query counts ---------------------------------------------------------------------------

def test_the_thread_page_takes_the_same_queries_however_many_replies_were_cancelled_or_failed(
        client, agent, dave, eager_celery, django_capture_on_commit_callbacks, django_assert_num_queries):
    conversation = writes_in(dave, "hello?")

    def cancelled_and_failed_replies(count):
        for index in range(count):
            with django_capture_on_commit_callbacks(execute=True):
                a_reply(conversation, agent, f"fails {index}")
            with django_capture_on_commit_callbacks(execute=True):
                tick()
            a_reply(conversation, agent, f"waits {index}")  # no gate decision refuses it
            cancel_unsent(dave.pk, timezone.now())

    client.force_login(agent)
    url = reverse("omni-web:thread", args=[conversation.pk])
    # session, user, two-factor device and permissions (2); the conversation; saved replies; the
    # thread (inbound, messages, their deliveries, notes, refusing decisions: omni.web.thread);
    # the contact's summary beside it (8: its reachability for every purpose in one gate read);
    # tags and tag names; the sidebar's check; the session's renewal (3)
    expected = 26

    cancelled_and_failed_replies(1)
    with django_assert_num_queries(expected):
        client.get(url)

    cancelled_and_failed_replies(4)
    assert Message.objects.filter(conversation=conversation, status=MessageStatus.CANCELLED).count() == 5
    assert Message.objects.filter(conversation=conversation, status=MessageStatus.FAILED).count() == 5
    with django_assert_num_queries(expected):
        client.get(url)
