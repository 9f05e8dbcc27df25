"""One state machine: the transition tables, their conditional UPDATEs, and no other writer.

The scan reads every module's syntax tree, as omni/tests/test_layers.py does for imports, and
reports any write of `status` on a message or a delivery (or of a message's `said_at`, which
the move into the queue stamps) outside channels/state.py: an assignment (`delivery.status =
...`, setattr), an update(), create() or constructor with status=, save(update_fields=[...
"status"...]), a bulk_update whose fields name status, and raw SQL updating the tables. It recognises a message or delivery by name (Message, Delivery, the
`messages`/`deliveries` managers, names with a message or delivery part: failed_delivery,
MESSAGE_FIELDS). A write through a dict of changes applied with setattr() in a loop is beyond it.
"""
import ast
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings

from channels import state
from channels.models import Delivery, DeliveryStatus, Message, MessageStatus
from omni.tests.fakes import run_concurrently

ROOT = Path(settings.BASE_DIR)
APPS = ("omni", "contacts", "compliance", "templates", "channels", "campaigns")
STATE_MODULE = ROOT / "channels" / "state.py"
HOLDERS = {"message", "delivery", "messages", "deliveries"}
# The columns only channels/state.py writes.
STATE_FIELDS = {"status", "said_at"}
RAW_UPDATE = re.compile(r"UPDATE\s+\"?channels_(message|delivery)\b", re.IGNORECASE)


def holds_message_or_delivery(name: str) -> bool:
    return bool(HOLDERS & set(name.lower().split("_")))


def chain_names(node) -> list[str]:
    """The names along `a.b(...).c[...].d`, without the arguments: ["d", "c", "b", "a"]."""
    names = []
    while True:
        if isinstance(node, ast.Attribute):
            names.append(node.attr)
            node = node.value
        elif isinstance(node, (ast.Call, ast.Subscript)):
            node = node.func if isinstance(node, ast.Call) else node.value
        elif isinstance(node, ast.Name):
            names.append(node.id)
            return names
        else:
            return names


def about_message_or_delivery(node) -> bool:
    return any(holds_message_or_delivery(name) for name in chain_names(node))


def names_status(node, constants: dict) -> bool:
    """Whether a field list (a literal, or a module constant) names "status" (or said_at)."""
    if isinstance(node, ast.Name) and node.id in constants:
        node = constants[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:  # list(changes) and friends
        node = node.args[0]
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return any(isinstance(e, ast.Constant) and e.value in STATE_FIELDS for e in node.elts)
    return False


def status_writes(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    constants = {
        target.id: node.value
        for node in tree.body if isinstance(node, ast.Assign)
        for target in node.targets if isinstance(target, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            for element in (target.elts if isinstance(target, ast.Tuple) else [target]):
                if isinstance(element, ast.Attribute) and element.attr in STATE_FIELDS \
                        and about_message_or_delivery(element.value):
                    found.append(f"{node.lineno}: assigns {ast.unparse(element)}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and RAW_UPDATE.search(node.value):
            found.append(f"{node.lineno}: raw SQL updates a status table")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        method = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        keywords = {k.arg: k.value for k in node.keywords}
        if method == "setattr" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                and node.args[1].value in STATE_FIELDS and about_message_or_delivery(node.args[0]):
            found.append(f"{node.lineno}: setattr {node.args[1].value}")
        elif STATE_FIELDS & set(keywords) and method in {"update", "create", "Message", "Delivery",
                                                         "get_or_create", "update_or_create", "bulk_create"} \
                and (method in {"Message", "Delivery"} or about_message_or_delivery(func)):
            found.append(f"{node.lineno}: {method}({', '.join(sorted(STATE_FIELDS & set(keywords)))}=...)")
        elif method == "save" and "update_fields" in keywords and names_status(keywords["update_fields"], constants) \
                and about_message_or_delivery(func):
            found.append(f"{node.lineno}: save(update_fields=[status])")
        elif method == "bulk_update":
            fields = node.args[1] if len(node.args) > 1 else keywords.get("fields")
            objects = node.args[0] if node.args else None
            if fields is not None and names_status(fields, constants) and any(
                    about_message_or_delivery(part) for part in (func, objects, fields) if part is not None):
                found.append(f"{node.lineno}: bulk_update of status")
    return found


def source_files():
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "tests" in parts or "migrations" in parts or path.name == "conftest.py" or path == STATE_MODULE:
                continue
            yield path


def status_writers() -> list[str]:
    return [f"{path.relative_to(ROOT)}:{problem}" for path in source_files() for problem in status_writes(path)]


def test_only_the_state_module_writes_message_or_delivery_status():
    assert status_writers() == []


PROBE = '''
from channels.models import Delivery, Message
MESSAGE_FIELDS = ["status", "updated_at"]

def a(delivery, message, pending, bulk_update):
    delivery.status = "sent"
    message.status, message.status_reason = "failed", "x"
    setattr(delivery, "status", "sent")
    Delivery.objects.filter(pk=1).update(status="sent")
    Message.objects.filter(pk=1).update(status="failed", updated_at=None)
    Message.objects.filter(pk=1).update(said_at=None)
    message.said_at = None
    message.deliveries.update(status="cancelled")
    message.save(update_fields=MESSAGE_FIELDS)
    Message.objects.bulk_update(pending, ["status"])
    bulk_update(pending, MESSAGE_FIELDS)
    Delivery(status="sent")
    cursor.execute('UPDATE "channels_delivery" SET status = %s', ["sent"])
    journey.status = "paused"  # another model: fine
'''


def test_the_scan_sees_every_kind_of_status_write(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)

    found = status_writes(probe)

    assert len(found) == 13, found
    assert not any("journey" in problem for problem in found)


def test_a_delivery_never_moves_back_except_into_the_queue_after_a_transient_error():
    backwards = {
        (source, target)
        for source, targets in state.DELIVERY_TRANSITIONS.items() for target in targets
        if source in state.DELIVERY_RANK and target in state.DELIVERY_RANK
        and state.DELIVERY_RANK[target] < state.DELIVERY_RANK[source]
    }
    assert backwards == set()
    assert state.delivery_sources(DeliveryStatus.QUEUED) == {DeliveryStatus.SENDING}
    assert state.delivery_sources(DeliveryStatus.UNCERTAIN) == {DeliveryStatus.SENDING}
    assert DeliveryStatus.DELIVERED not in state.delivery_sources(DeliveryStatus.SENT)
    assert DeliveryStatus.DELIVERED in state.delivery_sources(DeliveryStatus.BOUNCED)  # news
    assert state.DELIVERY_TRANSITIONS[DeliveryStatus.CANCELLED] == set()
    assert state.DELIVERY_TRANSITIONS[DeliveryStatus.COMPLAINED] == set()


def test_every_status_has_a_row_in_its_table():
    assert set(state.MESSAGE_TRANSITIONS) == set(MessageStatus.values)
    assert set(state.DELIVERY_TRANSITIONS) == set(DeliveryStatus.values)
    assert state.FINAL_MESSAGE_STATUSES == {MessageStatus.ENGAGED, MessageStatus.SUPPRESSED, MessageStatus.FAILED,
                                            MessageStatus.CANCELLED, MessageStatus.EXPIRED}


def test_a_move_the_table_forbids_changes_nothing(make_delivery):
    delivery = make_delivery(status=DeliveryStatus.DELIVERED, message_status=MessageStatus.DELIVERED)

    assert state.move_delivery(delivery, DeliveryStatus.SENT, sent_at=None) is False
    assert state.move_message(delivery.message, MessageStatus.SENT, at_plan_step=0) is False

    delivery.refresh_from_db()
    delivery.message.refresh_from_db()
    assert (delivery.status, delivery.message.status) == (DeliveryStatus.DELIVERED, MessageStatus.DELIVERED)


def test_an_unsaved_message_moves_in_memory_by_the_same_table(now):
    allowed, forbidden, elsewhere = Message(pk=1), Message(pk=2), Message(pk=3, plan_step=1)

    moved = state.move_unsaved_messages([
        state.MessageMove(allowed, MessageStatus.QUEUED, 0, {"status_reason": "consent:granted"}),
        state.MessageMove(forbidden, MessageStatus.SENT, 0),
        state.MessageMove(elsewhere, MessageStatus.QUEUED, 0),
    ], now)

    assert moved == {1}
    assert (allowed.status, allowed.said_at, allowed.updated_at, allowed.status_reason) == (
        MessageStatus.QUEUED, now, now, "consent:granted")
    assert (forbidden.status, elsewhere.status) == (MessageStatus.PENDING, MessageStatus.PENDING)


def test_a_message_moves_only_while_it_is_on_the_step_the_mover_saw(make_delivery):
    delivery = make_delivery(plan=[{"channel": "email"}, {"channel": "sms"}], message_status=MessageStatus.SENT)
    message = delivery.message
    assert state.move_message(message, MessageStatus.PENDING, at_plan_step=0, plan_step=1)

    # a report about the email (step 0) arrives after the message moved to SMS (step 1)
    assert state.move_message(message.pk, MessageStatus.DELIVERED, at_plan_step=0) is False

    message.refresh_from_db()
    assert (message.status, message.plan_step) == (MessageStatus.PENDING, 1)


def test_said_at_is_when_the_message_last_went_into_the_queue(make_delivery, now):
    plan = [{"channel": "email"}, {"channel": "sms"}]
    message = make_delivery(message_status=MessageStatus.PENDING, plan=plan).message
    at = [now + timedelta(minutes=minutes) for minutes in range(5)]

    state.move_message(message, MessageStatus.DEFERRED, at_plan_step=0, now=at[0], defer_until=at[1])
    said_while_deferred = Message.objects.get(pk=message.pk).said_at
    state.move_message(message, MessageStatus.QUEUED, at_plan_step=0, now=at[1])
    # sent and a fallback keep it; the next channel's queue is a new saying, as is a route again from queued
    state.move_message(message, MessageStatus.SENT, at_plan_step=0, now=at[2])
    state.move_message(message, MessageStatus.PENDING, at_plan_step=0, now=at[3], plan_step=1)
    kept = Message.objects.get(pk=message.pk).said_at
    state.move_message(message, MessageStatus.QUEUED, at_plan_step=1, now=at[4])
    requeued_at = Message.objects.get(pk=message.pk).said_at
    state.move_message(message, MessageStatus.QUEUED, at_plan_step=1, now=at[4] + timedelta(minutes=1))

    assert said_while_deferred is None
    assert kept == at[1]
    assert requeued_at == at[4]
    assert message.said_at == Message.objects.get(pk=message.pk).said_at == at[4] + timedelta(minutes=1)


def test_a_bulk_move_into_the_queue_stamps_said_at_in_one_update(make_delivery, django_assert_num_queries, now):
    rows = [make_delivery(message_status=MessageStatus.DEFERRED) for _ in range(3)]
    moves = [state.MessageMove(d.message, MessageStatus.QUEUED, 0, {"status_reason": "allowed"}) for d in rows]

    with django_assert_num_queries(1):
        state.move_messages(moves, now)

    assert [m.said_at for m in Message.objects.filter(pk__in=[d.message_id for d in rows])] == [now] * 3


def test_a_bulk_move_is_one_update_and_says_which_rows_moved(make_delivery, django_assert_num_queries):
    rows = [make_delivery(message_status=MessageStatus.QUEUED) for _ in range(3)]
    rows.append(make_delivery(message_status=MessageStatus.FAILED))  # final: cannot move
    moves = [state.MessageMove(d.message, MessageStatus.DEFERRED, 0, {"status_reason": f"quiet_hours:{i}"})
             for i, d in enumerate(rows)]

    with django_assert_num_queries(1):
        moved = state.move_messages(moves)

    assert moved == {d.message_id for d in rows[:3]}
    assert [d.message.status for d in rows] == [MessageStatus.DEFERRED] * 3 + [MessageStatus.FAILED]
    assert [d.message.status_reason for d in rows[:3]] == ["quiet_hours:0", "quiet_hours:1", "quiet_hours:2"]


@pytest.mark.postgres
def test_moving_a_batch_finds_its_messages_by_id_even_when_statistics_say_none_are_in_flight(
    contact, template_version, now,
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from channels.models import Message, MessageSource

    def messages(count, status):
        return Message.objects.bulk_create([
            Message(contact=contact, purpose="marketing", template_version=template_version,
                    source=MessageSource.CAMPAIGN, channel_plan=[{"channel": "email"}], status=status)
            for _ in range(count)])

    # given statistics taken when every message was sent, then a fan-out's worth made pending
    messages(300, MessageStatus.SENT)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE channels_message")
    pending = messages(2000, MessageStatus.PENDING)

    # when a few of them are moved
    with CaptureQueriesContext(connection) as captured:
        moved = state.move_messages([state.MessageMove(m, MessageStatus.QUEUED, 0) for m in pending[:5]], now)
    assert moved == {m.pk for m in pending[:5]}

    # then PostgreSQL plans to find them by their ids, not through the status index, which would
    # read every message in flight: the statement (as written, with %s) explained with the values
    # it was given (status, updated_at, said_at, the ids, the plan step, the statuses it may move from)
    (statement,) = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("UPDATE")]
    params = [MessageStatus.QUEUED, now, now, [m.pk for m in pending[:5]], 0,
              *sorted(state.message_sources(MessageStatus.QUEUED))]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {statement}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "message_status" not in plan, plan


@pytest.mark.postgres
def test_claiming_deliveries_finds_them_by_id_even_when_statistics_say_none_are_queued(make_delivery):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from channels.models import Delivery

    # given statistics taken when every delivery was sent, then a fan-out's worth queued
    first = make_delivery(status=DeliveryStatus.SENT)
    Delivery.objects.bulk_create([Delivery(message=first.message, contact=first.contact, channel=first.channel,
                                           provider=first.provider, to_address=first.to_address,
                                           status=DeliveryStatus.SENT) for _ in range(300)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE channels_delivery")
    queued = Delivery.objects.bulk_create([
        Delivery(message=first.message, contact=first.contact, channel=first.channel, provider=first.provider,
                 to_address=first.to_address, status=DeliveryStatus.QUEUED) for _ in range(2000)])

    # when a send worker claims a few of them
    with CaptureQueriesContext(connection) as captured:
        moved = state.move_deliveries([d.pk for d in queued[:5]], DeliveryStatus.SENDING)
    assert moved == {d.pk for d in queued[:5]}

    # then PostgreSQL plans to find them by their ids, not through the status index, which would
    # read every queued delivery
    (statement,) = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("UPDATE")]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {statement}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "delivery_status" not in plan, plan


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_of_two_racing_moves_from_the_same_status_exactly_one_wins(make_delivery):
    # given a delivery two workers try to claim at the same instant
    delivery = make_delivery()

    results, errors = run_concurrently(lambda: state.move_delivery(delivery.pk, DeliveryStatus.SENDING), times=4)

    assert errors == []
    assert sorted(results) == [False, False, False, True]
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.SENDING
