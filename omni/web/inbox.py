"""The support inbox: the conversations a user may see (channels.support_access), in three tabs
(unassigned, mine, all) with their counts, filtered by channel, queue, tag, status and text, in
keyset pages.

Order: conversations still waiting for a first response by when it is due, then by follow-up
date, then the rest; the id breaks ties. Both times are read as a far-future date when they do
not apply, so the page's cursor is three plain values compared in one WHERE clause (no OFFSET).
Every page is the same few queries whatever it holds: the rows with their contact, assignee and
queue, their tags, and one aggregate for the three counts.
"""
from dataclasses import dataclass, field

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.fields.json import KT
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from channels.models import (
    Conversation,
    ConversationStatus,
    ConversationTag,
    InboundMessage,
    Message,
    SupportQueue,
    follow_up_order,
    response_due_order,
)
from channels.support_access import conversations_for
from omni.choices import Channel

# What each part of support's pages needs (views check them; the actions check nothing).
VIEW = "channels.view_conversation"
WORK = "channels.change_conversation"  # assign, set the status, tag, set a follow-up, close
REPLY = "channels.reply_conversation"  # reply, send again, start a conversation (P3's role migration)
NOTE = "channels.add_conversationnote"
READ_NOTES = "channels.view_conversationnote"  # notes are for agents: compliance staff view threads without them
BLOCK = "channels.add_blockedsender"
SAVED_REPLIES = "channels.view_savedreply"

PAGE_SIZE = 50
UNASSIGNED, MINE, ALL = "unassigned", "mine", "all"
TABS = [(UNASSIGNED, "Unassigned"), (MINE, "Mine"), (ALL, "All")]
# The status filter: "" is everything not closed.
NOT_CLOSED = ""
STATUS_CHOICES = [(NOT_CLOSED, "Open or waiting"), *ConversationStatus.choices]
# Customers write in any language: the "simple" configuration lower-cases words and stems none,
# where one language's stemmer would mangle the others. The indexes of channels' migration
# inbox_search are built on the same expressions.
SEARCH_CONFIG = "simple"
PREVIEW_CHARS = 120


@dataclass
class Filters:
    tab: str = ALL
    channel: str = ""
    queue: int | None = None
    tag: int | None = None
    status: str = NOT_CLOSED
    text: str = ""

    @classmethod
    def from_query(cls, query) -> "Filters":
        """Filters from a request's GET; a value that does not read is left out, not an error."""
        def number(name):
            value = query.get(name, "")
            return int(value) if value.isdigit() else None

        tab = query.get("tab", ALL)
        channel = query.get("channel", "")
        status = query.get("status", NOT_CLOSED)
        return cls(
            tab=tab if tab in dict(TABS) else ALL,
            channel=channel if channel in Channel.values else "",
            queue=number("queue"), tag=number("tag"),
            status=status if status in ConversationStatus.values else NOT_CLOSED,
            text=" ".join(query.get("q", "").split())[:200],
        )

    def as_query(self, **changes) -> dict:
        """These filters (with `changes`) as GET parameters, leaving out empty ones."""
        values = {"tab": self.tab, "channel": self.channel, "queue": self.queue, "tag": self.tag,
                  "status": self.status, "q": self.text, **changes}
        return {name: value for name, value in values.items() if value not in ("", None)}


def search(conversations, text: str):
    """Conversations with an inbound message or a reply that matches `text`: PostgreSQL's
    full-text search (every word, any order; "quoted phrases" and -exclusions as in a web
    search), elsewhere a case-insensitive match of the text as typed."""
    if not text:
        return conversations
    if connection.vendor == "postgresql":
        query = SearchQuery(text, config=SEARCH_CONFIG, search_type="websearch")
        inbound = (InboundMessage.objects.filter(conversation__isnull=False)
                   .annotate(found=SearchVector("body", config=SEARCH_CONFIG)).filter(found=query))
        replies = (Message.objects.filter(conversation__isnull=False)
                   .annotate(found=SearchVector(KT("content__0__text_body"), config=SEARCH_CONFIG)).filter(found=query))
    else:
        inbound = InboundMessage.objects.filter(conversation__isnull=False, body__icontains=text)
        replies = Message.objects.filter(conversation__isnull=False, content__0__text_body__icontains=text)
    return conversations.filter(Q(pk__in=inbound.order_by().values("conversation_id"))
                                | Q(pk__in=replies.order_by().values("conversation_id")))


def filtered(user, filters: Filters):
    """What `user` may see under `filters`, every tab together."""
    rows = conversations_for(user)
    if filters.status:
        rows = rows.filter(status=filters.status)
    else:
        rows = rows.exclude(status=ConversationStatus.CLOSED)
    if filters.channel:
        rows = rows.filter(channel=filters.channel)
    if filters.queue:
        rows = rows.filter(queue_id=filters.queue)
    if filters.tag:
        rows = rows.filter(tags__id=filters.tag)
    return search(rows, filters.text)


def in_tab(rows, tab: str, user):
    if tab == UNASSIGNED:
        return rows.filter(assignee__isnull=True)
    if tab == MINE:
        return rows.filter(assignee_id=user.pk)
    return rows


def tab_counts(user, filters: Filters) -> dict[str, int]:
    """The number of conversations in each tab under `filters`: one query."""
    return filtered(user, filters).aggregate(
        **{UNASSIGNED: Count("pk", filter=Q(assignee__isnull=True)),
           MINE: Count("pk", filter=Q(assignee_id=user.pk)),
           ALL: Count("pk")})


def with_order_keys(rows):
    return rows.annotate(response_due=response_due_order(), follow_up=follow_up_order())


def encode_cursor(row) -> str:
    return f"{row.response_due.isoformat()}|{row.follow_up.isoformat()}|{row.pk}"


def decode_cursor(cursor: str | None) -> tuple | None:
    """(response due, follow-up, id) from a cursor; None for the first page or one that does not read."""
    try:
        due, follow_up, pk = (cursor or "").split("|")
        due, follow_up = parse_datetime(due), parse_datetime(follow_up)
        return (due, follow_up, int(pk)) if due and follow_up else None
    except ValueError:
        return None


def past(cursor: tuple) -> Q:
    due, follow_up, pk = cursor
    return (Q(response_due__gt=due) | Q(response_due=due, follow_up__gt=follow_up)
            | Q(response_due=due, follow_up=follow_up, pk__gt=pk))


@dataclass
class Row:
    conversation: Conversation
    breaches: list[str] = field(default_factory=list)


@dataclass
class Page:
    rows: list[Row]
    next_cursor: str | None


def breaches(conversation, now) -> list[str]:
    """What of its service level a conversation has missed, in words ([] when on time)."""
    missed = []
    if conversation.first_response_at is None and conversation.first_response_due_at \
            and conversation.first_response_due_at < now:
        missed.append("first response overdue")
    due = conversation.resolution_due_at
    if due and due < (conversation.closed_at or now):
        missed.append("resolution overdue" if conversation.closed_at is None else "resolved late")
    return missed


def read_page(user, filters: Filters, cursor: str | None = None, size: int = PAGE_SIZE, now=None) -> Page:
    """One page of the inbox: at most `size` conversations after `cursor` in inbox order."""
    now = now or timezone.now()
    last_inbound = (InboundMessage.objects.filter(conversation=OuterRef("pk"))
                    .order_by("-received_at", "-pk").values("body")[:1])
    rows = (with_order_keys(in_tab(filtered(user, filters), filters.tab, user))
            .select_related("contact", "assignee", "queue").prefetch_related("tags")
            .annotate(last_inbound=Subquery(last_inbound)))
    position = decode_cursor(cursor)
    if position is not None:
        rows = rows.filter(past(position))
    found = list(rows.order_by("response_due", "follow_up", "pk")[:size + 1])
    page = found[:size]
    for conversation in page:
        conversation.last_inbound = (conversation.last_inbound or "")[:PREVIEW_CHARS]
    return Page([Row(conversation, breaches(conversation, now)) for conversation in page],
                encode_cursor(page[-1]) if len(found) > size else None)


def filter_options() -> dict:
    """The queues and tags to filter by (two queries)."""
    return {"queues": list(SupportQueue.objects.order_by("name").values_list("pk", "name")),
            "tags": list(ConversationTag.objects.order_by("name").values_list("pk", "name"))}
