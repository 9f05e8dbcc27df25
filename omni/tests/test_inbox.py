"""The support inbox: tabs with counts, filters, order by first-response due then follow-up,
breaches marked, keyset pages, the access setting on every page and action, bulk actions,
search (SQLite's match and PostgreSQL's full text) and fixed query counts."""
import itertools
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from channels.models import (Conversation, ConversationStatus, ConversationTag, InboundMessage, Message,
                             SupportQueue)
from contacts.models import Contact
from omni.web import inbox

NOW = timezone.now().replace(microsecond=0)
_numbers = itertools.count(100)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_in(django_user_model, role_groups):
    def make(group_name: str | None, username: str | None = None, **extra):
        user = django_user_model.objects.create_user(
            username=username or (group_name or "someone").lower().replace(" ", "-"), password="pw", is_staff=True,
            **extra)
        if group_name:
            user.groups.add(Group.objects.get(name=group_name))
        return user

    return make


@pytest.fixture
def agent(staff_in):
    return staff_in("Support agents", "agent")


@pytest.fixture
def other_agent(staff_in):
    return staff_in("Support agents", "other")


def a_contact(name="Bob"):
    number = next(_numbers)
    return Contact.objects.create(external_id=f"{name.lower()}-{number}", first_name=name,
                                  phone=f"+1415555{number:04d}")


def a_conversation(channel="sms", *, says="", assignee=None, queue=None, status=ConversationStatus.OPEN,
                   due_in=None, follow_up_in=None, answered=False, resolution_in=None, tags=(), contact=None):
    """A conversation as the inbox finds it; `says` is stored as what the customer wrote."""
    contact = contact or a_contact()
    conversation = Conversation.objects.create(
        contact=contact, channel=channel, status=status, assignee=assignee, queue=queue,
        opened_at=NOW - timedelta(hours=1),
        first_response_due_at=None if due_in is None else NOW + due_in,
        first_response_at=NOW - timedelta(minutes=5) if answered else None,
        resolution_due_at=None if resolution_in is None else NOW + resolution_in,
        follow_up_at=None if follow_up_in is None else NOW + follow_up_in,
        closed_at=NOW if status == ConversationStatus.CLOSED else None)
    for name in tags:
        conversation.tags.add(ConversationTag.objects.get_or_create(name=name)[0])
    if says:
        InboundMessage.objects.create(contact=contact, conversation=conversation, channel=channel, provider="sandbox",
                                      provider_message_id=uuid.uuid4().hex, from_address=contact.phone, body=says,
                                      received_at=NOW - timedelta(minutes=30))
    return conversation


def a_reply(conversation, text, agent):
    return Message.objects.create(contact=conversation.contact, purpose="informational", source="agent",
                                  conversation=conversation, agent=agent,
                                  content=[{"channel": conversation.channel, "text_body": text}],
                                  channel_plan=[{"channel": conversation.channel}])


def ids(page):
    return [row.conversation.pk for row in page.rows]


def walk(user, filters, size):
    seen, cursor = [], None
    for _ in range(200):
        page = inbox.read_page(user, filters, cursor, size=size, now=NOW)
        seen += ids(page)
        cursor = page.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("the pages never ended")


# --- tabs, counts, filters ------------------------------------------------------------------------

def test_tabs_count_unassigned_mine_and_all_under_the_filters(agent, other_agent):
    # given two unassigned, one mine, one someone else's, and a closed one of mine
    a_conversation()
    a_conversation(channel="whatsapp")
    a_conversation(assignee=agent)
    a_conversation(assignee=other_agent, channel="whatsapp")
    a_conversation(assignee=agent, status=ConversationStatus.CLOSED)

    # then
    assert inbox.tab_counts(agent, inbox.Filters()) == {"unassigned": 2, "mine": 1, "all": 4}
    assert inbox.tab_counts(agent, inbox.Filters(channel="whatsapp")) == {"unassigned": 1, "mine": 0, "all": 2}
    assert inbox.tab_counts(agent, inbox.Filters(status="closed")) == {"unassigned": 0, "mine": 1, "all": 1}
    # and each tab lists what it counts
    for tab, count in inbox.tab_counts(agent, inbox.Filters()).items():
        assert len(inbox.read_page(agent, inbox.Filters(tab=tab)).rows) == count


def test_filters_by_channel_queue_tag_and_status(agent):
    billing = SupportQueue.objects.create(name="Billing")
    sms = a_conversation()
    whatsapp_billing = a_conversation(channel="whatsapp", queue=billing, tags=["refund"])
    waiting = a_conversation(status=ConversationStatus.WAITING, tags=["refund", "vip"])
    closed = a_conversation(status=ConversationStatus.CLOSED)

    def found(**filters):
        return set(ids(inbox.read_page(agent, inbox.Filters(**filters))))

    assert found() == {sms.pk, whatsapp_billing.pk, waiting.pk}
    assert found(channel="whatsapp") == {whatsapp_billing.pk}
    assert found(queue=billing.pk) == {whatsapp_billing.pk}
    assert found(tag=ConversationTag.objects.get(name="refund").pk) == {whatsapp_billing.pk, waiting.pk}
    assert found(status="waiting") == {waiting.pk}
    assert found(status="closed") == {closed.pk}


def test_filters_read_from_the_query_leave_out_what_does_not_read():
    filters = inbox.Filters.from_query({"tab": "mine", "channel": "fax", "queue": "x1", "tag": "3",
                                        "status": "gone", "q": "  my   refund "})

    assert filters == inbox.Filters(tab="mine", channel="", queue=None, tag=3, status="", text="my refund")


# --- order, breaches, pages -----------------------------------------------------------------------

def test_waiting_for_a_first_response_by_due_time_then_by_follow_up_then_the_rest(agent):
    # given
    later_due = a_conversation(due_in=timedelta(hours=2))
    overdue = a_conversation(due_in=-timedelta(minutes=10))
    answered_follow_up_soon = a_conversation(due_in=-timedelta(hours=5), answered=True, follow_up_in=timedelta(hours=1))
    answered_follow_up_later = a_conversation(due_in=-timedelta(hours=6), answered=True,
                                              follow_up_in=timedelta(days=1))
    nothing_due = a_conversation()
    answered = a_conversation(due_in=-timedelta(hours=9), answered=True)

    # then: an answered conversation's first-response due no longer counts
    assert ids(inbox.read_page(agent, inbox.Filters(), now=NOW)) == [
        overdue.pk, later_due.pk, answered_follow_up_soon.pk, answered_follow_up_later.pk,
        nothing_due.pk, answered.pk]


def test_breaches_are_a_missed_first_response_or_resolution(agent):
    overdue = a_conversation(due_in=-timedelta(minutes=1))
    answered_late = a_conversation(due_in=-timedelta(hours=2), answered=True)
    resolution_overdue = a_conversation(due_in=timedelta(hours=1), resolution_in=-timedelta(minutes=1))
    on_time = a_conversation(due_in=timedelta(minutes=1), resolution_in=timedelta(hours=1))

    marks = {row.conversation.pk: row.breaches for row in inbox.read_page(agent, inbox.Filters(), now=NOW).rows}

    assert marks[overdue.pk] == ["first response overdue"]
    assert marks[answered_late.pk] == []  # answered: its first response is no longer due
    assert marks[resolution_overdue.pk] == ["resolution overdue"]
    assert marks[on_time.pk] == []


@pytest.mark.parametrize("size", [1, 3, 7, 50])
def test_keyset_pages_show_every_conversation_once_in_order_without_offset(agent, size):
    # given conversations sharing due times and follow-ups, and some with neither
    for index in range(20):
        a_conversation(due_in=timedelta(minutes=index % 3) if index % 4 else None,
                       follow_up_in=timedelta(hours=index % 2) if index % 5 == 0 else None)
    everything = ids(inbox.read_page(agent, inbox.Filters(), size=100, now=NOW))

    # when read page by page
    with CaptureQueriesContext(connection) as queries:
        seen = walk(agent, inbox.Filters(), size)

    # then nothing skipped or repeated, in the one-page order, and no OFFSET anywhere
    assert seen == everything and len(seen) == 20
    assert not any("OFFSET" in query["sql"].upper() for query in queries.captured_queries)


def test_a_cursor_that_does_not_read_starts_at_the_first_page(agent):
    first = a_conversation(due_in=timedelta(minutes=1))

    assert ids(inbox.read_page(agent, inbox.Filters(), "not|a|cursor")) == [first.pk]


# --- search ---------------------------------------------------------------------------------------

def test_search_finds_what_the_customer_wrote_and_what_was_replied(agent):
    refund = a_conversation(says="I want a REFUND for my order")
    replied = a_conversation(says="hello")
    a_reply(replied, "Your refund is on its way", agent)
    a_conversation(says="Where is my parcel?")

    def found(text):
        return set(ids(inbox.read_page(agent, inbox.Filters(text=text))))

    assert found("refund") == {refund.pk, replied.pk}
    assert found("parcel") == {a.pk for a in Conversation.objects.filter(inbound_messages__body__contains="parcel")}
    assert found("nothing like this") == set()
    assert inbox.tab_counts(agent, inbox.Filters(text="refund"))["all"] == 2


@pytest.mark.postgres
def test_postgresql_searches_words_in_any_order_through_its_full_text_indexes(agent):
    # given
    both = a_conversation(says="The order came broken, I want a refund")
    one_word = a_conversation(says="refund please")
    replied = a_conversation(says="hi")
    a_reply(replied, "We sent the refund for your ORDER today", agent)

    def found(text):
        return set(ids(inbox.read_page(agent, inbox.Filters(text=text))))

    # then every word, in any order and any case; a web search's exclusions work too
    assert found("refund order") == {both.pk, replied.pk}
    assert found("Refund -order") == {one_word.pk}
    assert found('"want a refund"') == {both.pk}

    # and the search reads the GIN indexes of channels' inbox_search migration
    rows = inbox.search(Conversation.objects.all(), "refund")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = rows.explain()
    assert "inbound_body_search" in plan and "message_reply_search" in plan
