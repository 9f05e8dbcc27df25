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

from campaigns.tick import tick
from channels.models import (Conversation, ConversationStatus, ConversationTag, InboundMessage, Message,
                             SupportQueue)
from contacts.models import Contact
from omni.web import inbox

NOW = timezone.now().replace(microsecond=0)
_numbers = itertools.count(100)


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



def many_open_conversations(count: int) -> None:
    """`count` open conversations with a message and a reply each, and fresh statistics (ANALYZE in
    the test's transaction: its statistics go when the test's rows go)."""
    first = Contact.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO contacts_contact (external_id, email, phone, first_name, last_name, locale, timezone, "
            "country, region, lifecycle_stage, attributes, preferred_channel, unknown_sender, messaging_paused, "
            "created_at, updated_at) SELECT 'many-' || g, '', '', 'Many', '', 'en', '', '', '', 'subscriber', "
            "'{}', '', false, false, now(), now() FROM generate_series(1, %s) g", [count])
        Conversation.objects.bulk_create([
            Conversation(contact_id=contact_id, channel="sms", status=ConversationStatus.OPEN,
                         opened_at=NOW - timedelta(hours=2), last_inbound_at=NOW, last_activity_at=NOW,
                         first_response_due_at=NOW + timedelta(minutes=contact_id % 500))
            for contact_id in Contact.objects.filter(pk__gt=first).values_list("pk", flat=True)], batch_size=2000)
        cursor.execute(
            "INSERT INTO channels_inboundmessage (contact_id, conversation_id, channel, provider, provider_message_id, "
            "from_address, to_address, body, media, keyword, needs_agent, received_at, raw, blocked) "
            "SELECT contact_id, id, 'sms', 'sandbox', 'many-' || id, '+14155550000', '', "
            "'where is my parcel number ' || id, '[]', '', false, now(), '{}', false "
            "FROM channels_conversation WHERE contact_id > %s", [first])
    Message.objects.bulk_create([
        Message(contact_id=contact_id, conversation_id=conversation_id, purpose="informational", source="agent",
                content=[{"channel": "sms", "text_body": f"We are looking into it, ticket {conversation_id}"}],
                channel_plan=[{"channel": "sms"}])
        for conversation_id, contact_id in Conversation.objects.filter(contact_id__gt=first)
        .values_list("pk", "contact_id")], batch_size=2000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE contacts_contact, channels_conversation, channels_inboundmessage, channels_message")


def plan_of(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}")
        return "\n".join(line for (line,) in cursor.fetchall())


@pytest.mark.postgres
def test_postgresql_reads_an_inbox_page_and_a_search_through_their_indexes(agent):
    many_open_conversations(5000)
    with CaptureQueriesContext(connection) as page_queries:
        inbox.read_page(agent, inbox.Filters())
    with CaptureQueriesContext(connection) as search_queries:
        inbox.read_page(agent, inbox.Filters(text="parcel"))
    page_sql = next(q["sql"] for q in page_queries.captured_queries if "LIMIT" in q["sql"])
    search_sql = next(q["sql"] for q in search_queries.captured_queries if "to_tsvector" in q["sql"])

    # the first page reads the first rows of the index in the inbox's order, sorting nothing
    page_plan = plan_of(page_sql)
    assert "conversation_inbox_attention" in page_plan, page_plan
    assert "Sort" not in page_plan.split("->")[0] + page_plan.split("->")[1], page_plan
    # the search finds the words through the GIN indexes of channels' inbox_search migration
    search_plan = plan_of(search_sql)
    assert "inbound_body_search" in search_plan and "message_reply_search" in search_plan, search_plan


# --- the pages: permissions and the access setting -----------------------------------------------

def test_support_agents_open_the_inbox_from_the_sidebar_and_marketers_are_refused(client, agent, staff_in):
    conversation = a_conversation(says="Hello?")
    client.force_login(agent)

    response = client.get(reverse("omni-web:inbox"))
    assert response.status_code == 200
    assert reverse("omni-web:thread", args=[conversation.pk]) in response.content.decode()
    sidebar = {group["title"]: [item["title"] for item in group["items"]]
               for group in response.context["sidebar_navigation"]}
    assert sidebar["Support"][0] == "Inbox"

    client.force_login(staff_in("Marketers"))
    assert client.get(reverse("omni-web:inbox")).status_code == 403
    assert client.get(reverse("omni-web:thread", args=[conversation.pk])).status_code == 403


@pytest.fixture
def only_their_own(settings):
    settings.OMNI_SUPPORT_AGENTS_SEE_ALL = False


@pytest.fixture
def two_queues(agent, other_agent):
    """The agent is in Billing; one conversation in each queue, one assigned to the agent
    outside both, one assigned to the other agent."""
    billing, shipping = SupportQueue.objects.create(name="Billing"), SupportQueue.objects.create(name="Shipping")
    billing.agents.add(agent)
    shipping.agents.add(other_agent)
    return {
        "billing": a_conversation(queue=billing, says="invoice question"),
        "shipping": a_conversation(queue=shipping, says="parcel question"),
        "mine": a_conversation(assignee=agent, says="my question"),
        "theirs": a_conversation(assignee=other_agent, says="their question"),
    }


def test_without_see_all_an_agent_sees_their_queues_and_their_own_everywhere(
        only_their_own, two_queues, agent, client, admin_user):
    client.force_login(agent)
    visible = {two_queues["billing"].pk, two_queues["mine"].pk}

    # the inbox, its counts and its search
    assert set(ids(inbox.read_page(agent, inbox.Filters()))) == visible
    assert inbox.tab_counts(agent, inbox.Filters()) == {"unassigned": 1, "mine": 1, "all": 2}
    assert ids(inbox.read_page(agent, inbox.Filters(text="question"))) != [] \
        and set(ids(inbox.read_page(agent, inbox.Filters(text="question")))) == visible
    # a direct URL to anyone else's: the thread, its actions, the admin's page
    hidden = two_queues["shipping"]
    assert client.get(reverse("omni-web:thread", args=[hidden.pk])).status_code == 404
    assert client.post(reverse("omni-web:thread_action", args=[hidden.pk, "close"])).status_code == 404
    assert client.get(reverse("admin:channels_conversation_change", args=[hidden.pk])).status_code == 404
    assert client.get(reverse("omni-web:thread", args=[two_queues["billing"].pk])).status_code == 200
    changelist = client.get(reverse("admin:channels_conversation_changelist"))
    assert {row.pk for row in changelist.context["cl"].result_list} == visible
    # bulk actions leave out what they may not see
    client.post(reverse("omni-web:inbox_bulk"),
                {"action": "close", "conversation": [hidden.pk, two_queues["billing"].pk]})
    hidden.refresh_from_db()
    assert hidden.status == ConversationStatus.OPEN
    assert Conversation.objects.get(pk=two_queues["billing"].pk).status == ConversationStatus.CLOSED

    # the home's support figures count what the agent may see (three are open; theirs is one)
    home = client.get(reverse("admin:index"))
    support = next(panel for panel in home.context["panels"] if panel.role == "support")
    assert {figure.label: figure.value for figure in support.figures}["Open conversations"] == 1

    # administrators see every conversation
    assert len(inbox.read_page(admin_user, inbox.Filters()).rows) == 3


def test_with_see_all_every_agent_sees_every_conversation(two_queues, agent, client):
    client.force_login(agent)

    assert len(inbox.read_page(agent, inbox.Filters()).rows) == 4
    assert client.get(reverse("omni-web:thread", args=[two_queues["shipping"].pk])).status_code == 200


# --- bulk -----------------------------------------------------------------------------------------

def test_bulk_assign_tag_and_close_from_the_inbox(client, agent, other_agent):
    first, second, third = a_conversation(), a_conversation(), a_conversation()
    client.force_login(agent)
    bulk = reverse("omni-web:inbox_bulk")
    inbox_url = reverse("omni-web:inbox") + "?tab=unassigned"

    # assign two to me
    response = client.post(bulk, {"action": "assign_me", "conversation": [first.pk, second.pk], "next": inbox_url})
    assert response.status_code == 302 and response.url == inbox_url
    assert set(Conversation.objects.filter(assignee=agent).values_list("pk", flat=True)) == {first.pk, second.pk}

    # one to another agent
    client.post(bulk, {"action": "assign", "agent": other_agent.pk, "conversation": [third.pk]})
    assert Conversation.objects.get(pk=third.pk).assignee == other_agent

    # tag and close
    client.post(bulk, {"action": "tag", "tag": "Refund", "conversation": [first.pk, third.pk]})
    assert set(Conversation.objects.filter(tags__name="Refund").values_list("pk", flat=True)) == {first.pk, third.pk}
    client.post(bulk, {"action": "close", "conversation": [first.pk, second.pk]})
    assert set(Conversation.objects.filter(status="closed").values_list("pk", flat=True)) == {first.pk, second.pk}

    # nothing chosen, or nothing to do: said, and nothing changes
    response = client.post(bulk, {"action": "close"}, follow=True)
    assert "Choose at least one conversation" in response.content.decode()
    response = client.post(bulk, {"action": "assign", "conversation": [third.pk]}, follow=True)
    assert "Choose the agent" in response.content.decode()


def test_bulk_actions_need_the_right_to_work_conversations(client, staff_in):
    conversation = a_conversation()
    client.force_login(staff_in("Compliance"))  # may view conversations, not change them

    assert client.get(reverse("omni-web:inbox")).status_code == 200
    assert client.post(reverse("omni-web:inbox_bulk"),
                       {"action": "close", "conversation": [conversation.pk]}).status_code == 403
    assert client.post(reverse("omni-web:thread_action", args=[conversation.pk, "reply"]),
                       {"body": "hi", "form_token": uuid.uuid4()}).status_code == 403
    assert Conversation.objects.get(pk=conversation.pk).status == ConversationStatus.OPEN


def test_an_agent_marks_themselves_available_from_the_inbox(client, agent):
    client.force_login(agent)

    client.post(reverse("omni-web:availability"), {"available": "1"})
    assert agent.support_status.available is True
    assert "Become available" not in client.get(reverse("omni-web:inbox")).content.decode()

    client.post(reverse("omni-web:availability"), {"available": "0"})
    agent.support_status.refresh_from_db()
    assert agent.support_status.available is False


# --- fixed query counts ---------------------------------------------------------------------------

def queries_for(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, params or {}).status_code == 200
    return len(captured.captured_queries)


def test_the_inbox_page_takes_the_same_queries_for_few_or_many_conversations(client, agent, other_agent):
    billing = SupportQueue.objects.create(name="Billing")
    for index in range(3):
        a_conversation(queue=billing, assignee=other_agent, tags=["vip"], says="hi", due_in=timedelta(minutes=index))
    client.force_login(agent)
    url = reverse("omni-web:inbox")
    few = queries_for(client, url)

    for index in range(60):
        a_conversation(queue=billing, assignee=other_agent if index % 2 else None, tags=["vip", f"t{index % 4}"],
                       says="hi", due_in=timedelta(minutes=index))
    many = queries_for(client, url)
    searched = queries_for(client, url, {"q": "hi", "tab": "unassigned", "tag": ConversationTag.objects.first().pk})

    # session, user and their permissions (2); the page's rows and their tags; the three counts in
    # one; the agent's availability; queues and tags to filter by; agents to assign to; the
    # sidebar's administrators check; the two-factor check and the session's renewal (3)
    assert few == many == searched == 16


# --- the thread -----------------------------------------------------------------------------------

def writes_in(contact, body, channel="sms"):
    """The contact writes in through the webhooks' path; returns their conversation."""
    from channels.provider_reports import record_inbound_message

    inbound, _ = record_inbound_message("sandbox", uuid.uuid4().hex, channel, contact.phone, body=body)
    return Conversation.objects.get(pk=inbound.conversation_id)


def thread_url(conversation, action=None):
    if action:
        return reverse("omni-web:thread_action", args=[conversation.pk, action])
    return reverse("omni-web:thread", args=[conversation.pk])


def a_reply_form(body, token=None):
    return {"body": body, "form_token": token or uuid.uuid4()}


@pytest.fixture
def bob_wrote(db):
    bob = a_contact("Bob")
    return writes_in(bob, "Can I move to the yearly plan?")


def test_a_reply_sent_twice_from_one_form_goes_out_once(client, agent, bob_wrote, eager_celery,
                                                        django_capture_on_commit_callbacks):
    client.force_login(agent)
    form = a_reply_form("Yes, from your next invoice.")

    # when the same form is posted twice (a double click)
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(thread_url(bob_wrote, "reply"), form)
        second = client.post(thread_url(bob_wrote, "reply"), form)

    # then one message, and both land on it in the thread
    replies_made = Message.objects.filter(conversation=bob_wrote, source="agent")
    assert replies_made.count() == 1
    reply = replies_made.get()
    assert first.url == second.url == thread_url(bob_wrote) + f"#message-{reply.pk}"
    page = client.get(thread_url(bob_wrote)).content.decode()
    assert "Yes, from your next invoice." in page and "Can I move to the yearly plan?" in page
    assert reply.agent == agent
    reply.refresh_from_db()
    assert reply.status == "delivered"
    assert "Delivered" in page


def test_a_refused_reply_stays_in_the_thread_marked_not_sent_with_the_reason_in_words(client, agent, bob_wrote):
    from compliance.actions import suppress

    suppress(bob_wrote.contact.phone, channel="sms", reason="manual")
    client.force_login(agent)

    response = client.post(thread_url(bob_wrote, "reply"), a_reply_form("Here you go"), follow=True)

    page = response.content.decode()
    assert "Not sent:" in page and "suppression list" in page
    refused = Message.objects.get(conversation=bob_wrote, source="agent")
    assert refused.status == "suppressed"
    assert f'id="message-{refused.pk}"' in page and "not sent" in page


def test_a_failed_reply_can_be_sent_again_as_a_new_message(client, agent, eager_celery,
                                                           django_capture_on_commit_callbacks):
    undeliverable = Contact.objects.create(external_id="dave", first_name="Dave", phone="+15005550009")
    conversation = writes_in(undeliverable, "hello?")
    client.force_login(agent)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(thread_url(conversation, "reply"), a_reply_form("Hello Dave"))
    # the sandbox reported it undelivered; the tick finds no channel left to fall back to
    with django_capture_on_commit_callbacks(execute=True):
        tick()
    failed = Message.objects.get(conversation=conversation, source="agent")
    assert failed.status == "failed"
    page = client.get(thread_url(conversation)).content.decode()
    assert "Send again" in page

    response = client.post(thread_url(conversation, "resend"), {"message": failed.pk, "form_token": uuid.uuid4()})

    again = Message.objects.get(resent_from=failed)
    assert response.status_code == 302
    failed.refresh_from_db()
    assert failed.status == "failed" and again.conversation == conversation


def test_a_saved_reply_is_filled_in_for_the_contact_and_an_unknown_variable_is_named(client, agent, bob_wrote):
    from channels.models import SavedReply

    yearly = SavedReply.objects.create(title="Yearly plan", body="Hi {{ contact.first_name }}, yearly it is.")
    broken = SavedReply.objects.create(title="Broken", body="Your code is {{ contact.attributes.code }}")
    client.force_login(agent)

    page = client.get(thread_url(bob_wrote), {"saved_reply": yearly.pk}).content.decode()
    assert "Hi Bob, yearly it is." in page

    page = client.get(thread_url(bob_wrote), {"saved_reply": broken.pk}).content.decode()
    assert 'id="saved-reply-error"' in page and "code" in page
    assert Message.objects.filter(conversation=bob_wrote).count() == 0


def test_outside_whatsapp_s_window_the_form_offers_approved_templates_only(client, agent):
    from channels.provider_reports import record_inbound_message

    carol = a_contact("Carol")
    inbound, _ = record_inbound_message("sandbox", uuid.uuid4().hex, "whatsapp", carol.phone, body="hi",
                                        received_at=NOW - timedelta(days=2))
    conversation = Conversation.objects.get(pk=inbound.conversation_id)
    client.force_login(agent)

    page = client.get(thread_url(conversation)).content.decode()

    assert 'id="reply-why"' in page and "24 hours" in page
    assert 'id="reply-form"' not in page
    response = client.post(thread_url(conversation, "reply"), a_reply_form("free text"))
    assert response.status_code == 400 and "24 hours" in response.content.decode()
    assert not Message.objects.filter(conversation=conversation).exists()


def test_work_a_conversation_from_its_thread(client, agent, bob_wrote):
    client.force_login(agent)

    client.post(thread_url(bob_wrote, "assign_me"))
    client.post(thread_url(bob_wrote, "status"), {"status": "waiting"})
    client.post(thread_url(bob_wrote, "tag"), {"tag": "billing"})
    client.post(thread_url(bob_wrote, "tag"), {"tag": "vip"})
    client.post(thread_url(bob_wrote, "tag"), {"tag": "vip", "remove": "1"})
    client.post(thread_url(bob_wrote, "follow_up"), {"follow_up_at": "2031-05-04T09:30"})
    client.post(thread_url(bob_wrote, "note"), {"body": "Asked about yearly pricing before."})

    bob_wrote.refresh_from_db()
    assert bob_wrote.assignee == agent and bob_wrote.status == "waiting"
    assert list(bob_wrote.tags.values_list("name", flat=True)) == ["billing"]
    assert timezone.localtime(bob_wrote.follow_up_at).strftime("%Y-%m-%d %H:%M") == "2031-05-04 09:30"
    page = client.get(thread_url(bob_wrote)).content.decode()
    assert "Asked about yearly pricing before." in page and "never sent" in page

    client.post(thread_url(bob_wrote, "close"))
    bob_wrote.refresh_from_db()
    assert bob_wrote.status == "closed" and bob_wrote.closed_by == agent


def test_bad_input_on_the_thread_is_said_and_kept(client, agent, bob_wrote):
    client.force_login(agent)

    response = client.post(thread_url(bob_wrote, "note"), {"body": "   "})
    assert response.status_code == 400
    response = client.post(thread_url(bob_wrote, "follow_up"), {"follow_up_at": "next tuesday"})
    assert response.status_code == 400 and "next tuesday" in response.content.decode()
    response = client.post(thread_url(bob_wrote, "reply"), {"body": "kept text", "form_token": "lost"})
    assert response.status_code == 400 and "kept text" in response.content.decode()
    assert client.post(thread_url(bob_wrote, "explode")).status_code == 404


def test_blocking_the_sender_keeps_a_reason(client, agent, bob_wrote):
    from channels.models import BlockedSender

    client.force_login(agent)

    client.post(thread_url(bob_wrote, "block"), {"reason": "spam", "note": "Sends ads"})

    block = BlockedSender.objects.get()
    assert (block.channel, block.address, block.reason, block.blocked_by) == ("sms", bob_wrote.contact.phone, "spam",
                                                                              agent)


def test_an_agent_starts_a_conversation_from_the_contact_s_timeline(client, agent, eager_celery,
                                                                    django_capture_on_commit_callbacks):
    erin = a_contact("Erin")
    client.force_login(agent)
    timeline_page = client.get(reverse("omni-web:timeline", args=[erin.pk])).content.decode()
    start = reverse("omni-web:start_conversation", args=[erin.pk])
    assert start in timeline_page

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(start, {"channel": "sms", "body": "Hi Erin, about your order",
                                       "form_token": uuid.uuid4()})

    conversation = Conversation.objects.get(contact=erin)
    assert response.status_code == 302 and response.url.startswith(thread_url(conversation))
    assert Message.objects.get(conversation=conversation).agent == agent


def test_an_agent_limited_to_their_queues_cannot_write_into_another_queue_s_conversation_by_starting_one(
        only_their_own, two_queues, agent, client):
    hidden = two_queues["shipping"]
    client.force_login(agent)
    start = reverse("omni-web:start_conversation", args=[hidden.contact_id])

    response = client.post(start, {"channel": "sms", "body": "hello", "form_token": uuid.uuid4()})

    assert response.status_code == 400
    assert "in a queue you do not work in" in response.content.decode()
    assert not Message.objects.filter(contact=hidden.contact).exists()
    # into a conversation of their own queue they may
    billing = two_queues["billing"]
    response = client.post(reverse("omni-web:start_conversation", args=[billing.contact_id]),
                           {"channel": "sms", "body": "hello", "form_token": uuid.uuid4()})
    assert response.status_code == 302
    assert Message.objects.get(contact=billing.contact).conversation == billing


def test_the_thread_page_takes_the_same_queries_for_a_short_or_long_thread(client, agent, bob_wrote, eager_celery,
                                                                           django_capture_on_commit_callbacks):
    from compliance.actions import suppress

    client.force_login(agent)
    url = thread_url(bob_wrote)

    def grow(count):
        for index in range(count):
            writes_in(bob_wrote.contact, f"message {index}")
            with django_capture_on_commit_callbacks(execute=True):
                client.post(thread_url(bob_wrote, "reply"), a_reply_form(f"answer {index}"))
            client.post(thread_url(bob_wrote, "note"), {"body": f"note {index}"})

    grow(2)
    suppress(bob_wrote.contact.phone, channel="sms", reason="manual")
    client.post(thread_url(bob_wrote, "reply"), a_reply_form("refused"))
    short = queries_for(client, url)
    grow(15)
    long = queries_for(client, url)

    assert short == long
