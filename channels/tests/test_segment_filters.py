"""The engagement filter channels registers in contacts.segments."""
import datetime as dt

import pytest

from channels.models import DeliveryEvent, DeliveryStatus, InboundMessage
from contacts.models import Contact
from contacts.segments import compile, definition_problems

NOW = dt.datetime(2026, 3, 15, 12, 0, tzinfo=dt.timezone.utc)


def _members(engagement, channel="email", days=7, did=True):
    definition = {"filters": [{"kind": "engagement", "engagement": engagement, "channel": channel,
                               "within_days": days, "did": did}]}
    return set(compile(definition, NOW).values_list("external_id", flat=True))


@pytest.fixture
def engaged(contact, make_delivery):
    """Alice's email was delivered 2 days ago and opened 10 days ago; she replied by SMS yesterday."""
    delivery = make_delivery("email", status=DeliveryStatus.OPENED)
    for n, (event_type, days_ago) in enumerate([("delivered", 2), ("opened", 10)]):
        DeliveryEvent.objects.create(delivery=delivery, provider="sandbox", provider_event_id=f"e{n}",
                                     event_type=event_type, occurred_at=NOW - dt.timedelta(days=days_ago))
    InboundMessage.objects.create(contact=contact, channel="sms", provider="twilio", provider_message_id="in-1",
                                  from_address=contact.phone, received_at=NOW - dt.timedelta(days=1))
    Contact.objects.create(external_id="bob")
    return contact


def test_engagement_keeps_contacts_by_what_they_did_on_a_channel_and_when(engaged):
    assert _members("delivered") == {"alice"}
    assert _members("opened") == set()
    assert _members("opened", days=30) == {"alice"}
    assert _members("clicked", days=30) == set()
    assert _members("delivered", channel="sms") == set()
    assert _members("replied", channel="sms") == {"alice"}
    assert _members("replied", channel="sms", did=False) == {"bob"}


def test_a_bad_engagement_filter_names_its_fields(db):
    problems = definition_problems({"filters": [{"kind": "engagement", "engagement": "liked", "channel": "email",
                                                 "within_days": "soon"}]})

    assert problems == ["filters[0].engagement must be one of delivered, opened, clicked, replied",
                        "filters[0].within_days must be a whole number of days from 1 to 36500"]
