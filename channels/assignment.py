"""Automatic assignment: which agent of a queue takes a conversation nobody has.

Per queue (SupportQueue.assignment): round-robin hands conversations to the queue's agents in
turn, starting after the one who got the last (SupportQueue.last_assigned); fewest open gives
each to the agent with the fewest conversations not closed, ties going in round-robin order;
manual hands out nothing. Only agents who are in the queue, active staff and marked available
(AgentStatus) take conversations, and none beyond the queue's max_open_per_agent. What no one
can take waits unassigned, and the tick hands it out (assign_waiting) once someone is available
or has room again.

A queue's row is locked while its conversations are handed out, so two ticks at once never take
the same turn, and so are its available agents' status rows (in id order), so two queues an agent
works in never both fill that agent's last free place; the conversations are claimed with SKIP
LOCKED, so one an agent is taking by hand at that moment is left to them. The writes go through
channels.conversations.assign, which audits each conversation.
"""
from collections import defaultdict

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from django.utils import timezone

from omni import audit
from omni.lib.claims import claim

from . import conversations
from .models import AgentStatus, AssignmentStrategy, Conversation, ConversationStatus, SupportQueue

# Conversations one queue hands out per call: the tick comes back for the rest next time.
ASSIGN_BATCH = 200

# Open, in a queue and nobody's: what automatic assignment hands out. A conversation waiting on
# the customer is handed out when the customer writes again (it is open again then).
UNASSIGNED = Q(status=ConversationStatus.OPEN, assignee__isnull=True, queue__isnull=False)


def plan_assignments(strategy: str, open_counts: dict[int, int], last_assigned: int | None, cap: int,
                     wanted: int) -> list[int]:
    """Which agent takes each of `wanted` conversations, in order; shorter when the agents fill up.

    `open_counts` holds each available agent's conversations not closed. Round-robin goes through
    the agents in id order, starting after `last_assigned`; fewest open picks the agent with the
    fewest, the next in that same order among equals. Nobody goes beyond `cap`.
    """
    if strategy == AssignmentStrategy.MANUAL:
        return []
    counts = dict(open_counts)
    order = sorted(counts)
    start = next((i for i, agent in enumerate(order) if last_assigned is not None and agent > last_assigned), 0)
    rotation = order[start:] + order[:start]
    picks = []
    for _ in range(wanted):
        with_room = [agent for agent in rotation if counts[agent] < cap]
        if not with_room:
            break
        if strategy == AssignmentStrategy.FEWEST_OPEN:
            agent = min(with_room, key=lambda a: counts[a])  # min keeps the first of equals
        else:
            agent = with_room[0]
        picks.append(agent)
        counts[agent] += 1
        after = rotation.index(agent) + 1
        rotation = rotation[after:] + rotation[:after]
    return picks


def assign_new(conversation_ids, *, now=None) -> int:
    """Hand out those of `conversation_ids` that are open, in a queue and unassigned, by their
    queue's strategy. Each queue in its own transaction. Returns how many were assigned."""
    by_queue = defaultdict(list)
    for pk, queue_id in (Conversation.objects.filter(UNASSIGNED, pk__in=list(conversation_ids))
                         .exclude(queue__assignment=AssignmentStrategy.MANUAL).order_by().values_list("pk", "queue_id")):
        by_queue[queue_id].append(pk)
    return sum(_assign_in_queue(queue_id, ids, now) for queue_id, ids in sorted(by_queue.items()))


def assign_waiting(now=None) -> int:
    """Hand out what waits unassigned in the queues where an agent is available now (the tick
    runs this: someone came back, or closed a conversation and has room). One indexed query when
    nothing waits."""
    available_agent = AgentStatus.objects.filter(available=True, agent__is_active=True, agent__is_staff=True,
                                                 agent__support_queues=OuterRef("queue_id"))
    queue_ids = (Conversation.objects.filter(UNASSIGNED).exclude(queue__assignment=AssignmentStrategy.MANUAL)
                 .filter(Exists(available_agent)).order_by().values_list("queue_id", flat=True).distinct())
    return sum(_assign_in_queue(queue_id, None, now) for queue_id in sorted(queue_ids))


def _assign_in_queue(queue_id: int, conversation_ids: list[int] | None, now) -> int:
    with transaction.atomic():
        queue = SupportQueue.objects.select_for_update().filter(pk=queue_id).first()
        if queue is None or queue.assignment == AssignmentStrategy.MANUAL:
            return 0
        waiting = Conversation.objects.filter(UNASSIGNED, queue_id=queue_id)
        if conversation_ids is not None:
            waiting = waiting.filter(pk__in=conversation_ids)
        # The most urgent first: the earliest first-response due time, then the oldest.
        waiting = claim(waiting.order_by(F("first_response_due_at").asc(nulls_last=True), "opened_at", "pk")
                        .values_list("pk", flat=True), ASSIGN_BATCH)
        if not waiting:
            return 0
        # The agents' rows too, in id order: an agent in two queues is counted by one at a time.
        of = {"of": ("self",)} if connection.features.has_select_for_update_of else {}
        agent_ids = list(AgentStatus.objects.select_for_update(**of).filter(
            available=True, agent__support_queues=queue_id, agent__is_active=True, agent__is_staff=True)
            .order_by("agent_id").values_list("agent_id", flat=True))
        open_counts = dict(
            get_user_model().objects.filter(pk__in=agent_ids)
            .annotate(open=Count("conversations", filter=~Q(conversations__status=ConversationStatus.CLOSED)))
            .order_by("pk").values_list("pk", "open")
        )
        picks = plan_assignments(queue.assignment, open_counts, queue.last_assigned_id, queue.max_open_per_agent,
                                 len(waiting))
        if not picks:
            return 0
        by_agent = defaultdict(list)
        for conversation_id, agent_id in zip(waiting, picks):
            by_agent[agent_id].append(conversation_id)
        agents = get_user_model().objects.in_bulk(list(by_agent))
        assigned = sum(conversations.assign(ids, agents[agent_id], actor=None) for agent_id, ids in by_agent.items())
        SupportQueue.objects.filter(pk=queue_id).update(last_assigned=picks[-1])
    return assigned


@transaction.atomic
def set_available(agent, available: bool, *, actor, now=None) -> AgentStatus:
    """Mark `agent` available for new conversations, or away. Audited when it changes; the tick
    then hands them what waits in their queues."""
    now = now or timezone.now()
    status, created = AgentStatus.objects.select_for_update().get_or_create(
        agent=agent, defaults={"available": available, "changed_at": now})
    if not created and status.available == available:
        return status
    if not created:
        status.available, status.changed_at = available, now
        status.save(update_fields=["available", "changed_at"])
    audit.record("agent.availability_changed", obj=status, actor=actor, reason="available" if available else "away",
                 data={"agent_id": agent.pk, "available": available})
    return status
