"""Automatic assignment per queue, through the real tick and signed webhooks: round-robin or
fewest open, only to available agents of the queue, never beyond the cap; what nobody can take
waits and is handed out once someone can; two ticks at once never overfill an agent."""
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from channels import conversations
from channels.assignment import assign_new, assign_waiting, plan_assignments, set_available
from channels.models import AgentStatus, AssignmentStrategy, Conversation, ConversationStatus, SupportQueue
from contacts.models import Contact
from omni.models import AuditEntry
from omni.tests.fakes import run_concurrently

pytestmark = pytest.mark.django_db

ROUND_ROBIN, FEWEST_OPEN, MANUAL = (AssignmentStrategy.ROUND_ROBIN, AssignmentStrategy.FEWEST_OPEN,
                                    AssignmentStrategy.MANUAL)


@pytest.fixture
def general(agents):
    """The default queue, worked by Ann, Bea and Cy, round-robin, at most two open each."""
    queue = SupportQueue.objects.create(name="General", is_default=True, max_open_per_agent=2)
    queue.agents.set(agents)
    return queue


def available(*people):
    for person in people:
        set_available(person, True, actor=person)


def customers_write_in(write_in, count: int, first: int = 0) -> list[Contact]:
    customers = []
    for i in range(first, first + count):
        customer = Contact.objects.create(external_id=f"customer{i}", phone=f"+1415557{i:04d}", first_name=f"C{i}")
        write_in(f"Hello, it's customer {i}", sender=customer.phone)
        customers.append(customer)
    return customers


def assignees(customers) -> list:
    by_contact = {c.contact_id: c.assignee for c in Conversation.objects.select_related("assignee")}
    return [by_contact[customer.pk] for customer in customers]


# --- the plan, pure ------------------------------------------------------------------------------

def test_round_robin_goes_on_after_the_last_agent_and_skips_the_full_ones():
    # agents 1, 2, 3 with 0, 2, 0 open; cap 2; agent 1 got the last one
    assert plan_assignments(ROUND_ROBIN, {1: 0, 2: 2, 3: 0}, 1, 2, 5) == [3, 1, 3, 1]
    assert plan_assignments(ROUND_ROBIN, {1: 0, 2: 0}, None, 5, 3) == [1, 2, 1]
    assert plan_assignments(ROUND_ROBIN, {1: 0, 2: 0}, 99, 5, 1) == [1]  # the last one left the queue


def test_fewest_open_picks_the_least_busy_and_breaks_ties_in_turn():
    assert plan_assignments(FEWEST_OPEN, {1: 2, 2: 0, 3: 1}, None, 3, 5) == [2, 3, 2, 3, 1]
    assert plan_assignments(FEWEST_OPEN, {1: 3, 2: 3}, None, 3, 1) == []


def test_a_manual_queue_or_nobody_available_plans_nothing():
    assert plan_assignments(MANUAL, {1: 0}, None, 5, 3) == []
    assert plan_assignments(ROUND_ROBIN, {}, None, 5, 3) == []


# --- through the tick ----------------------------------------------------------------------------

def test_round_robin_hands_new_conversations_out_in_turn_up_to_the_cap_and_the_rest_waits(
    write_in, agents, general, tick,
):
    # given Ann, Bea and Cy are available in the default queue, two open conversations each at most
    ann, bea, cy = agents
    available(ann, bea, cy)

    # when seven customers write in, and the tick runs
    customers = customers_write_in(write_in, 7)
    report = tick(timezone.now())

    # then each agent got two, in turn, and the seventh waits unassigned in the queue
    assert assignees(customers) == [ann, bea, cy, ann, bea, cy, None]
    assert report.assigned == 6
    assert set(Conversation.objects.values_list("queue", flat=True)) == {general.pk}
    general.refresh_from_db()
    assert general.last_assigned == cy
    assert AuditEntry.objects.filter(action="conversation.assigned").count() == 6

    # when Bea closes one
    conversations.close([Conversation.objects.filter(assignee=bea).first()], actor=bea)
    report = tick(timezone.now())

    # then the waiting one is hers, though Ann's turn came first: Ann is full
    assert assignees(customers)[6] == bea and report.assigned == 1


def test_fewest_open_gives_each_to_the_agent_with_the_fewest(write_in, agents, general, tick):
    # given the queue hands out by fewest open, three each at most; Ann has two, Bea none, Cy one
    ann, bea, cy = agents
    general.assignment, general.max_open_per_agent = FEWEST_OPEN, 3
    general.save()
    earlier = customers_write_in(write_in, 3, first=100)
    for customer, agent in zip(earlier, (ann, ann, cy)):
        conversations.assign(Conversation.objects.filter(contact=customer), agent, actor=agent)
    available(ann, bea, cy)

    # when four more write in
    customers = customers_write_in(write_in, 4)
    tick(timezone.now())

    # then Bea, then Cy and Bea by turns
    assert assignees(customers) == [bea, cy, bea, cy]


def test_only_available_agents_of_the_queue_take_conversations_and_a_comeback_takes_what_waits(
    write_in, agents, general, tick,
):
    # given Ann is away, Bea is available but not in the queue, and Cy is available but not staff
    ann, bea, cy = agents
    general.agents.set([ann, cy])
    get_user_model().objects.filter(pk=cy.pk).update(is_staff=False)
    available(bea, cy)

    # when two customers write in
    customers = customers_write_in(write_in, 2)
    tick(timezone.now())

    # then nobody took them
    assert assignees(customers) == [None, None]

    # when Ann comes back
    set_available(ann, True, actor=ann)
    report = tick(timezone.now())

    # then the next tick hands both to her
    assert assignees(customers) == [ann, ann] and report.assigned == 2


def test_a_manual_queue_hands_out_nothing(write_in, agents, general, tick):
    general.assignment = MANUAL
    general.save()
    available(*agents)

    customers = customers_write_in(write_in, 2)
    tick(timezone.now())

    assert assignees(customers) == [None, None]
    assert assign_waiting(timezone.now()) == 0


def test_without_a_default_queue_new_conversations_wait_unassigned(write_in, agents, tick):
    available(*agents)

    customers = customers_write_in(write_in, 1)
    tick(timezone.now())

    conversation = Conversation.objects.get()
    assert (conversation.queue, conversation.assignee, conversation.status) == (None, None, ConversationStatus.OPEN)
    assert assignees(customers) == [None]


def test_marking_an_agent_available_or_away_is_audited_once_per_change(agents):
    ann = agents[0]

    set_available(ann, True, actor=ann)
    set_available(ann, True, actor=ann)
    set_available(ann, False, actor=agents[1])

    assert AgentStatus.objects.get(agent=ann).available is False
    entries = AuditEntry.objects.filter(action="agent.availability_changed").order_by("pk")
    assert [(e.reason, e.actor_id) for e in entries] == [("available", ann.pk), ("away", agents[1].pk)]


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_two_workers_handing_out_at_once_never_go_beyond_the_cap(transactional_db, agents):
    # given twenty conversations wait in a queue where Ann alone works, three at most
    ann = agents[0]
    queue = SupportQueue.objects.create(name="General", max_open_per_agent=3)
    queue.agents.set([ann])
    waiting = []
    for i in range(20):
        customer = Contact.objects.create(external_id=f"c{i}", phone=f"+1415557{i:04d}")
        waiting.append(Conversation.objects.create(contact=customer, channel="sms", queue=queue).pk)
    set_available(ann, True, actor=ann)

    # when two workers hand out ten each at the same instant (two tick batches of new messages)
    halves = iter([waiting[:10], waiting[10:]])
    results, errors = run_concurrently(lambda: assign_new(next(halves)))

    # then she has three, not six: the queue's lock made the second count what the first gave
    assert not errors
    assert sum(results) == 3
    assert Conversation.objects.filter(assignee=ann).count() == 3


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_two_queues_handing_out_at_once_never_take_a_shared_agent_beyond_the_cap(transactional_db, agents):
    # given Ann works in Billing and Shipping, three open at most in each; ten wait in each
    ann = agents[0]
    waiting = []
    for name in ("Billing", "Shipping"):
        queue = SupportQueue.objects.create(name=name, max_open_per_agent=3)
        queue.agents.set([ann])
        ids = []
        for i in range(10):
            customer = Contact.objects.create(external_id=f"{name}{i}", phone=f"+1415557{len(waiting) * 10 + i:04d}")
            ids.append(Conversation.objects.create(contact=customer, channel="sms", queue=queue).pk)
        waiting.append(ids)
    set_available(ann, True, actor=ann)

    # when both queues hand out at the same instant
    queues = iter(waiting)
    results, errors = run_concurrently(lambda: assign_new(next(queues)))

    # then she has three, not six: the second queue counted what the first gave her
    assert not errors
    assert sum(results) == 3
    assert Conversation.objects.filter(assignee=ann).count() == 3


def test_a_message_flagged_for_an_agent_reaches_one_without_an_automated_reply(write_in, agents, general, tick,
                                                                              keyword_lists, settings):
    # given an automated response to anything about the sale, and Ann available
    from channels.models import AutoResponse, Message, MessageSource

    settings.OMNI_KEYWORD_EMBEDDED_OPT_OUT = "opt_out_and_flag"
    AutoResponse.objects.create(name="Sale", phrases="sale", body="The sale ends Sunday.")
    available(agents[0])
    customer = Contact.objects.create(external_id="c1", phone="+14155557000")

    # when the customer's message has an opt-out word inside other text
    inbound = write_in("please stop texting me about the sale", sender=customer.phone)
    tick(timezone.now())

    # then a person has it, and automation did not answer
    inbound.refresh_from_db()
    assert inbound.needs_agent and inbound.automated_reply is None
    assert assignees([customer]) == [agents[0]]
    assert not Message.objects.filter(source=MessageSource.SYSTEM, idempotency_key__startswith="auto:").exists()
