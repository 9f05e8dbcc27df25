"""Support automation answers customers who write in, through the real tick, never in the webhook:
escalation rules route and acknowledge with when a person answers, automated first responses go
once and only before an agent, an after-hours reply once per conversation and day; keywords,
blocked senders and satisfaction answers get nothing; a row that cannot be handled is
quarantined; the satisfaction question is asked once after a close."""
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.tick_report import TickReport
from channels import conversations
from channels.assignment import assign_waiting, set_available
from channels.models import (
    AutoResponse,
    BlockReason,
    BusinessHours,
    Conversation,
    EscalationRule,
    EscalationTrigger,
    InboundMessage,
    Message,
    MessageSource,
    MessageStatus,
    OpeningHours,
    ServiceLevel,
    SupportQueue,
)
from channels.provider_reports import record_inbound_message
from channels.support_automation import ask_satisfaction, handle_inbound_batch
from contacts.models import Contact
from omni.models import AuditEntry
from omni.tests.fakes import run_concurrently

pytestmark = pytest.mark.django_db


def open_only_on(day, zone="UTC") -> BusinessHours:
    """Business hours open 09:00-17:00 on `day`'s weekday only: closed now, whatever the day."""
    hours = BusinessHours.objects.create(name=f"Only {day:%A}", timezone=zone)
    OpeningHours.objects.create(business_hours=hours, weekday=day.weekday(), opens=time(9), closes=time(17))
    return hours


def spoken(day, at: str, zone: str) -> str:
    """A due time as the acknowledgement says it."""
    return f"{day:%A} {day.day} {day:%B} at {at} {zone}"


def automated_replies():
    return Message.objects.filter(source=MessageSource.SYSTEM, idempotency_key__startswith="auto:").order_by("pk")


def texts(messages) -> list[str]:
    return [m.content[0]["text_body"] for m in messages]


@pytest.fixture
def complaints(agents):
    queue = SupportQueue.objects.create(name="Complaints")
    queue.agents.set(agents[1:2])  # Bea
    return queue


def test_an_escalation_phrase_routes_assigns_and_acknowledges_with_when_a_person_answers(
    write_in, contact, agents, complaints, tick, eager_celery, twilio_server, django_capture_on_commit_callbacks,
):
    # given SMS answered within an hour, in hours open only two days from now, 09:00-17:00 UTC
    now = timezone.now()
    opening_day = now.date() + timedelta(days=2)
    ServiceLevel.objects.create(channel="sms", business_hours=open_only_on(opening_day), first_response_minutes=60)
    # and a rule sending whoever asks for a person to Complaints, where Bea is available
    EscalationRule.objects.create(name="Wants a person", trigger=EscalationTrigger.PHRASE,
                                  phrases="speak to a human\nmanager", queue=complaints,
                                  acknowledgement="Thanks {{ first_name }}, a person answers by {{ response_due }}.")
    set_available(agents[1], True, actor=agents[1])

    # when Alice writes in, and the tick runs
    inbound = write_in("Can I SPEAK to a   human, please?")
    assert inbound.automated_reply is None  # nothing happens in the webhook
    with django_capture_on_commit_callbacks(execute=True):
        report = tick(now)

    # then her conversation is in Complaints, Bea has it, and she was told when a person answers
    conversation = Conversation.objects.get()
    assert (conversation.queue, conversation.assignee) == (complaints, agents[1])
    expected = f"Thanks Alice, a person answers by {spoken(opening_day, '10:00', 'UTC')}."
    inbound.refresh_from_db()
    ack = inbound.automated_reply
    assert texts([ack]) == [expected]
    assert (ack.source, ack.idempotency_key, ack.conversation, ack.purpose) == (
        MessageSource.SYSTEM, f"auto:{inbound.pk}", conversation, "informational")
    assert [m["Body"] for m in twilio_server.messages] == [expected]
    assert (conversation.automated_replies, inbound.handled_at) == (1, now)
    assert (report.inbound_handled, report.automated_replies, report.escalated, report.assigned) == (1, 1, 1, 1)
    escalated = AuditEntry.objects.get(action="conversation.escalated")
    assert escalated.object_id == str(conversation.pk) and escalated.data["queue_id"] == complaints.pk

    # when she asks again
    write_in("A manager, now!")
    tick(now)

    # then the conversation is where it should be already: no second acknowledgement
    assert automated_replies().count() == 1


def test_escalation_takes_the_conversation_from_an_agent_outside_the_new_queue(write_in, contact, agents, complaints,
                                                                               tick, now):
    # given Alice's conversation is Ann's, and Ann does not work Complaints
    write_in("Hello")
    conversation = Conversation.objects.get()
    conversations.assign([conversation], agents[0], actor=agents[0])
    EscalationRule.objects.create(name="Refund", trigger=EscalationTrigger.PHRASE, phrases="refund", queue=complaints)
    set_available(agents[1], True, actor=agents[1])

    # when she asks for a refund
    write_in("I want a refund")
    tick(now)

    # then Bea, who works Complaints, has it; no acknowledgement without a text
    conversation.refresh_from_db()
    assert (conversation.queue, conversation.assignee) == (complaints, agents[1])
    assert not automated_replies().exists()


def test_without_a_service_level_the_acknowledgement_promises_no_time(write_in, contact, complaints, tick, now):
    EscalationRule.objects.create(name="Human", trigger=EscalationTrigger.PHRASE, phrases="human", queue=complaints,
                                  acknowledgement="Someone answers {{ response_due }}.")

    write_in("human please")
    tick(now)

    assert texts(automated_replies()) == ["Someone answers as soon as we can."]


def test_an_automated_first_response_goes_once_and_never_after_an_agent_replied(write_in, contact, agents, tick, now):
    # given an automated response about opening hours
    AutoResponse.objects.create(name="Hours", phrases="opening hours\nwhen are you open",
                                body="We are open 9 to 5, {{ first_name }}.")

    # when Alice asks twice
    write_in("What are your OPENING HOURS?")
    tick(now)
    write_in("opening hours??")
    tick(now)

    # then she was answered once
    assert texts(automated_replies()) == ["We are open 9 to 5, Alice."]
    conversation = Conversation.objects.get()
    assert conversation.automated_replies == 1

    # when Bob, whom an agent has answered already, asks
    bob = Contact.objects.create(external_id="bob", phone="+14155550101", first_name="Bob")
    write_in("hi", sender=bob.phone)
    bobs = Conversation.objects.get(contact=bob)
    conversations.record_response(bobs, timezone.now())
    write_in("When are you open?", sender=bob.phone)
    tick(now)

    # then automation does not speak over the agent; words inside other words do not match
    write_in("my opening hoursx question", sender="+14155550100")
    tick(now)
    assert texts(automated_replies()) == ["We are open 9 to 5, Alice."]


def test_the_after_hours_reply_goes_once_per_conversation_and_day(write_in, contact, tick):
    # given SMS answered only three days from now, 09:00-17:00 in London
    now = timezone.now()
    opening_day = now.date() + timedelta(days=3)
    ServiceLevel.objects.create(channel="sms", business_hours=open_only_on(opening_day, "Europe/London"),
                                first_response_minutes=30,
                                after_hours_reply="We are closed. A person answers by {{ response_due }}.")

    # when Alice writes twice today and once tomorrow
    write_in("hi")
    tick(now)
    write_in("hello?")
    tick(now)  # the same moment: "later today" must not cross midnight when the suite runs at 23:58
    write_in("anyone there?")
    tick(now + timedelta(days=1))

    # then she got the after-hours reply today and again tomorrow, not twice today
    london = ZoneInfo("Europe/London")
    zone = datetime.combine(opening_day, time(9, 30), tzinfo=london).tzname()  # GMT or BST
    promise = f"We are closed. A person answers by {spoken(opening_day, '09:30', zone)}."
    assert texts(automated_replies()) == [promise, promise]
    inbound = list(InboundMessage.objects.order_by("pk"))
    assert [i.automated_reply is not None for i in inbound] == [True, False, True]
    conversation = Conversation.objects.get()
    assert conversation.after_hours_replied_on == (now + timedelta(days=1)).astimezone(london).date()


def test_no_after_hours_reply_while_open(write_in, contact, tick, now):
    hours = BusinessHours.objects.create(name="Always", timezone="UTC")
    for weekday in range(7):
        OpeningHours.objects.create(business_hours=hours, weekday=weekday, opens=time(0), closes=time(23, 59))
    ServiceLevel.objects.create(channel="sms", business_hours=hours, after_hours_reply="We are closed.")

    write_in("hi")
    tick(now.replace(hour=12))

    assert not automated_replies().exists()


@pytest.mark.parametrize("tick_after_each", [True, False])
def test_the_same_message_repeated_escalates(write_in, contact, complaints, tick, now, tick_after_each):
    EscalationRule.objects.create(name="Repeats", trigger=EscalationTrigger.REPEATED_MESSAGE, threshold=3,
                                  queue=complaints, acknowledgement="Sorry! A person will look at it.")

    for body in ("Where is my order?", "where is my   ORDER?", "Hello?", "Where is my order?"):
        write_in(body)
        if tick_after_each:
            tick(now)
    tick(now)

    # the third time the same words come, not before
    replied = [i.body for i in InboundMessage.objects.order_by("pk") if i.automated_reply_id]
    assert replied == ["Where is my order?"] and InboundMessage.objects.order_by("pk").last().automated_reply_id
    assert Conversation.objects.get().queue == complaints


def test_as_many_automated_replies_as_the_threshold_escalate(write_in, contact, complaints, tick, now):
    AutoResponse.objects.create(name="Prices", phrases="price", body="Prices are on our site.", position=1)
    AutoResponse.objects.create(name="Delivery", phrases="delivery", body="Delivery takes 2 days.", position=2)
    EscalationRule.objects.create(name="Bot loop", trigger=EscalationTrigger.AUTOMATED_REPLIES, threshold=2,
                                  queue=complaints, acknowledgement="Let me get you a person.")

    for body in ("price?", "and delivery?", "that does not help"):
        write_in(body)
        tick(now)

    assert texts(automated_replies()) == ["Prices are on our site.", "Delivery takes 2 days.",
                                          "Let me get you a person."]
    conversation = Conversation.objects.get()
    assert (conversation.queue, conversation.automated_replies) == (complaints, 3)


def test_keywords_blocked_senders_satisfaction_answers_and_old_messages_get_nothing(
    write_in, contact, agents, keyword_lists, tick,
):
    # given every message would get an after-hours reply now, and a satisfaction question
    now = timezone.now()
    ServiceLevel.objects.create(channel="sms", business_hours=open_only_on(now.date() + timedelta(days=2)),
                                after_hours_reply="We are closed.", satisfaction_question="Rate us 1-5.")
    # and Alice's conversation was answered, closed and surveyed
    write_in("hi")
    tick(now)
    conversations.close(list(Conversation.objects.values_list("pk", flat=True)), actor=agents[0])
    assert ask_satisfaction(timezone.now()) == 1
    # and Bob is blocked
    bob = Contact.objects.create(external_id="bob", phone="+14155550101", first_name="Bob")
    conversations.block_sender("sms", bob.phone, reason=BlockReason.SPAM, actor=agents[0])

    # when Alice answers the survey, then texts HELP, Bob writes, and a message two days old is found
    answer = write_in("5")
    help_ = write_in("HELP")
    spam = write_in("buy now", sender=bob.phone)
    old, _ = record_inbound_message("twilio", "SMold", "sms", "+14155550100", body="hello from the past",
                                    received_at=now - timedelta(days=2))
    report = tick(now + timedelta(minutes=1))

    # then nothing answered them (HELP got its keyword reply only), and all are handled
    assert Conversation.objects.get(contact=contact, status="closed").satisfaction == 5
    assert texts(automated_replies()) == ["We are closed."]  # the first "hi" only
    for inbound in (answer, help_, spam, old):
        inbound.refresh_from_db()
        assert inbound.automated_reply is None and inbound.handled_at is not None
    assert help_.keyword == "help"
    assert report.automated_replies == 0


def test_a_row_that_cannot_be_answered_is_quarantined_and_the_rest_of_the_batch_goes_on(write_in, contact, tick, now):
    # given a response naming an attribute Alice has and Bob lacks
    AutoResponse.objects.create(name="Plan", phrases="my plan", body="You are on {{ contact.attributes.plan }}.")
    Contact.objects.filter(pk=contact.pk).update(attributes={"plan": "Gold"})
    bob = Contact.objects.create(external_id="bob", phone="+14155550101", first_name="Bob")

    # when both ask, and the tick runs
    alices = write_in("what is my plan?")
    bobs = write_in("What is my plan", sender=bob.phone)
    report = tick(now)

    # then Alice is answered; Bob's message is set aside, saying why, and not claimed again
    assert texts(automated_replies()) == ["You are on Gold."]
    bobs.refresh_from_db()
    assert bobs.quarantined_at == now and bobs.handled_at is None
    assert "RenderError" in bobs.quarantine_reason and "plan" in bobs.quarantine_reason
    assert (report.quarantined, report.inbound_handled) == (1, 1)
    assert AuditEntry.objects.filter(action="tick.quarantined", reason="support automation",
                                     object_id=str(bobs.pk)).exists()
    assert tick(now).quarantined == 0
    alices.refresh_from_db()
    assert alices.automated_reply is not None


def test_the_satisfaction_question_is_asked_once_after_a_close(write_in, contact, agents):
    # given a question on SMS, and three closed conversations: Alice's now, Bob's (blocked since),
    # and Cy's two days ago
    ServiceLevel.objects.create(channel="sms", satisfaction_question="How did we do, {{ first_name }}? Reply 1-5.")
    bob = Contact.objects.create(external_id="bob", phone="+14155550101", first_name="Bob")
    cy = Contact.objects.create(external_id="cy", phone="+14155550102", first_name="Cy")
    for person in (contact, bob, cy):
        write_in("hi", sender=person.phone)
    by_contact = {c.contact_id: c for c in Conversation.objects.all()}
    conversations.block_sender("sms", bob.phone, reason=BlockReason.ABUSE, actor=agents[0])
    conversations.close(list(by_contact.values()), actor=agents[0])
    now = timezone.now()
    Conversation.objects.filter(pk=by_contact[cy.pk].pk).update(closed_at=now - timedelta(days=2))

    # when beat asks, twice
    asked = [ask_satisfaction(now + timedelta(minutes=1)), ask_satisfaction(now + timedelta(minutes=2))]

    # then Alice alone was asked, once, on her channel
    assert asked == [1, 0]
    question = Message.objects.get(idempotency_key__startswith="satisfaction:")
    alices = by_contact[contact.pk]
    assert question.idempotency_key == f"satisfaction:{alices.pk}"
    assert (texts([question]), question.contact, question.conversation) == (
        ["How did we do, Alice? Reply 1-5."], contact, alices)
    assert question.status == MessageStatus.QUEUED and question.source == MessageSource.SYSTEM
    alices.refresh_from_db()
    assert alices.satisfaction_asked_at == now + timedelta(minutes=1)


def test_the_satisfaction_task_asks(write_in, contact, agents, now):
    from channels.tasks import ask_satisfaction_task

    ServiceLevel.objects.create(channel="sms", satisfaction_question="Rate us 1-5.")
    write_in("hi")
    conversations.close(list(Conversation.objects.values_list("pk", flat=True)), actor=agents[0])

    ask_satisfaction_task.apply()

    assert Message.objects.filter(idempotency_key__startswith="satisfaction:").count() == 1


# --- cost -------------------------------------------------------------------------------------------

def statements(queries) -> list[str]:
    """The statements run, without the savepoints a test's own transaction adds around atomic()."""
    return [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]


def test_the_stage_costs_one_query_when_there_is_nothing_to_do(now):
    with CaptureQueriesContext(connection) as inbound_stage:
        assert handle_inbound_batch(now, TickReport()) == 0
    with CaptureQueriesContext(connection) as waiting:
        assert assign_waiting(now) == 0

    assert (len(statements(inbound_stage)), len(statements(waiting))) == (1, 1)


def _inbound_from_new_contacts(count: int, offset: int) -> None:
    for i in range(offset, offset + count):
        phone = f"+1415556{i:04d}"
        Contact.objects.create(external_id=f"c{i}", phone=phone, first_name=f"C{i}")
        record_inbound_message("twilio", f"SMbulk{i}", "sms", phone, body="what are your opening hours")


# A batch on PostgreSQL: claim, lock contacts and conversations, rules, responses, schedules (3),
# replies made before, the default queue, store and route the replies (routing's handful), write
# conversations and inbound rows (19); then hand out what waits (6), three more per agent who
# gets conversations (channels.conversations.assign), here three agents.
BATCH_QUERIES = 19 + 6 + 3 * 3


def test_a_batch_takes_the_same_number_of_queries_whatever_its_size(twilio_settings, now, agents):
    # given automated responses, an after-hours reply, and a default queue with an available agent
    AutoResponse.objects.create(name="Hours", phrases="opening hours", body="9 to 5.")
    ServiceLevel.objects.create(channel="sms", business_hours=open_only_on(now.date() + timedelta(days=2)),
                                after_hours_reply="Closed.")
    general = SupportQueue.objects.create(name="General", is_default=True, max_open_per_agent=1000)
    general.agents.set(agents)
    for agent in agents:
        set_available(agent, True, actor=agent)
    _inbound_from_new_contacts(3, 900)
    handle_inbound_batch(now, TickReport())  # the gate's rules are read once, then kept

    counts = []
    for size, offset in ((5, 0), (60, 100)):
        _inbound_from_new_contacts(size, offset)
        with CaptureQueriesContext(connection) as queries:
            report = TickReport()
            handle_inbound_batch(now, report)
        assert (report.automated_replies, report.assigned) == (size, size)
        counts.append(len(statements(queries)))

    # SQLite's limit on query parameters splits the bulk writes of a large batch in chunks.
    if connection.vendor == "postgresql":
        assert counts[0] == counts[1], counts
    assert max(counts) <= BATCH_QUERIES + (0 if connection.vendor == "postgresql" else 10), counts


# --- concurrency ------------------------------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="SKIP LOCKED claiming needs PostgreSQL")
def test_two_ticks_at_once_answer_every_message_once(transactional_db, twilio_settings):
    # given 300 customers asking, more than one batch
    AutoResponse.objects.create(name="Hours", phrases="opening hours", body="9 to 5.")
    _inbound_from_new_contacts(300, 0)
    now = timezone.now()

    # when two workers tick at the same instant
    from campaigns.tick import tick

    reports, errors = run_concurrently(lambda: tick(now))

    # then each message was answered exactly once, by one of them
    assert not errors
    assert sum(r.automated_replies for r in reports) == 300
    assert sum(r.inbound_handled for r in reports) == 300
    assert automated_replies().count() == 300
    assert not InboundMessage.objects.filter(automated_reply__isnull=True).exists()
    assert set(Conversation.objects.values_list("automated_replies", flat=True)) == {1}
