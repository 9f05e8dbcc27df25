"""Linking an inbound reply to the delivery it answers reads an index, not every delivery."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels.provider_reports import record_inbound_message
from channels.models import DeliveryStatus


@pytest.mark.postgres
def test_the_reply_lookup_reads_the_to_address_index_in_order(make_delivery, contact, now):
    # given deliveries to this and other numbers, some sent
    for index in range(3):
        make_delivery("sms", status=DeliveryStatus.SENT, sent_at=now, provider_message_id=f"SM{index}")
    make_delivery("sms", to_address="+14155550199", status=DeliveryStatus.SENT, sent_at=now)

    # when a reply comes in
    with CaptureQueriesContext(connection) as queries:
        record_inbound_message("twilio", "SMin1", "sms", contact.phone, to_address="+15005550006", body="yes")
    lookup = next(q["sql"] for q in queries.captured_queries
                  if q["sql"].startswith('SELECT') and 'FROM "channels_delivery"' in q["sql"]
                  and '"to_address"' in q["sql"])

    # then its plan walks the index in the order asked, and sorts nothing
    with connection.cursor() as cursor:
        # A table this small is read whole whatever its indexes; ask what the index allows.
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("EXPLAIN " + lookup)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    assert "Index Scan using delivery_to_address_sent" in plan, plan
    assert "Sort" not in plan, plan
