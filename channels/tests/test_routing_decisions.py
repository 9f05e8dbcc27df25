"""A gate verdict is kept as a Decision only when it took effect, in the transaction that
writes its audit entry: routing that lost a race and a send-time refusal that did not happen
leave no decision behind."""
import pytest
from django.db import connection

from channels import routing, state
from channels.delivery import send_delivery
from channels.models import Delivery, DeliveryStatus, Message, MessageSource, MessageStatus
from compliance.models import Decision, SendingPause
from omni.models import AuditEntry


def test_routing_that_lost_a_race_writes_no_decision(contact, now):
    # given a message the tick is about to route, cancelled meanwhile by another worker
    message, _ = routing.create_message(contact=contact, source=MessageSource.API, purpose="transactional",
                                        channel_plan=[{"channel": "email"}],
                                        content=[{"channel": "email", "subject": "Hi", "text_body": "Hello"}])
    stale = Message.objects.select_related("contact").get(pk=message.pk)
    assert state.move_message(message.pk, MessageStatus.CANCELLED, at_plan_step=0)

    # when the tick routes its stale copy
    assert routing.dispatch(stale, now=now) is None

    # then nothing was queued and no verdict was kept
    assert not Delivery.objects.exists()
    assert not Decision.objects.filter(message_id=message.pk).exists()
    assert not AuditEntry.objects.filter(action__startswith="gate.").exists()


@pytest.fixture
def trigger(transactional_db):
    """trigger(name, table, when, body_sqlite, body_postgres) adds a row trigger until the test ends."""
    made = []

    def add(name, table, timing, when, sqlite_body, postgres_body):
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                               f"{postgres_body}; RETURN NEW; END $$")
                cursor.execute(f"CREATE TRIGGER {name} {timing} ON {table} FOR EACH ROW WHEN ({when}) "
                               f"EXECUTE FUNCTION {name}()")
            else:
                cursor.execute(f"CREATE TRIGGER {name} {timing} ON {table} FOR EACH ROW WHEN {when} "
                               f"BEGIN {sqlite_body}; END")
        made.append(name)

    yield add
    with connection.cursor() as cursor:
        for name in made:
            if connection.vendor == "postgresql":
                cursor.execute(f"DROP FUNCTION {name}() CASCADE")
            else:
                cursor.execute(f"DROP TRIGGER {name}")


def test_a_send_time_refusal_keeps_its_decision_only_with_its_audit_entry(trigger, make_delivery):
    # given a channel paused while the email waited, and a database that refuses the
    # cancellation's audit entry
    delivery = make_delivery("email")
    SendingPause.objects.create(channel="email", reason="maintenance")
    trigger("refuse_cancelled_entry", "omni_auditentry", "BEFORE INSERT", "NEW.action = 'delivery.cancelled'",
            "SELECT RAISE(ABORT, 'refused')", "RAISE EXCEPTION 'refused'")

    # when the worker re-checks it at send time
    send_delivery(delivery.pk)

    # then the refusal's decision is not kept without the entry, and the delivery waits for another try
    assert not Decision.objects.filter(delivery_id=delivery.pk).exists()
    assert not AuditEntry.objects.filter(action__startswith="gate.").exists()
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.QUEUED


def test_a_send_time_refusal_that_lost_a_race_keeps_no_decision(trigger, make_delivery):
    # given a channel paused while the email waited, and the provider's report that it was
    # delivered arriving right after the worker claimed it
    delivery = make_delivery("email")
    SendingPause.objects.create(channel="email", reason="maintenance")
    trigger("report_delivered", "channels_delivery", "AFTER UPDATE", "NEW.status = 'sending'",
            "UPDATE channels_delivery SET status = 'delivered' WHERE id = NEW.id",
            "UPDATE channels_delivery SET status = 'delivered' WHERE id = NEW.id")

    # when the worker re-checks it
    send_delivery(delivery.pk)

    # then its refusal did not take effect, and no decision says it did
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.DELIVERED
    assert not Decision.objects.filter(delivery_id=delivery.pk).exists()
    assert not AuditEntry.objects.filter(action="delivery.cancelled").exists()
