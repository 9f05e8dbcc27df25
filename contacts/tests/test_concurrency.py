"""Two deliveries of the same event at the same moment store one contact and one event."""
import pytest
from django.db import connection

from contacts.events import receive_event
from contacts.models import Contact, ContactEvent
from omni.testing import run_concurrently

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="Concurrent inserts need PostgreSQL; set DATABASE_URL to run it (SQLite serializes writers instead)",
)


@pytest.mark.postgres
@needs_postgres
@pytest.mark.parametrize("attempt", range(5))
def test_two_simultaneous_deliveries_of_a_new_event_store_it_once(transactional_db, attempt):
    # given two deliveries of one signup, for a contact that does not exist yet
    def deliver():
        event, created = receive_event(
            external_id="crm-9", contact_data={"email": "grace@example.com"}, name="signed_up",
            idempotency_key="signup-9", source="apikey:race", actor_label="apikey:race",
        )
        return event.pk, created

    # when they arrive at once
    results, errors = run_concurrently(deliver)

    # then one contact and one event exist, and both deliveries answer with that event
    assert not errors
    assert Contact.objects.count() == 1
    assert ContactEvent.objects.count() == 1
    assert {event_id for event_id, _ in results} == {ContactEvent.objects.get().pk}
    assert sorted(created for _, created in results) == [False, True]
