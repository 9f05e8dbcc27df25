"""Two deliveries of the same event at the same moment store one contact and one event."""
import threading

import pytest
from django.db import connection

from contacts.ingest import receive_event
from contacts.models import Contact, ContactEvent
from omni.tests.fakes import run_concurrently

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


@pytest.mark.postgres
@needs_postgres
@pytest.mark.parametrize("attempt", range(5))
def test_the_loser_of_two_posts_with_one_key_and_different_data_changes_nothing(transactional_db, attempt):
    # given an existing contact, and two different requests sent with the same idempotency key
    from omni.models import AuditEntry
    from contacts.actions import upsert_contact
    from contacts.ingest import IdempotencyKeyReused, request_fingerprint

    upsert_contact("crm-9", {"email": "grace@example.com", "first_name": "Grace"}, actor_label="setup")
    before = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first()
    names = iter(["Ada", "Augusta"])
    lock = threading.Lock()

    def deliver():
        with lock:
            first_name = next(names)
        body = {"contact": {"external_id": "crm-9", "first_name": first_name}, "name": "signed_up"}
        try:
            event, created = receive_event(
                external_id="crm-9", contact_data={"first_name": first_name}, name="signed_up",
                idempotency_key="signup-9", source="api", actor_label="apikey:race",
                request_hash=request_fingerprint(body),
            )
        except IdempotencyKeyReused:
            return first_name, "reused"
        return first_name, created

    # when they arrive at once
    results, errors = run_concurrently(deliver)

    # then the winner's data and event are stored, and the loser left no trace
    assert not errors
    outcomes = dict(results)
    assert sorted(map(str, outcomes.values())) == ["True", "reused"]
    winner = next(name for name, outcome in outcomes.items() if outcome is True)
    assert Contact.objects.get().first_name == winner
    assert ContactEvent.objects.count() == 1
    assert sorted(AuditEntry.objects.filter(id__gt=before).values_list("action", flat=True)) == ["contact.updated"]
