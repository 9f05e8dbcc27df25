"""Linking an inbound reply to the delivery it answers reads an index, not every delivery."""
from datetime import timedelta

import pytest
from django.db import connection

from channels.models import DeliveryEvent, DeliveryStatus, EventType, MessageStatus
from channels.provider_reports import KNOWN_SENDER, record_inbound_message
from omni.lib.text import hash_address
from omni.models import AuditEntry


@pytest.mark.postgres
def test_the_reply_lookup_reads_the_to_address_index_in_order(make_delivery, contact, now):
    # given deliveries to this and other numbers, some sent
    for index in range(3):
        make_delivery("sms", status=DeliveryStatus.SENT, sent_at=now, provider_message_id=f"SM{index}")
    make_delivery("sms", to_address="+14155550199", status=DeliveryStatus.SENT, sent_at=now)

    # when a reply comes in, the sender's query (its statement as the webhook runs it) looks up
    # the delivery it answers
    record_inbound_message("twilio", "SMin1", "sms", contact.phone, to_address="+15005550006", body="yes")
    sql, params = KNOWN_SENDER["phone"].statement(
        connection, channel="sms", address=contact.phone, address_hash=hash_address(contact.phone), provider="twilio",
        provider_message_id="SMin2")
    assert 'FROM "channels_delivery"' in sql and '"to_address"' in sql

    # then its plan walks the index in the order asked, and sorts nothing
    with connection.cursor() as cursor:
        # A table this small is read whole whatever its indexes; ask what the index allows.
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = [row[0] for row in cursor.fetchall()]
        cursor.execute("RESET enable_seqscan")
    # (a known sender's lookup is a subplan of the contact's query: read that subplan alone)
    lookup_plan = delivery_subplan(plan)
    assert "Index Scan using delivery_to_address_sent" in lookup_plan, plan
    assert "Sort" not in lookup_plan, plan


def delivery_subplan(plan: list[str]) -> str:
    """The plan's lines from the (sub)plan that scans channels_delivery, to its end."""
    scan = next(index for index, line in enumerate(plan) if "channels_delivery" in line)
    start = max([index for index in range(scan + 1) if "InitPlan" in plan[index] or "SubPlan" in plan[index]],
                default=0)
    indent = len(plan[start]) - len(plan[start].lstrip())
    end = next((index for index in range(start + 1, len(plan))
                if len(plan[index]) - len(plan[index].lstrip()) <= indent), len(plan))
    return "\n".join(plan[start:end])


# --- the tick marks the delivery replied -----------------------------------------------------

def test_the_webhook_links_the_reply_and_the_tick_marks_its_delivery_replied_once(make_delivery, contact, now, tick):
    # given an SMS that arrived, with its fallback still timed
    delivery = make_delivery("sms", status=DeliveryStatus.DELIVERED, message_status=MessageStatus.DELIVERED,
                             sent_at=now, provider_message_id="SM1", fallback_due_at=now + timedelta(hours=1))

    # when the contact answers
    inbound, _ = record_inbound_message("twilio", "SMin1", "sms", contact.phone, body="yes")

    # then the webhook links it and leaves the delivery alone
    assert inbound.in_reply_to == delivery and inbound.reply_applied_at is None
    assert not DeliveryEvent.objects.exists()

    # and the next tick marks it replied: the message engaged, no fallback left, once
    tick()
    tick()
    delivery.refresh_from_db()
    inbound.refresh_from_db()
    assert (delivery.status, delivery.message.status) == (DeliveryStatus.REPLIED, MessageStatus.ENGAGED)
    assert delivery.engaged_at == inbound.received_at and delivery.fallback_due_at is None
    assert inbound.reply_applied_at is not None
    assert list(DeliveryEvent.objects.values_list("event_type", "provider_event_id")) == [
        (EventType.REPLIED, "inbound:twilio:SMin1")]
    assert AuditEntry.objects.filter(action="delivery.replied", object_id=str(delivery.pk)).count() == 1

