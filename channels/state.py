"""The one state machine of messages and deliveries.

Message.status and Delivery.status change here and nowhere else (channels/tests/test_state.py
fails on any other writer). Each change is a conditional UPDATE, `... WHERE id IN (...) AND
status IN (the statuses allowed to move to the new one)`, so two writers racing on one row
(a webhook and the send worker, two webhooks, the tick) can never move it backwards: the
loser's UPDATE matches nothing and it learns so from the ids returned.

A message moves only while it is still at the plan step the mover acted on: a late report
about an earlier channel's delivery updates that delivery, never a message that has moved on.

Lock order: a transaction that changes a message and any of its deliveries locks the message
first (lock_message), then the deliveries. A webhook about one push device, a webhook about
another and the tick's fallback all touch the same message and its sibling deliveries; taking
the rows in one order makes them queue instead of deadlocking.

Routing (channels.routing.dispatch_many) then locks the contacts of its batch (lock_contacts),
after the messages and in contact id order, before anything reads the send ledger: two
batches with a message for the same contact take turns, and the second one counts what the
first queued, so both cannot pass one frequency cap. Arbitration (channels/arbitration.py)
reads the messages already queued under the same locks, so both cannot say one intent twice.
Reads for display (compliance.gate.reachability, the admin) never lock.
So: messages, then contacts (by id), then deliveries.
"""
import json
from collections import defaultdict
from dataclasses import dataclass, field

from django.core.exceptions import EmptyResultSet
from django.db import connections, router
from django.db.models import JSONField, Q
from django.db.models.functions import Lower
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from contacts.models import Contact
from omni.lib.bulk import PLAIN_TYPES, array_type, array_value, filter_in
from omni.lib.sql import prepared_cursor

from .models import Delivery, DeliveryStatus, Message, MessageStatus

M, D = MessageStatus, DeliveryStatus

# Where a message may go from each status. Routing (dispatch) moves a pending, deferred or
# queued message to queued, deferred, suppressed, expired or failed; provider reports move it
# forward through sent, delivered and engaged; a fallback moves it back to pending on the next
# plan step. Engaged and the four ends have no way out.
MESSAGE_TRANSITIONS = {
    M.PENDING: {M.QUEUED, M.DEFERRED, M.SUPPRESSED, M.EXPIRED, M.FAILED, M.CANCELLED, M.ENGAGED},
    M.DEFERRED: {M.QUEUED, M.DEFERRED, M.SUPPRESSED, M.EXPIRED, M.FAILED, M.CANCELLED, M.ENGAGED},
    # Queued to queued: a delivery cancelled at send time is routed again from its step.
    M.QUEUED: {M.QUEUED, M.DEFERRED, M.SUPPRESSED, M.EXPIRED, M.SENT, M.DELIVERED, M.ENGAGED, M.PENDING,
               M.FAILED, M.CANCELLED},
    M.SENT: {M.DELIVERED, M.ENGAGED, M.PENDING, M.FAILED, M.CANCELLED},
    # A delivered message still falls back when its plan waits for engagement, or on a late bounce.
    M.DELIVERED: {M.ENGAGED, M.PENDING, M.FAILED, M.CANCELLED},
    M.ENGAGED: set(),
    M.SUPPRESSED: set(),
    M.FAILED: set(),
    M.CANCELLED: set(),
    M.EXPIRED: set(),
}
# Nothing moves a message out of these: no routing, no fallback, no send.
FINAL_MESSAGE_STATUSES = frozenset(status for status, targets in MESSAGE_TRANSITIONS.items() if not targets)
# The column a move into a status stamps with the time of the move, whatever the status it came
# from: arbitration counts its windows from when a message was last queued (Message.said_at).
STAMPED_ON_ARRIVAL = {M.QUEUED: "said_at"}

# Provider reports move a delivery forward along this order and never back: a late "sent" never
# overwrites "delivered"; a bounce after "delivered" is news; engagement outranks a failure
# report, a complaint outranks everything. A report may settle a delivery the worker has not
# (or not knowingly) sent: its claim then finds nothing to send.
DELIVERY_PROGRESS = (
    {D.QUEUED, D.SENDING, D.UNCERTAIN},
    {D.SENT},
    {D.DELIVERED},
    {D.OPENED, D.READ, D.BOUNCED, D.UNDELIVERED, D.FAILED},
    {D.CLICKED, D.REPLIED},
    {D.COMPLAINED},
)
DELIVERY_RANK = {status: rank for rank, statuses in enumerate(DELIVERY_PROGRESS) for status in statuses}
# The send worker's own moves before the provider has the delivery: claim it, put it back in
# the queue after a transient error, cancel it (refused at send time), or mark it uncertain
# when the provider call's outcome is unknown. Cancelled is the end.
SEND_WORKER_MOVES = {
    D.QUEUED: {D.SENDING, D.CANCELLED},
    D.SENDING: {D.QUEUED, D.UNCERTAIN, D.CANCELLED},
}
DELIVERY_TRANSITIONS = {
    status: {later for later, rank in DELIVERY_RANK.items() if status in DELIVERY_RANK and rank > DELIVERY_RANK[status]}
    | SEND_WORKER_MOVES.get(status, set())
    for status in DeliveryStatus
}


def message_sources(to: str) -> frozenset:
    """The message statuses allowed to move to `to`."""
    return frozenset(source for source, targets in MESSAGE_TRANSITIONS.items() if to in targets)


def delivery_sources(to: str) -> frozenset:
    """The delivery statuses allowed to move to `to`."""
    return frozenset(source for source, targets in DELIVERY_TRANSITIONS.items() if to in targets)


@dataclass
class MessageMove:
    """One message to move to status `to`, if it is still at plan step `at_plan_step`.

    `message` is a Message (updated in memory when it moves) or its id. `fields` are the other
    columns written with the status: status_reason, defer_until, plan_step. A move into queued
    also writes said_at (STAMPED_ON_ARRIVAL).
    """

    message: Message | int
    to: str
    at_plan_step: int
    fields: dict = field(default_factory=dict)

    @property
    def message_id(self) -> int:
        return self.message if isinstance(self.message, int) else self.message.pk


def lock_message(message_id: int) -> None:
    """Lock a message's row until the transaction ends, before touching its deliveries (see the
    lock order above). Call inside atomic(); a no-op where the database has no row locks (SQLite
    serializes writers)."""
    connection = connections[router.db_for_write(Message)]
    if connection.features.has_select_for_update:
        list(Message.objects.select_for_update().filter(pk=message_id).values_list("pk"))


def lock_contacts(contact_ids) -> None:
    """Lock the contacts' rows, in id order, until the transaction ends (see the lock order
    above): FOR NO KEY UPDATE, which other routing batches wait for but inserts of rows
    pointing at the contact (events, deliveries) do not. Call inside atomic(); a no-op where
    the database has no row locks (SQLite serializes writers)."""
    connection = connections[router.db_for_write(Contact)]
    if contact_ids and connection.features.has_select_for_update:
        no_key = connection.features.has_select_for_no_key_update
        list(filter_in(Contact.objects.select_for_update(no_key=no_key), "id", sorted(contact_ids))
             .order_by("pk").values_list("pk"))


def move_messages(moves: list[MessageMove], now=None) -> set[int]:
    """Apply the moves allowed by MESSAGE_TRANSITIONS. Returns the ids of the messages moved.

    One conditional UPDATE per (status, plan step, columns written), whatever the number of
    messages: the caller's batch stays a fixed handful of queries. Each row's own values come
    in as a joined table (UPDATE ... FROM unnest(arrays) on PostgreSQL, FROM (VALUES ...)
    elsewhere), not as a CASE on the primary key per row.
    """
    now = now or timezone.now()
    groups = defaultdict(list)
    for move in moves:
        groups[(move.to, move.at_plan_step, tuple(sorted(move.fields)))].append(move)
    moved = set()
    connection = connections[router.db_for_write(Message)]
    for (to, at_plan_step, names), group in groups.items():
        moved.update(_update_from_rows(connection, to, at_plan_step, names, group, now))
    for move in moves:
        if move.message_id in moved and isinstance(move.message, Message):
            _apply(move, now)
    return moved


def move_unsaved_messages(moves: list[MessageMove], now=None) -> set[int]:
    """move_messages() for messages not stored yet (routed before they are written, so that a
    new message is written once, already where routing sent it): the same table and the same
    columns, applied in memory. Returns the ids moved."""
    now = now or timezone.now()
    moved = set()
    for move in moves:
        message = move.message
        if move.to in MESSAGE_TRANSITIONS[message.status] and message.plan_step == move.at_plan_step:
            _apply(move, now)
            moved.add(message.pk)
    return moved


def _apply(move: MessageMove, now) -> None:
    message = move.message
    message.status, message.updated_at = move.to, now
    if move.to in STAMPED_ON_ARRIVAL:
        setattr(message, STAMPED_ON_ARRIVAL[move.to], now)
    for name, value in move.fields.items():
        setattr(message, name, value)


def cancel_messages(messages, reason: str, now=None) -> set[int]:
    """Cancel `messages`, (id, plan step) pairs as values_list gives them, with `reason` as
    their status reason; returns the ids moved (one another writer moved first stays as it is)."""
    return move_messages([MessageMove(pk, M.CANCELLED, plan_step, {"status_reason": reason})
                          for pk, plan_step in messages], now)


# Rows per statement on databases without arrays: each row takes one parameter per column, and
# SQLite allows 32,766 parameters in a statement.
VALUES_CHUNK = 2000


def _update_from_rows(connection, to: str, at_plan_step: int, names: tuple, group: list[MessageMove], now) -> list[int]:
    """UPDATE the group's messages still at `at_plan_step` in a status allowed to move to `to`:
    status `to`, updated_at (and `to`'s STAMPED_ON_ARRIVAL column) `now` and each row's own
    `names` values. Returns the ids moved."""
    sources = sorted(message_sources(to))
    if not sources or not group:
        return []
    opts = Message._meta
    quote = connection.ops.quote_name
    fields = [opts.get_field(name) for name in names]
    stamped = [opts.get_field(name) for name in ["updated_at", STAMPED_ON_ARRIVAL.get(to)] if name]
    assignments = ", ".join([f"{quote('status')} = %s", *(f"{quote(f.column)} = %s" for f in stamped)]
                            + [f"{quote(f.column)} = v.{quote(f.column)}" + _cast(f, connection) for f in fields])
    # The status check names v (whose key is never null) so that it stays a condition of the
    # join: on t alone, PostgreSQL would size t by it and, with statistics taken while few
    # messages were in flight, read every pending, queued and deferred message to move these.
    condition = (f"t.{quote(opts.pk.column)} = v.{quote('pk__')} AND t.{quote('plan_step')} = %s "
                 f"AND (t.{quote('status')} IN ({', '.join(['%s'] * len(sources))}) OR v.{quote('pk__')} IS NULL)")
    table = quote(opts.db_table)
    returning = f"RETURNING {quote(opts.pk.column)}"  # v has no such column: it is t's
    head = [to, *(_db_value(f, now, connection) for f in stamped)]
    tail = [at_plan_step, *sources]
    columns = ", ".join(quote(c) for c in ["pk__", *[f.column for f in fields]])
    if connection.vendor == "postgresql":
        # One array per column: the statement's text stays the same whatever the number of rows,
        # so it is prepared once per connection.
        arrays = ", ".join([f"%s::{opts.pk.db_type(connection)}[]"]
                           + [f"%s::{array_type(f, connection)}[]" for f in fields])
        sql = (f"UPDATE {table} AS t SET {assignments} FROM unnest({arrays}) AS v({columns}) "
               f"WHERE {condition} {returning}")
        arrays = [array_value([m.message_id for m in group], opts.pk, connection),
                  *([_db_value(f, m.fields[f.name], connection) for m in group] for f in fields)]
        with prepared_cursor(connection) as cursor:
            cursor.execute(sql, [*head, *arrays, *tail])
            return [row[0] for row in cursor.fetchall()]
    ids = []
    row_sql = "(" + ", ".join(["%s"] * (1 + len(fields))) + ")"
    for start in range(0, len(group), VALUES_CHUNK):
        part = group[start:start + VALUES_CHUNK]
        # A VALUES list's columns are named column1, column2, ...: a CTE gives them ours.
        sql = (f"WITH v({columns}) AS (VALUES {', '.join([row_sql] * len(part))}) "
               f"UPDATE {table} AS t SET {assignments} FROM v WHERE {condition} {returning}")
        rows = [value for m in part
                for value in [m.message_id, *(_db_value(f, m.fields[f.name], connection) for f in fields)]]
        with connection.cursor() as cursor:
            cursor.execute(sql, [*rows, *head, *tail])
            ids += [row[0] for row in cursor.fetchall()]
    return ids


def _db_value(field, value, connection):
    """What to write for `field`'s Python value: as it is for the plain types psycopg and
    sqlite3 write themselves, else what Django would write."""
    if value is None or (field.get_internal_type() in PLAIN_TYPES and connection.vendor == "postgresql"):
        return value
    if isinstance(field, JSONField):
        return json.dumps(value, cls=field.encoder)
    return field.get_db_prep_save(value, connection)


def _cast(field, connection) -> str:
    return "::jsonb" if isinstance(field, JSONField) and connection.vendor == "postgresql" else ""


def move_message(message: Message | int, to: str, *, at_plan_step: int, now=None, **fields) -> bool:
    """Move one message to `to` if it is still at plan step `at_plan_step` and may go there."""
    return bool(move_messages([MessageMove(message, to, at_plan_step, fields)], now))


def move_deliveries(deliveries: list, to: str, *, only_from: frozenset | None = None, where: Q | None = None,
                    **fields) -> set[int]:
    """Move deliveries (Delivery objects or ids) to `to` where DELIVERY_TRANSITIONS allows it,
    writing `fields` with the status. Returns the ids moved; moved objects are updated in memory
    (fields given as expressions, such as F("attempts") + 1, are left for the caller).
    `only_from` narrows the statuses moved from (settling moves only uncertain deliveries);
    `where` adds a condition of the caller's (the send claim: its next attempt is due)."""
    ids = [d if isinstance(d, int) else d.pk for d in deliveries]
    if not ids:
        return set()
    sources = delivery_sources(to) if only_from is None else delivery_sources(to) & frozenset(only_from)
    # The status is compared through an expression no index holds, so that PostgreSQL finds the
    # rows by their ids. Compared as it is, with statistics taken while few deliveries were
    # queued, it reads every queued delivery through delivery_status to move these few (seen:
    # 50,000 rows read to claim 8). The statuses are lower case: LOWER changes no answer.
    queryset = Delivery.objects.filter(pk__in=ids).alias(current_status=Lower("status")).filter(
        current_status__in=sources)
    if where is not None:
        queryset = queryset.filter(where)
    moved = set(_update_returning_ids(queryset, {"status": to, **fields}))
    for delivery in deliveries:
        if not isinstance(delivery, int) and delivery.pk in moved:
            delivery.status = to
            for name, value in fields.items():
                if not hasattr(value, "resolve_expression"):
                    setattr(delivery, name, value)
    return moved


def move_delivery(delivery: Delivery | int, to: str, **fields) -> bool:
    """Move one delivery to `to` if DELIVERY_TRANSITIONS allows it from where it is now."""
    return bool(move_deliveries([delivery], to, **fields))


def _update_returning_ids(queryset, values: dict) -> list[int]:
    """queryset.update(**values), returning the primary keys of the rows it changed.

    UPDATE ... RETURNING (PostgreSQL, SQLite 3.35+) tells exactly which rows the conditional
    update won, in the same statement; Django's update() only counts them.
    """
    model = queryset.model
    query = queryset.query.chain(UpdateQuery)
    query.add_update_values(values)
    using = router.db_for_write(model)
    try:
        sql, params = query.get_compiler(using).as_sql()
    except EmptyResultSet:  # no status may move there: nothing to update
        return []
    if not sql:
        return []
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {connection.ops.quote_name(model._meta.pk.column)}", params)
        return [row[0] for row in cursor.fetchall()]
