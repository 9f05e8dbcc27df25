import pytest

from contacts.actions import InvalidField, upsert_contact
from contacts.ingest import ingest_event
from contacts.models import ContactEvent


@pytest.fixture
def grace(db):
    """A contact created through the contact action."""
    contact, _ = upsert_contact("crm-7", {"email": "grace@example.com"}, actor_label="test")
    return contact


def test_ingesting_the_same_event_twice_returns_the_stored_row(grace):
    # given an event already stored (as if a concurrent delivery won the insert)
    first, first_created = ingest_event(
        contact=grace, name="cart.abandoned", properties={"total": 42}, occurred_at=None,
        idempotency_key="cart-9", source="webhook:shop",
    )

    # when the insert is attempted again and hits the unique constraint
    again, again_created = ingest_event(
        contact=grace, name="cart.abandoned", properties={"total": 42}, occurred_at=None,
        idempotency_key="cart-9", source="webhook:shop",
    )

    # then
    assert (first_created, again_created) == (True, False)
    assert again.pk == first.pk
    assert ContactEvent.objects.count() == 1


def test_ingesting_accepts_an_aware_datetime_and_refuses_a_naive_one(grace):
    from datetime import datetime

    with pytest.raises(InvalidField) as refused:
        ingest_event(contact=grace, name="x", occurred_at=datetime(2025, 1, 1), idempotency_key="1", source="s")

    assert refused.value.field == "occurred_at"


def test_upserting_normalizes_email_and_phone(db):
    contact, created = upsert_contact(
        "crm-8", {"email": "  Grace@Example.COM", "phone": "+44 20 7946 0958"}, actor_label="test"
    )

    assert created is True
    assert (contact.email, contact.phone) == ("grace@example.com", "+442079460958")


def test_upserting_names_the_first_unknown_field(db):
    with pytest.raises(InvalidField) as refused:
        upsert_contact("crm-8", {"zip": "94110", "age": 40}, actor_label="test")

    assert refused.value.field == "age"
    assert "age, zip" in refused.value.message


def test_deleting_a_contact_never_takes_its_events(grace):
    from django.db.models import ProtectedError

    ingest_event(contact=grace, name="signed_up", idempotency_key="k-1", source="test")

    with pytest.raises(ProtectedError):
        grace.delete()

    assert ContactEvent.objects.filter(contact=grace).count() == 1
