"""Conversations: customers writing in through signed Twilio webhooks open and continue them
(channels.provider_reports.record_inbound_message), and agents and automation change them only
through channels.conversations."""
import ast
import io
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels import conversations
from channels.business_hours import MAX_CLOSED_DAYS
from channels.models import (
    BusinessHours,
    Conversation,
    ConversationTag,
    Holiday,
    InboundMessage,
    Message,
    OpeningHours,
    ResolvedBy,
    ServiceLevel,
)
from channels.inbound_settings import inbound_settings
from channels.provider_reports import record_inbound_message
from channels.tasks import close_waiting_conversations_task
from compliance.models import Consent, ConsentChange
from contacts.models import Contact, ContactEvent
from omni.models import AuditEntry, AuditPersonalData
from omni.tests.fakes import run_concurrently

from .inbound import ALICE, post_inbound, writer

STRANGER = "+14155550199"
NEW_YORK = ZoneInfo("America/New_York")
# Friday 20 November 2026 (a fixed day in the past: events may not lie in the future), half an hour before the office closes.
FRIDAY_AFTERNOON = datetime(2026, 11, 20, 16, 30, tzinfo=NEW_YORK)


@pytest.fixture
def write_in(client, twilio_settings):
    return writer(client, twilio_settings)


@pytest.fixture
def sandbox_sends(twilio_settings):
    """Inbound through Twilio's webhook; Omni's own replies (keyword confirmations) through the sandbox."""
    twilio_settings.OMNI_PROVIDERS = {**twilio_settings.OMNI_PROVIDERS, "sms": "sandbox", "whatsapp": "sandbox"}
    return twilio_settings


@pytest.fixture
def agent(db):
    return get_user_model().objects.create_user(username="agent", password="not-used", is_staff=True)


@pytest.fixture
def office_hours(db):
    """SMS answered within an hour and resolved within a working day, Monday to Friday 9 to 5 in New York."""
    hours = BusinessHours.objects.create(name="Office", timezone="America/New_York")
    OpeningHours.objects.bulk_create([OpeningHours(business_hours=hours, weekday=day, opens=time(9), closes=time(17))
                                      for day in range(5)])
    return ServiceLevel.objects.create(channel="sms", business_hours=hours, first_response_minutes=60,
                                       resolution_minutes=8 * 60)


def replied_events():
    return ContactEvent.objects.filter(name="inbound.replied", source="channels")


def write_directly(sender, body="Hello", *, sid, at=None, channel="sms"):
    inbound, _ = record_inbound_message("twilio", sid, channel, sender, to_address="+15005550006", body=body,
                                        received_at=at)
    inbound.refresh_from_db()
    return inbound


# --- threads ---------------------------------------------------------------------------------

def test_an_sms_thread_builds_in_order_and_a_retried_webhook_is_stored_once(write_in, contact):
    # when Alice texts three times, and Twilio retries the second post
    first = write_in("Hi, my order has not arrived", sid="SMa1")
    second = write_in("It was due Monday", sid="SMa2")
    write_in("It was due Monday", sid="SMa2")
    third = write_in("Order 1234", sid="SMa3")

    # then one conversation holds the three messages, in the order they came
    conversation = Conversation.objects.get()
    assert (conversation.contact, conversation.channel, conversation.status) == (contact, "sms", "open")
    assert list(conversation.inbound_messages.order_by("received_at", "pk").values_list("body", flat=True)) == [
        "Hi, my order has not arrived", "It was due Monday", "Order 1234"]
    assert {first.conversation_id, second.conversation_id, third.conversation_id} == {conversation.pk}
    assert conversation.opened_at == first.received_at
    assert conversation.last_inbound_at == conversation.last_activity_at == third.received_at
    assert AuditEntry.objects.filter(action="conversation.opened").count() == 1
    assert InboundMessage.objects.count() == 3
    # and each message is one inbound.replied event for journeys, keyed by the provider's id
    events = {event.idempotency_key: event for event in replied_events()}
    assert sorted(events) == ["inbound:twilio:SMa1", "inbound:twilio:SMa2", "inbound:twilio:SMa3"]
    assert events["inbound:twilio:SMa3"].properties == {
        "conversation_id": conversation.pk, "channel": "sms", "inbound_message_id": third.pk}
    assert events["inbound:twilio:SMa3"].contact == contact


def test_a_whatsapp_thread_is_a_conversation_of_its_own(write_in, contact):
    write_in("Hi on SMS", sid="SMb1")
    whatsapp = write_in("Hi on WhatsApp", sid="SMb2", channel="whatsapp")
    write_in("Still me on WhatsApp", sid="SMb3", channel="whatsapp")

    assert sorted(Conversation.objects.values_list("channel", flat=True)) == ["sms", "whatsapp"]
    thread = Conversation.objects.get(channel="whatsapp")
    assert whatsapp.conversation == thread
    assert list(thread.inbound_messages.order_by("received_at").values_list("body", flat=True)) == [
        "Hi on WhatsApp", "Still me on WhatsApp"]


def test_a_message_to_a_conversation_waiting_on_the_customer_opens_it_again(write_in, contact, agent):
    write_in("Where is my parcel?", sid="SMc1")
    conversation = Conversation.objects.get()
    assert conversations.set_waiting(conversation, actor=agent)
    assert conversation.waiting_since is not None

    write_in("Found it, thanks", sid="SMc2")

    conversation.refresh_from_db()
    assert (conversation.status, conversation.waiting_since) == ("open", None)
    assert Conversation.objects.count() == 1
    assert AuditEntry.objects.filter(action="conversation.reopened", object_id=str(conversation.pk)).count() == 1


def test_after_a_conversation_closed_the_next_message_opens_a_new_one(write_in, contact, agent):
    write_in("Question one", sid="SMd1")
    first = Conversation.objects.get()
    conversations.close([first], actor=agent)

    again = write_in("Question two", sid="SMd2")

    assert Conversation.objects.count() == 2
    assert again.conversation != first and again.conversation.status == "open"


def test_due_times_come_from_the_channels_service_level_in_its_business_hours(contact, office_hours):
    # when Alice writes on Friday half an hour before closing
    write_directly(ALICE, sid="SMe1", at=FRIDAY_AFTERNOON)

    # then the first answer is due after half an hour on Friday and half an hour on Monday
    conversation = Conversation.objects.get()
    assert conversation.first_response_due_at == datetime(2026, 11, 23, 9, 30, tzinfo=NEW_YORK)
    # and the resolution after half an hour on Friday and 7.5 hours on Monday
    assert conversation.resolution_due_at == datetime(2026, 11, 23, 16, 30, tzinfo=NEW_YORK)


def test_due_times_skip_a_holiday_monday(contact, office_hours):
    Holiday.objects.create(business_hours=office_hours.business_hours, date=datetime(2026, 11, 23).date(),
                           name="Closed")

    conversation = write_directly(ALICE, sid="SMe5", at=FRIDAY_AFTERNOON).conversation

    # half an hour on Friday, then Tuesday (Monday is a holiday)
    assert conversation.first_response_due_at == datetime(2026, 11, 24, 9, 30, tzinfo=NEW_YORK)
    assert conversation.resolution_due_at == datetime(2026, 11, 24, 16, 30, tzinfo=NEW_YORK)


def test_due_times_keep_office_hours_across_the_clocks_going_back(contact, office_hours):
    # New York's clocks go back on Sunday 1 November 2026: Friday is on EDT (UTC-4), Monday on EST (UTC-5)
    friday = datetime(2026, 10, 30, 16, 30, tzinfo=NEW_YORK)

    conversation = write_directly(ALICE, sid="SMe6", at=friday).conversation

    monday = conversation.first_response_due_at
    assert monday == datetime(2026, 11, 2, 9, 30, tzinfo=NEW_YORK)
    assert monday.astimezone(UTC).hour == 14  # 09:30 EST, not 09:30 EDT (13:30 UTC)
    assert monday - friday == timedelta(hours=66)  # 65 hours on the wall clock, and the hour it went back


def test_a_service_level_no_schedule_can_meet_still_stores_the_message(contact, office_hours):
    # given business hours closed for longer than a due time is searched for (a long closure)
    monday = FRIDAY_AFTERNOON.date() + timedelta(days=3)
    Holiday.objects.bulk_create([Holiday(business_hours=office_hours.business_hours, date=monday + timedelta(days=n),
                                         name="Closed") for n in range(MAX_CLOSED_DAYS + 7)])

    inbound = write_directly(ALICE, sid="SMe4", at=FRIDAY_AFTERNOON)

    assert inbound.conversation.status == "open"
    assert (inbound.conversation.first_response_due_at, inbound.conversation.resolution_due_at) == (None, None)


def test_without_a_service_level_nothing_is_due(write_in, contact):
    inbound = write_in("Hello", sid="SMe2")

    assert (inbound.conversation.first_response_due_at, inbound.conversation.resolution_due_at) == (None, None)


def test_business_hours_without_openings_still_open_the_conversation(contact, office_hours):
    # given business hours someone emptied (a schedule cannot be made of them)
    OpeningHours.objects.all().delete()

    inbound = write_directly(ALICE, sid="SMe3", at=FRIDAY_AFTERNOON)

    assert inbound.conversation.status == "open" and inbound.conversation.first_response_due_at is None


# --- unknown senders -------------------------------------------------------------------------

def test_an_unknown_sender_gets_a_contact_marked_as_such_with_no_consent_assumed(write_in, db):
    inbound = write_in("Hi, is this the bakery?", sid="SMf1", sender=STRANGER)

    stranger = inbound.contact
    assert (stranger.phone, stranger.email, stranger.unknown_sender) == (STRANGER, "", True)
    assert not Consent.objects.filter(contact=stranger).exists()
    assert not ConsentChange.objects.exists()
    created = AuditEntry.objects.get(action="contact.created", contact_id=stranger.pk)
    assert (created.reason, created.data) == ("unknown_sender", {"fields": ["phone"], "unknown_sender": True})
    assert inbound.conversation.contact == stranger
    assert replied_events().get().contact == stranger


def test_an_unknown_senders_next_messages_find_the_contact_made_for_them(write_in, db):
    write_in("Hello?", sid="SMf2", sender=STRANGER)
    write_in("Anyone there?", sid="SMf3", sender=STRANGER, channel="whatsapp")

    assert Contact.objects.count() == 1
    assert Conversation.objects.filter(contact__phone=STRANGER).count() == 2


def test_a_sender_address_no_contact_can_have_is_kept_and_opens_nothing(db):
    inbound = write_directly("12345", sid="SMf4")  # a short code

    assert (inbound.contact, inbound.conversation) == (None, None)
    assert not Contact.objects.exists() and not replied_events().exists()


needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="Concurrent inserts need PostgreSQL; set DATABASE_URL to run it (SQLite serializes writers instead)",
)


@pytest.mark.postgres
@needs_postgres
@pytest.mark.parametrize("attempt", range(5))
def test_two_posts_at_once_from_one_new_number_make_one_contact_and_one_conversation(transactional_db, attempt):
    sids = iter(["SMg1", "SMg2"])

    def post():
        inbound, created = record_inbound_message("twilio", next(sids), "sms", STRANGER, body="Hello?")
        return inbound.pk, created

    results, errors = run_concurrently(post)

    assert not errors, errors
    assert [created for _, created in results] == [True, True]
    assert Contact.objects.count() == 1
    conversation = Conversation.objects.get()
    assert set(InboundMessage.objects.values_list("contact_id", "conversation_id")) == {
        (conversation.contact_id, conversation.pk)}
    assert replied_events().count() == 2


@pytest.mark.postgres
@needs_postgres
@pytest.mark.parametrize("attempt", range(3))
def test_two_posts_at_once_from_a_known_contact_open_one_conversation(transactional_db, attempt):
    contact = Contact.objects.create(external_id="alice", phone=ALICE)
    sids = iter(["SMg3", "SMg4"])

    def post():
        return record_inbound_message("twilio", next(sids), "sms", ALICE, body="Hello?")[0].pk

    _, errors = run_concurrently(post)

    assert not errors, errors
    conversation = Conversation.objects.get()
    assert conversation.contact == contact
    assert set(InboundMessage.objects.values_list("conversation_id", flat=True)) == {conversation.pk}


def test_a_known_senders_message_is_audited_with_its_conversation_and_seals_into_the_chain(contact, office_hours):
    from omni import audit
    from omni.audit_verification import verify_chain

    # (on PostgreSQL the common message is written in one statement: these are its rows)
    first = write_directly(ALICE, "Where is my order?", sid="SMw1", at=FRIDAY_AFTERNOON)
    second = write_directly(ALICE, "Merci, à demain 👍 \"4411\"", sid="SMw2",
                            at=FRIDAY_AFTERNOON + timedelta(minutes=1))

    assert second.body == 'Merci, à demain 👍 "4411"'  # as sent, through the statement's JSON
    conversation = Conversation.objects.get()
    assert (first.conversation, second.conversation) == (conversation, conversation)
    assert conversation.first_response_due_at == datetime(2026, 11, 23, 9, 30, tzinfo=NEW_YORK)
    assert conversation.last_inbound_at == second.received_at
    entries = list(AuditEntry.objects.order_by("pk").values_list(
        "action", "object_type", "object_id", "contact_id", "channel", "actor_label", "data"))
    assert entries == [
        ("inbound.received", "channels.inboundmessage", str(first.pk), contact.pk, "sms", "provider:twilio",
         {"provider": "twilio", "provider_message_id": "SMw1", "in_reply_to": None, "media": 0}),
        ("conversation.opened", "channels.conversation", str(conversation.pk), contact.pk, "sms", "provider:twilio",
         {"inbound_message": first.pk, "first_response_due_at": "2026-11-23T14:30:00+00:00"}),
        ("inbound.received", "channels.inboundmessage", str(second.pk), contact.pk, "sms", "provider:twilio",
         {"provider": "twilio", "provider_message_id": "SMw2", "in_reply_to": None, "media": 0}),
    ]
    assert replied_events().get(idempotency_key="inbound:twilio:SMw2").properties == {
        "conversation_id": conversation.pk, "channel": "sms", "inbound_message_id": second.pk}
    assert audit.seal_pending() == 3
    assert verify_chain().ok


@pytest.mark.postgres
@needs_postgres
def test_a_message_whose_conversation_an_agent_closes_while_its_statement_waits_opens_a_new_one(transactional_db):
    import threading
    import time as clock

    from django.db import connections, transaction

    contact = Contact.objects.create(external_id="alice", phone=ALICE)
    opened = write_directly(ALICE, "Hello", sid="SMx1").conversation
    closing, finished, waited = threading.Event(), threading.Event(), threading.Event()

    def agent_closes():
        # the agent's close holds the conversation's row until it commits, once the message's
        # statement (which read the conversation open) waits for that row
        try:
            with transaction.atomic():
                conversations.close([opened], actor=None)
                closing.set()
                with connection.cursor() as cursor:
                    for _ in range(500):
                        # (the waiting statement's own text may not show yet: its connection's wait is enough)
                        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                       "AND datname = current_database() AND pid <> pg_backend_pid()")
                        if cursor.fetchone()[0]:
                            waited.set()
                            break
                        clock.sleep(0.01)
        finally:
            connections.close_all()
            finished.set()

    agent = threading.Thread(target=agent_closes)
    agent.start()
    assert closing.wait(10)
    inbound, created = record_inbound_message("twilio", "SMx2", "sms", ALICE, body="One more thing")
    agent.join(10)

    assert finished.is_set() and waited.is_set() and created
    inbound.refresh_from_db()
    assert inbound.conversation not in (None, opened)
    assert inbound.conversation.status == conversations.OPEN
    opened.refresh_from_db()
    assert opened.status == conversations.CLOSED
    assert InboundMessage.objects.filter(provider_message_id="SMx2").count() == 1
    assert AuditEntry.objects.filter(action="inbound.received", data__provider_message_id="SMx2").count() == 1
    assert replied_events().filter(idempotency_key="inbound:twilio:SMx2").get().properties["conversation_id"] == \
        inbound.conversation_id
    assert Conversation.objects.filter(contact=contact).count() == 2


@pytest.mark.postgres
@needs_postgres
def test_the_statement_of_the_common_message_stays_short_enough_for_psycopg_to_keep_its_conversion(contact):
    from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH, MAX_CACHED_STATEMENT_PARAMS

    from channels.provider_reports import _statements

    write_directly(ALICE, sid="SMshort1")

    # longer, psycopg would parse it for its placeholders on every message
    assert _statements
    for sql in _statements.values():
        assert len(sql) <= MAX_CACHED_STATEMENT_LENGTH
        assert sql.count("%s") <= MAX_CACHED_STATEMENT_PARAMS


@pytest.mark.postgres
@needs_postgres
@pytest.mark.parametrize("attempt", range(3))
def test_one_message_posted_twice_at_once_by_a_known_contact_is_stored_once(transactional_db, attempt):
    Contact.objects.create(external_id="alice", phone=ALICE)
    write_directly(ALICE, "Hello", sid="SMy1")  # its conversation is open: both copies take the one-statement write

    def post():
        inbound, created = record_inbound_message("twilio", "SMy2", "sms", ALICE, body="Again")
        return inbound.pk, created

    results, errors = run_concurrently(post)

    assert not errors, errors
    assert sorted(created for _, created in results) == [False, True]
    assert len({pk for pk, _ in results}) == 1
    assert InboundMessage.objects.filter(provider_message_id="SMy2").count() == 1
    assert AuditEntry.objects.filter(action="inbound.received").count() == 2
    assert replied_events().count() == 2


# --- keywords and satisfaction answers -------------------------------------------------------

def test_a_stop_and_its_confirmation_join_the_open_conversation_and_open_none(write_in, sandbox_sends, contact,
                                                                              keyword_lists):
    write_in("Can I change my delivery address?", sid="SMh1")
    conversation = Conversation.objects.get()

    stop = write_in("STOP", sid="SMh2")

    assert stop.keyword == "stop" and stop.conversation == conversation
    assert Conversation.objects.count() == 1
    confirmation = Message.objects.get(idempotency_key=f"keyword:{stop.pk}")
    assert confirmation.conversation == conversation
    # a keyword is no reply to a journey: only the question is an inbound.replied event
    assert list(replied_events().values_list("idempotency_key", flat=True)) == ["inbound:twilio:SMh1"]


def test_a_keyword_from_a_contact_with_no_open_conversation_opens_none(write_in, sandbox_sends, contact,
                                                                      keyword_lists):
    help_ = write_in("HELP", sid="SMh3")

    assert help_.keyword == "help" and help_.conversation is None
    assert not Conversation.objects.exists() and not replied_events().exists()
    assert Message.objects.get(idempotency_key=f"keyword:{help_.pk}").conversation is None


def test_a_keyword_from_a_stranger_makes_no_contact(write_in, sandbox_sends, keyword_lists):
    stop = write_in("STOP", sid="SMh4", sender=STRANGER)

    assert (stop.keyword, stop.contact, stop.conversation) == ("stop", None, None)
    assert not Contact.objects.exists()


def test_an_opt_out_word_inside_other_text_opens_a_conversation_for_an_agent(write_in, sandbox_sends, contact,
                                                                             keyword_lists):
    inbound = write_in("Please stop texting me about the sale, I only want order updates", sid="SMh5")

    assert inbound.needs_agent and inbound.conversation is not None
    assert inbound.conversation.status == "open"
    confirmation = Message.objects.get(idempotency_key=f"keyword:{inbound.pk}")
    assert confirmation.conversation == inbound.conversation
    assert replied_events().count() == 1


@pytest.fixture
def surveyed(contact, agent):
    """Alice's SMS conversation, closed, and asked the satisfaction question an hour ago."""
    now = timezone.now()
    inbound = write_directly(ALICE, sid="SMi0", at=now - timedelta(hours=3))
    conversations.close([inbound.conversation], actor=agent, now=now - timedelta(hours=2))
    Conversation.objects.filter(pk=inbound.conversation_id).update(satisfaction_asked_at=now - timedelta(hours=1))
    ask(inbound.conversation, said_at=now - timedelta(hours=1))
    return Conversation.objects.get(pk=inbound.conversation_id)


def ask(conversation, *, said_at):
    """The satisfaction question as support_automation makes it, said at `said_at` (None: not said)."""
    return Message.objects.create(
        contact_id=conversation.contact_id, conversation=conversation, source="system", purpose="informational",
        intent_key=conversations.SATISFACTION_INTENT, channel_plan=[{"channel": conversation.channel}],
        content=[{"channel": conversation.channel, "text_body": "How did we do? 1-5"}],
        status="queued" if said_at else "suppressed", said_at=said_at)


def test_a_1_to_5_answer_to_the_satisfaction_question_is_kept_and_opens_nothing(write_in, surveyed):
    answer = write_in(" 4! ", sid="SMi1")

    surveyed.refresh_from_db()
    assert surveyed.satisfaction == 4
    assert answer.conversation == surveyed
    assert Conversation.objects.count() == 1
    assert not replied_events().filter(idempotency_key="inbound:twilio:SMi1").exists()
    assert AuditEntry.objects.get(action="conversation.rated").data == {"satisfaction": 4,
                                                                         "inbound_message": answer.pk}


def test_only_the_first_answer_counts_and_a_second_digit_is_a_new_message(write_in, surveyed):
    write_in("4", sid="SMi2")
    again = write_in("5", sid="SMi3")

    surveyed.refresh_from_db()
    assert surveyed.satisfaction == 4
    assert again.conversation != surveyed and again.conversation.status == "open"


def test_an_answer_after_the_reply_window_opens_a_conversation(write_in, surveyed, settings):
    Conversation.objects.filter(pk=surveyed.pk).update(
        satisfaction_asked_at=timezone.now() - timedelta(hours=settings.OMNI_SATISFACTION_REPLY_HOURS + 1))

    late = write_in("5", sid="SMi4")

    surveyed.refresh_from_db()
    assert surveyed.satisfaction is None
    assert late.conversation != surveyed


def test_a_digit_in_a_conversation_going_on_answers_there_not_the_survey(write_in, surveyed):
    # given the customer wrote again, and an agent asked "1 or 2?" in the new conversation
    again = write_in("One more question about my order", sid="SMi6")

    digit = write_in("2", sid="SMi7")

    surveyed.refresh_from_db()
    assert surveyed.satisfaction is None
    assert digit.conversation == again.conversation != surveyed
    assert replied_events().filter(idempotency_key="inbound:twilio:SMi7").exists()


def test_a_digit_after_a_question_the_gate_refused_is_an_ordinary_message(write_in, surveyed):
    # given the question was never said (the customer had opted out, say)
    Message.objects.filter(conversation=surveyed).update(status="suppressed", said_at=None)

    digit = write_in("5", sid="SMi8")

    surveyed.refresh_from_db()
    assert surveyed.satisfaction is None
    assert digit.conversation != surveyed and digit.conversation.status == "open"


def test_a_digit_when_no_question_was_asked_is_an_ordinary_message(write_in, contact):
    inbound = write_in("3", sid="SMi5")

    assert inbound.conversation.status == "open" and inbound.conversation.satisfaction is None


# --- closing ---------------------------------------------------------------------------------

def test_closing_records_both_resolution_times_who_closed_it_and_the_event(contact, office_hours, agent):
    # given a conversation opened on Friday afternoon, waiting on the customer
    opened = write_directly(ALICE, sid="SMj1", at=FRIDAY_AFTERNOON).conversation
    conversations.set_waiting(opened, actor=agent, now=FRIDAY_AFTERNOON + timedelta(minutes=10))
    closed_at = datetime(2026, 11, 23, 10, 0, tzinfo=NEW_YORK)  # Monday

    # when the agent closes it on Monday morning
    assert conversations.close([opened.pk], actor=agent, now=closed_at) == 1

    # then it keeps the real time (2 days 17.5 hours) and the business time (half an hour on Friday, an hour on Monday)
    conversation = Conversation.objects.get()
    assert (conversation.status, conversation.closed_at, conversation.waiting_since) == ("closed", closed_at, None)
    assert (conversation.resolved_by, conversation.closed_by) == (ResolvedBy.AGENT, agent)
    assert conversation.resolution_seconds == int(timedelta(days=2, hours=17, minutes=30).total_seconds())
    assert conversation.resolution_business_seconds == 90 * 60
    event = ContactEvent.objects.get(name="conversation.closed")
    assert (event.source, event.contact, event.occurred_at) == ("channels", contact, closed_at)
    assert event.idempotency_key == f"conversation.closed:{conversation.pk}:{closed_at.isoformat()}"
    assert event.properties == {"conversation_id": conversation.pk, "channel": "sms", "resolved_by": "agent"}
    entry = AuditEntry.objects.get(action="conversation.closed")
    assert (entry.actor_id, entry.reason, entry.data["resolution_business_seconds"]) == (agent.pk, "agent", 5400)


def test_a_closed_conversation_stays_closed(contact, agent):
    conversation = write_directly(ALICE, sid="SMj2").conversation
    conversations.close([conversation], actor=agent)

    assert conversations.close([conversation], actor=agent) == 0
    assert not conversations.set_open(conversation, actor=agent)
    assert not conversations.set_waiting(conversation, actor=agent)
    assert Conversation.objects.get().status == "closed"
    assert ContactEvent.objects.filter(name="conversation.closed").count() == 1


def test_status_moves_follow_the_table(contact, agent):
    conversation = write_directly(ALICE, sid="SMj3").conversation

    assert not conversations.set_open(conversation, actor=agent)  # open already
    assert conversations.set_waiting(conversation, actor=agent)
    assert not conversations.set_waiting(conversation, actor=agent)
    assert conversations.set_open(conversation, actor=agent)
    assert conversations.sources_of("closed") == ["open", "waiting"]
    assert [entry.action for entry in AuditEntry.objects.filter(object_id=str(conversation.pk),
                                                                object_type="channels.conversation")
            .exclude(action="conversation.opened").order_by("pk")] == ["conversation.waiting", "conversation.open"]


def test_conversations_waiting_too_long_are_closed_by_automation(contact, agent, settings):
    # given one conversation waiting 8 days, one waiting 6, and one open for 30
    now = timezone.now()
    others = [Contact.objects.create(external_id=f"c{i}", phone=f"+1415555011{i}") for i in range(2)]
    long_waiting, short_waiting, old_open = [
        write_directly(who.phone, sid=f"SMk{i}", at=now - timedelta(days=30)).conversation
        for i, who in enumerate([contact, *others])]
    conversations.set_waiting(long_waiting, actor=agent, now=now - timedelta(days=8))
    conversations.set_waiting(short_waiting, actor=agent, now=now - timedelta(days=6))

    # when beat's task runs
    assert settings.CELERY_BEAT_SCHEDULE["omni-close-waiting-conversations"]["task"] == \
        "channels.tasks.close_waiting_conversations_task"
    close_waiting_conversations_task()

    # then only the one waiting longer than a week closed, resolved by automation, by nobody
    statuses = dict(Conversation.objects.values_list("pk", "status"))
    assert statuses == {long_waiting.pk: "closed", short_waiting.pk: "waiting", old_open.pk: "open"}
    closed = Conversation.objects.get(pk=long_waiting.pk)
    assert (closed.resolved_by, closed.closed_by) == (ResolvedBy.AUTOMATION, None)
    assert ContactEvent.objects.get(name="conversation.closed").properties["resolved_by"] == "automation"


def test_the_waiting_days_are_a_setting(contact, agent, settings):
    settings.OMNI_CONVERSATION_WAITING_CLOSE_DAYS = 2
    now = timezone.now()
    conversation = write_directly(ALICE, sid="SMk9", at=now - timedelta(days=5)).conversation
    conversations.set_waiting(conversation, actor=agent, now=now - timedelta(days=3))

    assert conversations.close_waiting(now) == 1


def test_the_first_agent_response_is_kept_once_in_real_and_business_time(contact, office_hours):
    conversation = write_directly(ALICE, sid="SMl1", at=FRIDAY_AFTERNOON).conversation
    answered = datetime(2026, 11, 23, 9, 15, tzinfo=NEW_YORK)

    assert conversations.record_response(conversation, answered)
    assert not conversations.record_response(conversation, answered + timedelta(hours=1))

    conversation.refresh_from_db()
    assert conversation.first_response_at == answered
    assert conversation.first_response_seconds == int((answered - FRIDAY_AFTERNOON).total_seconds())
    assert conversation.first_response_business_seconds == 45 * 60


# --- bulk actions ----------------------------------------------------------------------------

@pytest.fixture
def many_conversations(db):
    contacts = Contact.objects.bulk_create([Contact(external_id=f"m{i}", phone=f"+1415555{i:04d}") for i in range(30)])
    return Conversation.objects.bulk_create([Conversation(contact=c, channel="sms") for c in contacts])


def queries_of(work) -> int:
    with CaptureQueriesContext(connection) as queries:
        work()
    return len(queries.captured_queries)


def test_bulk_assign_tag_and_close_take_as_many_queries_for_3_as_for_27(many_conversations, agent, settings_read):
    few, many = [c.pk for c in many_conversations[:3]], [c.pk for c in many_conversations[3:]]
    ConversationTag.objects.bulk_create([ConversationTag(name="Billing"), ConversationTag(name="urgent")])

    counts = [
        (queries_of(lambda: conversations.assign(batch, agent, actor=agent)),
         queries_of(lambda: conversations.tag(batch, ["Billing", "urgent"], actor=agent)),
         queries_of(lambda: conversations.tag(batch, ["urgent"], actor=agent, remove=True)),
         queries_of(lambda: conversations.close(Conversation.objects.filter(pk__in=batch), actor=agent)))
        for batch in (few, many)
    ]

    assert counts[0] == counts[1]
    # assign: a savepoint, a locking read, the write, the audit entries (and their personal data:
    # the assignee), the release; tag: the conversations, the tags found, made and found again,
    # the pairs present and made, the audit entries (a new tag costs two more); close: the ids, a locking read, the
    # service levels' version, the write, the events and the audit entries.
    assert counts[0][0] <= 6 and counts[0][1] <= 9 and counts[0][3] <= 8
    assert set(Conversation.objects.values_list("assignee_id", "status")) == {(agent.pk, "closed")}
    assert set(ConversationTag.objects.filter(conversations__isnull=False).values_list("name", flat=True)) == {
        "Billing"}
    assert ContactEvent.objects.filter(name="conversation.closed").count() == 30
    assert AuditEntry.objects.filter(action="conversation.assigned").count() == 30
    assert AuditPersonalData.objects.filter(data={"assignee": "agent"}).count() == 30


def test_tags_match_names_whatever_their_case_and_can_be_removed(many_conversations, agent):
    ConversationTag.objects.create(name="Billing")
    first, second = many_conversations[:2]

    assert conversations.tag([first, second], ["billing", " New  customer "], actor=agent) == 2
    assert conversations.tag([first], ["BILLING"], actor=agent) == 0  # has it already
    assert conversations.tag([first], ["billing"], actor=agent, remove=True) == 1

    assert sorted(ConversationTag.objects.values_list("name", flat=True)) == ["Billing", "New customer"]
    assert [tag.name for tag in first.tags.all()] == ["New customer"]
    assert sorted(tag.name for tag in second.tags.all()) == ["Billing", "New customer"]
    with pytest.raises(conversations.ConversationError, match="at least one tag"):
        conversations.tag([first], ["  "], actor=agent)


def test_unassigning_and_assigning_the_same_agent_again_change_nothing_twice(many_conversations, agent):
    first = many_conversations[0]

    assert conversations.assign([first], agent, actor=agent) == 1
    assert conversations.assign([first], agent, actor=agent) == 0
    assert conversations.assign([first], None, actor=agent) == 1
    assert AuditEntry.objects.filter(action="conversation.unassigned").count() == 1


def test_notes_and_follow_ups_are_audited_without_their_text(many_conversations, agent):
    conversation = many_conversations[0]
    follow_up = timezone.now() + timedelta(days=1)

    note = conversations.add_note(conversation, "  Called her back, +14155550100 was busy ", author=agent)
    conversations.set_follow_up(conversation, follow_up, actor=agent)

    assert note.body == "Called her back, +14155550100 was busy"
    assert "+1415" not in str(AuditEntry.objects.get(action="conversation.noted").data)
    assert Conversation.objects.get(pk=conversation.pk).follow_up_at == follow_up
    with pytest.raises(conversations.ConversationError, match="needs some text"):
        conversations.add_note(conversation, "   ", author=agent)


# --- the webhook's cost ----------------------------------------------------------------------

# An inbound message costs, once this process has read the settings (channels.inbound_settings):
# their version, then on PostgreSQL one statement that reads the contact (with its block, the
# delivery it answers, which the tick marks replied, its conversation not closed, and the keys
# of the message and of the conversation it would open) and writes the conversation's change,
# the message, its audit entries and its inbound.replied event (in a test, inside a savepoint:
# the test's transaction). Elsewhere the contact's query, then in a transaction (a savepoint
# in a test): the conversation's write, the message's insert (no savepoint: a repeat racing it
# rolls the whole transaction back), the event (one INSERT ... ON CONFLICT) and the audit
# entries (one INSERT).
CONTINUING_QUERIES = 4 if connection.vendor == "postgresql" else 8
# Opening one instead: the conversation's insert in place of its update.
OPENING_QUERIES = CONTINUING_QUERIES
# An unknown sender, always in a transaction: the block and the delivery on their own, then the
# contact looked up again under the address's lock, and made.
UNKNOWN_SENDER_QUERIES = 12
# On PostgreSQL the statement that reads the sender may also write: inside a transaction (a test's)
# it runs in a savepoint, two queries more that a webhook, outside any transaction, never makes.
IN_A_TESTS_TRANSACTION = 2 if connection.vendor == "postgresql" else 0


@pytest.fixture
def settings_read(settings):
    """This process has read the inbound settings, as after its first message, and checks them
    again on each message (the most it does: once a second)."""
    settings.OMNI_INBOUND_SETTINGS_RECHECK_SECONDS = 0
    inbound_settings()


@pytest.mark.parametrize("earlier_messages", [0, 25])
def test_a_message_from_a_known_contact_opening_a_conversation_takes_a_fixed_number_of_queries(
        client, twilio_settings, contact, earlier_messages, settings_read, django_assert_num_queries):
    for index in range(earlier_messages):  # closed conversations, whatever the history
        conversation = write_directly(ALICE, sid=f"SMold{index}").conversation
        conversations.close([conversation], actor=None)

    with django_assert_num_queries(OPENING_QUERIES):
        assert post_inbound(client, twilio_settings, "Hello", sid="SMq1").status_code == 200


@pytest.mark.parametrize("answering_a_delivery", [False, True])
def test_a_message_continuing_a_conversation_takes_a_fixed_number_of_queries(client, twilio_settings, contact,
                                                                            make_delivery, answering_a_delivery,
                                                                            settings_read, django_assert_num_queries):
    # (the delivery it answers is marked replied by the tick, not here)
    if answering_a_delivery:
        make_delivery("sms", status="sent", sent_at=timezone.now(), provider_message_id="SMout")
    write_directly(ALICE, sid="SMq2")

    with django_assert_num_queries(CONTINUING_QUERIES):
        assert post_inbound(client, twilio_settings, "Me again", sid="SMq3").status_code == 200


def test_a_message_from_an_unknown_sender_takes_a_fixed_number_of_queries(client, twilio_settings, db,
                                                                          settings_read, django_assert_num_queries):
    # (on PostgreSQL one more: the address's advisory lock)
    with django_assert_num_queries(UNKNOWN_SENDER_QUERIES + (connection.vendor == "postgresql")
                                   + IN_A_TESTS_TRANSACTION):
        assert post_inbound(client, twilio_settings, "Hello?", sid="SMq4", sender=STRANGER).status_code == 200


# A provider's retry of a known sender's stored message: the settings' version and the contact's
# query (which also finds the message stored). The webhook needs no copy of the stored message, so
# none is read back. Nothing is written, and no transaction begun.
RETRY_QUERIES = 2 + IN_A_TESTS_TRANSACTION


def test_a_retry_from_a_known_contact_is_found_by_the_senders_query_and_writes_nothing(
        client, twilio_settings, contact, settings_read, django_assert_num_queries):
    assert post_inbound(client, twilio_settings, "Hello", sid="SMq5").status_code == 200
    entries, events = AuditEntry.objects.count(), ContactEvent.objects.count()
    last_inbound_at = Conversation.objects.get(contact=contact).last_inbound_at

    with django_assert_num_queries(RETRY_QUERIES):
        assert post_inbound(client, twilio_settings, "Hello", sid="SMq5").status_code == 200

    assert InboundMessage.objects.filter(provider_message_id="SMq5").count() == 1
    assert (AuditEntry.objects.count(), ContactEvent.objects.count()) == (entries, events)
    assert Conversation.objects.get(contact=contact).last_inbound_at == last_inbound_at


# --- one writer of the status ----------------------------------------------------------------

def conversation_status_writes(path: Path) -> list[str]:
    """Writes of `status` on something named for a conversation: update/create calls, assignments."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in {"update", "create", "bulk_update"} \
                and "conversation" in ast.unparse(node.func.value).lower() \
                and ("status" in {k.arg for k in node.keywords} or "'status'" in ast.unparse(node)):
            found.append(f"{path.name}:{node.lineno}")
        if isinstance(node, ast.Assign):
            for target in node.targets:
                for element in (target.elts if isinstance(target, ast.Tuple) else [target]):
                    if isinstance(element, ast.Attribute) and element.attr == "status" \
                            and "conversation" in ast.unparse(element.value).lower():
                        found.append(f"{path.name}:{node.lineno}")
    return sorted(found)


def test_only_the_conversations_module_writes_a_conversations_status():
    root = Path(django_settings.BASE_DIR)
    writers = [
        problem
        for app in ("omni", "contacts", "compliance", "templates", "channels", "campaigns")
        for path in sorted((root / app).rglob("*.py"))
        if "tests" not in path.parts and "migrations" not in path.parts and path != root / "channels/conversations.py"
        for problem in conversation_status_writes(path)
    ]

    assert writers == []


def test_the_scan_sees_a_status_write(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("Conversation.objects.filter(pk=1).update(status='closed')\nconversation.status = 'open'\n")

    assert conversation_status_writes(probe) == ["probe.py:1", "probe.py:2"]


# --- the demo --------------------------------------------------------------------------------

def test_the_demo_has_bob_ask_a_question_by_sms_once(role_groups, settings, tmp_path):
    settings.VAR_DIR = tmp_path

    call_command("seed_demo", stdout=io.StringIO())
    call_command("seed_demo", stdout=io.StringIO())

    question = InboundMessage.objects.select_related("conversation__contact").get()
    assert question.conversation.contact.external_id == "demo-bob"
    assert (question.channel, question.conversation.status) == ("sms", "open")
    assert "Can you check?" in question.body
    assert replied_events().count() == 1


# --- the admin -------------------------------------------------------------------------------

@pytest.fixture
def support_client(client, role_groups):
    """The test client logged in as a member of the Support agents group."""
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user(username="support", password="not-used", is_staff=True)
    user.groups.add(Group.objects.get(name="Support agents"))
    client.force_login(user)
    client.user = user
    return client


def change_form(conversation, **values):
    data = {"status": conversation.status, "assignee": conversation.assignee_id or "", "follow_up_at_0": "",
            "follow_up_at_1": "", "inbound_messages-TOTAL_FORMS": "0", "inbound_messages-INITIAL_FORMS": "0"}
    return {**data, **values}


def test_closing_from_the_admin_goes_through_close(support_client, contact):
    conversation = write_directly(ALICE, sid="SMr1").conversation

    response = support_client.post(f"/admin/channels/conversation/{conversation.pk}/change/",
                                   change_form(conversation, status="closed"))

    assert response.status_code == 302, response.content
    conversation.refresh_from_db()
    assert (conversation.status, conversation.closed_by, conversation.resolved_by) == (
        "closed", support_client.user, "agent")
    assert conversation.resolution_seconds is not None
    assert ContactEvent.objects.filter(name="conversation.closed").count() == 1
    assert AuditEntry.objects.get(action="conversation.closed").actor_id == support_client.user.pk


def test_the_admin_offers_only_the_status_moves_the_table_allows(support_client, contact, agent):
    conversation = write_directly(ALICE, sid="SMr2").conversation
    conversations.close([conversation], actor=agent)

    page = support_client.get(f"/admin/channels/conversation/{conversation.pk}/change/").content.decode()
    forced = support_client.post(f"/admin/channels/conversation/{conversation.pk}/change/",
                                 change_form(conversation, status="open"))

    assert 'name="status"' not in page  # closed: read-only
    assert forced.status_code == 302
    assert Conversation.objects.get().status == "closed"


def test_assigning_and_following_up_from_the_admin_are_audited_actions(support_client, contact, agent):
    from django.contrib.auth.models import Group

    agent.groups.add(Group.objects.get(name="Support agents"))  # only those who may work conversations
    conversation = write_directly(ALICE, sid="SMr3").conversation

    response = support_client.post(f"/admin/channels/conversation/{conversation.pk}/change/", change_form(
        conversation, status="waiting", assignee=agent.pk, follow_up_at_0="2026-12-24", follow_up_at_1="09:00:00"))

    assert response.status_code == 302, response.content
    conversation.refresh_from_db()
    assert (conversation.status, conversation.assignee, conversation.waiting_since is not None) == (
        "waiting", agent, True)
    assert conversation.follow_up_at is not None
    assert sorted(AuditEntry.objects.filter(object_id=str(conversation.pk), actor_id=support_client.user.pk)
                  .values_list("action", flat=True)) == [
        "conversation.assigned", "conversation.follow_up", "conversation.waiting"]


def test_the_admins_bulk_actions_close_and_assign(support_client, many_conversations):
    ids = [conversation.pk for conversation in many_conversations[:3]]

    support_client.post("/admin/channels/conversation/", {"action": "assign_to_me", "_selected_action": ids})
    support_client.post("/admin/channels/conversation/", {"action": "close_selected", "_selected_action": ids})

    assert set(Conversation.objects.filter(pk__in=ids).values_list("assignee_id", "status")) == {
        (support_client.user.pk, "closed")}
    assert Conversation.objects.exclude(pk__in=ids).filter(status="closed").count() == 0


def test_the_conversation_list_filters_by_tag_in_a_fixed_number_of_queries(admin_client, many_conversations, agent,
                                                                           django_assert_max_num_queries):
    conversations.tag(many_conversations[:20], ["billing"], actor=agent)
    conversations.tag(many_conversations, ["vip"], actor=agent)
    billing = ConversationTag.objects.get(name="billing")

    with django_assert_max_num_queries(20):
        page = admin_client.get(f"/admin/channels/conversation/?tags__id__exact={billing.pk}")

    assert page.status_code == 200
    assert page.context["cl"].result_count == 20
    assert "billing, vip" in page.content.decode()


def test_support_agents_make_a_customer_write_in_from_the_sandbox_page(support_client, contact, settings):
    settings.OMNI_PROVIDERS = {**settings.OMNI_PROVIDERS, "sms": "sandbox"}
    listing = support_client.get("/admin/channels/inboundmessage/").content.decode()
    page = support_client.get("/admin/channels/inboundmessage/write-in/")

    response = support_client.post("/admin/channels/inboundmessage/write-in/",
                                   {"channel": "sms", "contact": contact.pk, "body": "Is my order on its way?"})

    assert "/admin/channels/inboundmessage/write-in/" in listing
    assert page.status_code == 200
    conversation = Conversation.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/conversation/{conversation.pk}/change/")
    inbound = InboundMessage.objects.get()
    assert (inbound.provider, inbound.from_address, inbound.contact, inbound.conversation) == (
        "sandbox", ALICE, contact, conversation)
    assert replied_events().count() == 1


def test_an_agent_limited_to_their_queues_who_makes_a_customer_write_in_lands_on_the_message(
        support_client, contact, settings):
    settings.OMNI_PROVIDERS = {**settings.OMNI_PROVIDERS, "sms": "sandbox"}
    settings.OMNI_SUPPORT_AGENTS_SEE_ALL = False

    response = support_client.post("/admin/channels/inboundmessage/write-in/",
                                   {"channel": "sms", "contact": contact.pk, "body": "Is my order on its way?"})

    inbound = InboundMessage.objects.get()
    assert inbound.conversation is not None  # opened, in no queue of theirs yet
    assert response.status_code == 302 and response["Location"].endswith(f"/inboundmessage/{inbound.pk}/change/")
    assert support_client.get(response["Location"]).status_code == 200


def test_the_sandbox_page_writes_in_from_a_new_number_and_refuses_a_bad_one(support_client, settings, db):
    settings.OMNI_PROVIDERS = {**settings.OMNI_PROVIDERS, "sms": "sandbox"}

    bad = support_client.post("/admin/channels/inboundmessage/write-in/",
                              {"channel": "sms", "address": "call me", "body": "Hi"})
    good = support_client.post("/admin/channels/inboundmessage/write-in/",
                               {"channel": "sms", "address": "(415) 555-0199", "body": "Hi"})

    assert bad.status_code == 200 and "is not a phone number" in bad.content.decode()
    assert good.status_code == 302
    assert Contact.objects.get().phone == STRANGER and Contact.objects.get().unknown_sender


def test_without_a_sandbox_channel_there_is_no_customer_to_simulate(support_client, settings, db):
    settings.OMNI_PROVIDERS = {"email": "ses", "sms": "twilio", "whatsapp": "twilio", "rcs": "twilio",
                               "push": "sns"}

    listing = support_client.get("/admin/channels/inboundmessage/").content.decode()
    page = support_client.get("/admin/channels/inboundmessage/write-in/")

    assert "write-in" not in listing
    assert page.status_code == 403


def test_contacts_filter_by_unknown_sender(admin_client, write_in, contact):
    write_in("Hello?", sid="SMr4", sender=STRANGER)

    page = admin_client.get("/admin/contacts/contact/?unknown_sender__exact=1")

    assert [row.phone for row in page.context["cl"].result_list] == [STRANGER]


def test_an_overlong_provider_id_still_stores_its_event_once(contact):
    long_id = "SM" + "9" * 253

    write_directly(ALICE, sid=long_id)
    record_inbound_message("twilio", long_id, "sms", ALICE, body="Hello")

    [event] = replied_events()
    assert event.idempotency_key.startswith("inbound:twilio:sha256:") and len(event.idempotency_key) <= 255
