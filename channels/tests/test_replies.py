"""Agents' replies (channels/replies.py): through create_message and the gate, conversational
within 24 hours of the customer's last message, refused with the reason in words, sent once per
form, sent again when they failed, templates outside WhatsApp's window, saved replies rendered
strictly, and a first message that opens the conversation."""
from datetime import datetime, time, timedelta, timezone as dt_timezone

import pytest
from django.db import connection

from channels import conversations, replies
from channels.models import (
    Conversation,
    ConversationStatus,
    Delivery,
    Message,
    MessageSource,
    MessageStatus,
    SavedReply,
)
from channels.provider_reports import record_inbound_message
from compliance.actions import record_opt_out
from compliance.models import Decision, FrequencyCap, QuietHours
from contacts.models import Contact
from omni.models import AuditEntry
from omni.tests.fakes import purge_queues, run_concurrently
from templates.models import Template, TemplateVersion

UTC = dt_timezone.utc
# 23:00 in Los Angeles, where a +1 415 number's clock is.
NIGHT = datetime(2026, 6, 2, 6, 0, tzinfo=UTC)


@pytest.fixture
def agent(django_user_model):
    return django_user_model.objects.create_user(username="sam", password="not-used", is_staff=True)


def customer_wrote(contact, channel="sms", *, at, sid="SM1"):
    """The customer's message, recorded as the inbound webhook records it, and the conversation it
    opened or continued."""
    inbound, _ = record_inbound_message("twilio", sid, channel, contact.phone, "+15005550006",
                                        "Where is my order?", received_at=at)
    return Conversation.objects.get(pk=inbound.conversation_id)


@pytest.fixture
def conversation(contact):
    return customer_wrote(contact, at=NIGHT - timedelta(hours=1))


@pytest.fixture
def nights_and_one_a_day(db):
    QuietHours.objects.create(name="Nights", start=time(21), end=time(8))
    FrequencyCap.objects.create(name="One a day", limit=1, window_seconds=86400)


def test_a_reply_within_24_hours_passes_quiet_hours_and_caps_but_not_an_opt_out(conversation, agent,
                                                                                 nights_and_one_a_day):
    # given it is night where the customer is, and a first reply already used today's one message
    first = replies.reply(conversation, agent=agent, body="Let me check.", form_token="t1", now=NIGHT)

    # when the agent answers again
    second = replies.reply(conversation, agent=agent, body="It ships tomorrow.", form_token="t2",
                           now=NIGHT + timedelta(minutes=5))

    # then both go, as conversational replies, and the decision says which rules they passed
    assert (first.status, second.status) == (MessageStatus.QUEUED, MessageStatus.QUEUED)
    assert (second.source, second.purpose, second.agent, second.conversation) == (
        MessageSource.AGENT, "informational", agent, conversation)
    assert second.content == [{"channel": "sms", "text_body": "It ships tomorrow."}]
    decision = Decision.objects.get(message_id=second.pk)
    assert decision.inputs["exemption"] == "conversational_reply"
    assert [(rule["rule"], rule["result"]) for rule in decision.inputs["rules"]] == [
        ("quiet_hours", "exempt"), ("frequency_cap", "exempt")]
    assert AuditEntry.objects.filter(action="conversation.replied", actor_id=agent.pk).count() == 2
    conversation.refresh_from_db()
    assert (conversation.first_response_at, conversation.first_response_seconds) == (NIGHT, 3600)

    # when the customer opts out, and the agent writes once more
    record_opt_out(conversation.contact, ["sms"], "keyword", evidence={"keyword": "STOP"})
    third = replies.reply(conversation, agent=agent, body="Anything else?", form_token="t3",
                          now=NIGHT + timedelta(minutes=10))

    # then the opt-out stops it
    assert (third.status, third.status_reason) == (MessageStatus.SUPPRESSED, "opted_out")
    assert not Delivery.objects.filter(message=third).exists()


def test_after_24_hours_a_reply_is_a_normal_send_that_quiet_hours_defer(contact, agent, nights_and_one_a_day):
    conversation = customer_wrote(contact, at=NIGHT - timedelta(hours=25))

    message = replies.reply(conversation, agent=agent, body="Sorry for the wait.", form_token="t1", now=NIGHT)

    assert not replies.is_conversational(conversation, NIGHT)
    assert (message.status, message.status_reason, message.exemption) == (MessageStatus.DEFERRED, "quiet_hours", "")
    assert replies.refusal_in_words(message) == (
        "It is quiet hours where the contact is. It will be tried again at 2026-06-02 15:00 UTC.")
    # and the agent answered: it counts as the first response, when the agent wrote it
    conversation.refresh_from_db()
    assert conversation.first_response_at == NIGHT


def test_a_reply_to_an_opted_out_contact_is_refused_in_words_and_nothing_reaches_twilio(
    contact, agent, twilio_settings, twilio_server, eager_celery, django_capture_on_commit_callbacks
):
    # given Bob may be written to and Alice opted out of SMS
    bob = Contact.objects.create(external_id="bob", phone="+14155550102")
    now = NIGHT + timedelta(hours=12)
    to_bob, to_alice = customer_wrote(bob, at=now, sid="SMbob"), customer_wrote(contact, at=now, sid="SMalice")
    record_opt_out(contact, ["sms"], "keyword", evidence={"keyword": "STOP"})

    # when the agent replies to both, the sends running as they would after commit
    with django_capture_on_commit_callbacks(execute=True):
        sent = replies.reply(to_bob, agent=agent, body="On its way.", form_token="bob", now=now)
        refused = replies.reply(to_alice, agent=agent, body="On its way.", form_token="alice", now=now)

    # then Bob's reply reached Twilio, Alice's stays in the thread, not sent, with its reason in words
    assert [(m["To"], m["Body"]) for m in twilio_server.messages] == [("+14155550102", "On its way.")]
    assert Delivery.objects.get(message=sent).status == "sent"
    refused.refresh_from_db()
    assert (refused.status, refused.conversation) == (MessageStatus.SUPPRESSED, to_alice)
    assert not Delivery.objects.filter(message=refused).exists()
    assert replies.refusal_in_words(refused) == "The contact opted out of informational messages by SMS."
    assert replies.refusal_in_words(sent) == ""
    # and only the reply that went counts as the first response
    to_bob.refresh_from_db(), to_alice.refresh_from_db()
    assert (to_bob.first_response_at, to_alice.first_response_at) == (now, None)


def test_a_double_submit_sends_once(conversation, agent):
    first = replies.reply(conversation, agent=agent, body="On its way.", form_token="form-1", now=NIGHT)
    again = replies.reply(conversation, agent=agent, body="On its way.", form_token="form-1", now=NIGHT)

    assert again.pk == first.pk
    assert Message.objects.filter(conversation=conversation).count() == 1
    assert Delivery.objects.filter(message=first).count() == 1
    assert Decision.objects.filter(message_id=first.pk).count() == 1


def test_a_form_token_used_in_another_conversation_is_refused(conversation, agent):
    other = customer_wrote(Contact.objects.create(external_id="bob", phone="+14155550102"), at=NIGHT, sid="SM2")
    replies.reply(conversation, agent=agent, body="On its way.", form_token="form-1", now=NIGHT)

    with pytest.raises(replies.ReplyError, match="already used"):
        replies.reply(other, agent=agent, body="Hello", form_token="form-1", now=NIGHT)


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
def test_two_submits_at_once_make_one_message_and_one_delivery(transactional_db, django_user_model):
    contact = Contact.objects.create(external_id="racer", phone="+14155550100")
    agent = django_user_model.objects.create_user(username="sam", password="not-used", is_staff=True)
    conversation = customer_wrote(contact, at=NIGHT)

    results, errors = run_concurrently(
        lambda: replies.reply(conversation, agent=agent, body="On its way.", form_token="form-1", now=NIGHT).pk, 4)

    assert errors == [] and len(set(results)) == 1
    assert Message.objects.count() == 1 and Delivery.objects.count() == 1


@pytest.mark.parametrize("body, complaint", [("   ", "Write something"), ("x" * 1601, "at most 1,600")])
def test_an_empty_or_too_long_reply_is_refused_in_words_and_nothing_is_stored(conversation, agent, body, complaint):
    with pytest.raises(replies.ReplyError, match=complaint):
        replies.reply(conversation, agent=agent, body=body, form_token="t1", now=NIGHT)

    assert not Message.objects.exists()


def test_a_closed_conversation_takes_no_reply(conversation, agent):
    conversations.close([conversation], actor=agent, now=NIGHT)
    conversation.refresh_from_db()

    with pytest.raises(replies.ReplyError, match="closed"):
        replies.reply(conversation, agent=agent, body="Hello?", form_token="t1", now=NIGHT)
    assert replies.reply_form_options(conversation, NIGHT).free_text_allowed is False


def test_a_failed_reply_is_sent_again_as_a_new_message_linked_to_it(
    contact, agent, twilio_settings, twilio_server, eager_celery, django_capture_on_commit_callbacks
):
    # given Twilio refuses the first send for good (the account may not send to the region yet)
    now = NIGHT + timedelta(hours=12)
    conversation = customer_wrote(contact, at=now)
    twilio_server.fail_next(400, code=21408, message="Permission to send an SMS has not been enabled for the region")
    with django_capture_on_commit_callbacks(execute=True):
        failed = replies.reply(conversation, agent=agent, body="On its way.", form_token="t1", now=now)
    failed.refresh_from_db()
    assert failed.status == MessageStatus.FAILED
    assert replies.refusal_in_words(failed).startswith("The provider could not deliver it (21408")

    # when the agent sends it again (twice, a double click)
    with django_capture_on_commit_callbacks(execute=True):
        again = replies.resend(failed, agent=agent, form_token="t2", now=now + timedelta(minutes=1))
        replies.resend(failed, agent=agent, form_token="t2", now=now + timedelta(minutes=1))

    # then a new message linked to the failed one went out; the failed one stays failed
    again.refresh_from_db(), failed.refresh_from_db()
    assert (again.resent_from, again.content, again.status) == (failed, failed.content, MessageStatus.SENT)
    assert failed.status == MessageStatus.FAILED
    # (Twilio saw the refused request and the one resend: the double click sent nothing more)
    assert [m["Body"] for m in twilio_server.messages] == ["On its way.", "On its way."]
    assert AuditEntry.objects.filter(action="conversation.resent", object_id=str(again.pk)).count() == 1
    with pytest.raises(replies.ReplyError, match="Only a failed reply"):
        replies.resend(again, agent=agent, form_token="t3", now=now)


def test_two_failed_replies_sent_again_from_one_page_are_two_messages(
    contact, agent, twilio_settings, twilio_server, eager_celery, django_capture_on_commit_callbacks
):
    # given two replies Twilio refused
    now = NIGHT + timedelta(hours=12)
    conversation = customer_wrote(contact, at=now)
    failed = []
    for token, body in (("a", "First"), ("b", "Second")):
        twilio_server.fail_next(400, code=21408, message="Permission to send an SMS has not been enabled")
        with django_capture_on_commit_callbacks(execute=True):
            failed.append(replies.reply(conversation, agent=agent, body=body, form_token=token, now=now))

    for message in failed:
        message.refresh_from_db()
    assert [m.status for m in failed] == [MessageStatus.FAILED, MessageStatus.FAILED]

    # when the agent sends both again from one page (its forms share the page's token)
    with django_capture_on_commit_callbacks(execute=True):
        again = [replies.resend(m, agent=agent, form_token="page", now=now) for m in failed]

    # then each went out again, as its own message
    assert [m.resent_from for m in again] == failed
    assert [m["Body"] for m in twilio_server.messages][-2:] == ["First", "Second"]


@pytest.fixture
def shipping_update(db):
    """A published utility template with an approved WhatsApp content template."""
    template = Template.objects.create(key="order-update", name="Order update", purpose="informational")
    variants = [{"channel": "whatsapp", "locale": "en", "subject": "", "preheader": "", "html_body": "", "title": "",
                 "text_body": "Hi {{ first_name }}, we have news about your order. Reply to hear it.",
                 "provider_template_id": "HX00000000000000000000000000000042"}]
    return TemplateVersion.objects.create(template=template, number=1, variants=variants, purpose="informational")


def test_outside_whatsapps_window_free_text_is_refused_and_an_approved_template_is_sent(
    contact, agent, shipping_update, template_version, twilio_settings, twilio_server, eager_celery,
    django_capture_on_commit_callbacks
):
    # given Alice last wrote on WhatsApp 30 hours ago; a newsletter template is published too
    now = NIGHT + timedelta(hours=12)
    conversation = customer_wrote(contact, "whatsapp", at=now - timedelta(hours=30))
    TemplateVersion.objects.create(template=Template.objects.create(key="news", name="News"), number=1,
                                   purpose="marketing", variants=shipping_update.variants)

    # when the agent opens the reply form, then tries free text
    options = replies.reply_form_options(conversation, now)
    with pytest.raises(replies.ReplyError, match="WhatsApp takes free text only within 24 hours"):
        replies.reply(conversation, agent=agent, body="Hello again", form_token="t1", now=now)

    # then only approved templates that are not marketing are offered
    assert options.free_text_allowed is False and "approved template" in options.why
    assert options.templates == [template_version, shipping_update]  # by name

    # when the agent sends the template
    with django_capture_on_commit_callbacks(execute=True):
        message = replies.reply_with_template(conversation, agent=agent, template=shipping_update, form_token="t2",
                                              now=now)

    # then Twilio got the content template, not free text
    assert (message.template_version, message.purpose, message.exemption) == (shipping_update, "informational", "")
    [sent] = twilio_server.messages
    assert (sent["To"], sent["ContentSid"]) == ("whatsapp:+14155550100", "HX00000000000000000000000000000042")
    assert "Body" not in sent
    assert not Message.objects.filter(content__isnull=False).exists()


def test_a_transactional_template_sent_as_a_reply_is_informational_and_stops_at_a_paused_contact(
        contact, agent, shipping_update):
    receipt = TemplateVersion.objects.create(
        template=Template.objects.create(key="receipt", name="Receipt", purpose="transactional"), number=1,
        purpose="transactional", variants=shipping_update.variants)
    conversation = customer_wrote(contact, "whatsapp", at=NIGHT - timedelta(hours=30))
    Contact.objects.filter(pk=contact.pk).update(messaging_paused=True)

    message = replies.reply_with_template(conversation, agent=agent, template=receipt, form_token="t1", now=NIGHT)

    assert (message.purpose, message.status, message.status_reason) == (
        "informational", MessageStatus.SUPPRESSED, "contact_paused")


def test_a_marketing_template_is_not_a_reply(contact, agent):
    conversation = customer_wrote(contact, "whatsapp", at=NIGHT - timedelta(hours=30))
    news = TemplateVersion.objects.create(
        template=Template.objects.create(key="news", name="News"), number=1, purpose="marketing",
        variants=[{"channel": "whatsapp", "locale": "en", "text_body": "News", "provider_template_id": "HX1"}])

    with pytest.raises(replies.ReplyError, match="marketing template"):
        replies.reply_with_template(conversation, agent=agent, template=news, form_token="t1", now=NIGHT)


def test_a_content_template_reply_names_each_variable_of_its_lines_the_contact_lacks(contact, agent):
    # given an approved WhatsApp template whose {{2}} needs an order id Alice does not have
    conversation = customer_wrote(contact, "whatsapp", at=NIGHT - timedelta(hours=30))
    shipped = TemplateVersion.objects.create(
        template=Template.objects.create(key="shipped", name="Shipped"), number=1, purpose="transactional",
        variants=[{"channel": "whatsapp", "locale": "en", "text_body": "Shipped", "provider_template_id": "HX1",
                   "provider_variables": "{{ first_name }}\n{{ order_id }}"}])

    # when an agent sends it, then nothing is made and the missing variable is named
    with pytest.raises(replies.MissingVariables) as missing:
        replies.reply_with_template(conversation, agent=agent, template=shipped, form_token="t1", now=NIGHT)
    assert missing.value.names == ["order_id"]
    assert not conversation.messages.exists()


def test_within_whatsapps_window_free_text_is_offered(contact, agent):
    conversation = customer_wrote(contact, "whatsapp", at=NIGHT - timedelta(hours=2))

    options = replies.reply_form_options(conversation, NIGHT)
    message = replies.reply(conversation, agent=agent, body="Hello again", form_token="t1", now=NIGHT)

    assert options.free_text_allowed and options.templates == []
    assert message.status == MessageStatus.QUEUED


def test_a_saved_reply_is_rendered_for_the_contact_and_each_unknown_variable_is_named(contact, conversation):
    # given saved replies for every channel and one for WhatsApp only
    contact.attributes = {"plan": "Gold"}
    contact.save()
    greeting = SavedReply.objects.create(title="Greeting",
                                         body="Hi {{ first_name }}, thanks for being on {{ contact.attributes.plan }}.")
    broken = SavedReply.objects.create(
        title="Broken", body="Hi {{ nickname }}, your {{ contact.attributes.tier }} order {{ order_id }} "
                             "is with {{ nickname | default('us') }}. {{ contact.first_name }}")
    SavedReply.objects.create(title="WhatsApp only", body="Hi", channel="whatsapp")

    # when they are rendered for Alice
    text = replies.render_saved_reply(greeting, contact)
    with pytest.raises(replies.MissingVariables) as missing:
        replies.render_saved_reply(broken, contact)

    # then the good one is filled in; the broken one names every variable Alice lacks
    assert text == "Hi Alice, thanks for being on Gold."
    assert missing.value.names == ["nickname", "contact.attributes.tier", "order_id"]
    assert "nickname, contact.attributes.tier, order_id" in str(missing.value)
    assert [saved.title for saved in replies.reply_form_options(conversation, NIGHT).saved_replies] == [
        "Broken", "Greeting"]


def test_an_agent_starts_a_conversation_with_a_first_message(contact, agent, nights_and_one_a_day):
    # when the agent writes first to a contact who never wrote in, at night
    conversation, message = replies.start_conversation(contact, "sms", agent=agent, body="Your order is ready.",
                                                       form_token="t1", now=NIGHT)
    same = replies.start_conversation(contact, "sms", agent=agent, body="Your order is ready.", form_token="t1",
                                      now=NIGHT)

    # then a conversation waiting on the customer opens, assigned to the agent, and the message
    # goes through the same gate: not conversational, so quiet hours defer it
    assert same == (conversation, message)
    assert (conversation.status, conversation.assignee, conversation.waiting_since) == (
        ConversationStatus.WAITING, agent, NIGHT)
    assert (message.conversation, message.status, message.status_reason) == (
        conversation, MessageStatus.DEFERRED, "quiet_hours")
    assert AuditEntry.objects.filter(action="conversation.started", object_id=str(conversation.pk)).count() == 1
    assert conversation.first_response_at is None  # nobody wrote in: nothing was answered

    # when another agent starts one on the same channel: the conversation not closed is reused
    _, second = replies.start_conversation(contact, "sms", agent=agent, body="Still there?", form_token="t2",
                                           now=NIGHT)
    assert second.conversation == conversation
    assert Conversation.objects.filter(contact=contact).count() == 1


def test_starting_a_conversation_needs_an_address_on_the_channel(agent):
    nobody = Contact.objects.create(external_id="nobody", email="nobody@example.com")

    with pytest.raises(replies.ReplyError, match="has no address for SMS"):
        replies.start_conversation(nobody, "sms", agent=agent, body="Hello", form_token="t1", now=NIGHT)
    assert not Conversation.objects.exists() and not Message.objects.exists()


@pytest.mark.celery_worker
def test_a_reply_goes_through_a_real_celery_worker_to_the_local_twilio_server(
    celery_worker, finished_tasks, twilio_settings, twilio_server, django_user_model
):
    from channels.tasks import send_deliveries_task

    # given Alice wrote in an hour ago
    contact = Contact.objects.create(external_id="alice", phone="+14155550100", first_name="Alice")
    agent = django_user_model.objects.create_user(username="sam", password="not-used", is_staff=True)
    now = datetime.now(UTC)
    conversation = customer_wrote(contact, at=now - timedelta(hours=1))

    try:
        # when the agent replies (a double click)
        message = replies.reply(conversation, agent=agent, body="Your parcel left today.", form_token="t1")
        replies.reply(conversation, agent=agent, body="Your parcel left today.", form_token="t1")

        # then the worker sends it to Twilio once
        delivery = Delivery.objects.get(message=message)
        finished_tasks.wait_for_ids(send_deliveries_task, [delivery.pk])
    finally:
        purge_queues()
    assert [(m["To"], m["Body"]) for m in twilio_server.messages] == [("+14155550100", "Your parcel left today.")]
    delivery.refresh_from_db(), message.refresh_from_db()
    assert (delivery.status, message.status, message.exemption) == ("sent", MessageStatus.SENT, "conversational_reply")
