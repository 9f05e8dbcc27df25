from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.db import connection
from django.utils import timezone

from omni.models import AuditEntry
from contacts import data_types
from contacts.models import Contact, ContactEvent
from omni.models import ApiScope


@pytest.fixture
def ada(crm_api) -> Contact:
    """A contact the CRM created, known by external id crm-1."""
    crm_api.put("/api/v1/contacts/crm-1", {"email": "ada@example.com"})
    return Contact.objects.get(external_id="crm-1")


def order_placed(**overrides) -> dict:
    return {"external_id": "crm-1", "name": "order.placed", "properties": {"order_id": "A-1"}, **overrides}


def test_an_event_is_stored_unprocessed_and_answered_202(crm_api, ada):
    # when
    response = crm_api.post("/api/v1/events", order_placed(occurred_at="2025-05-01T12:00:00+02:00"),
                            **{"Idempotency-Key": "order-A-1"})

    # then
    assert response.status_code == 202
    body = response.json()
    event = ContactEvent.objects.get()
    assert body["id"] == event.pk
    assert body["duplicate"] is False
    assert body["contact"] == {"id": ada.pk, "external_id": "crm-1"}
    assert (event.contact, event.name, event.properties) == (ada, "order.placed", {"order_id": "A-1"})
    assert event.occurred_at == datetime(2025, 5, 1, 10, 0, tzinfo=dt_timezone.utc)
    assert event.processed_at is None
    assert event.source == "api"
    assert event.sent_by == f"apikey:{crm_api.raw_key.split('_')[1]}"


def test_a_repeated_event_with_the_same_idempotency_key_is_stored_once(crm_api, ada):
    # given
    first = crm_api.post("/api/v1/events", order_placed(), **{"Idempotency-Key": "order-A-1"})

    # when
    repeat = crm_api.post("/api/v1/events", order_placed(), **{"Idempotency-Key": "order-A-1"})

    # then
    assert (first.status_code, repeat.status_code) == (202, 200)
    assert repeat.json()["id"] == first.json()["id"]
    assert repeat.json()["duplicate"] is True
    assert ContactEvent.objects.count() == 1


def test_the_event_id_is_the_idempotency_key_when_no_header_is_sent(crm_api, ada):
    crm_api.post("/api/v1/events", order_placed(event_id="evt-1"))
    repeat = crm_api.post("/api/v1/events", order_placed(event_id="evt-1"))

    assert repeat.json()["duplicate"] is True
    assert ContactEvent.objects.get().idempotency_key == "evt-1"


def test_an_event_without_an_idempotency_key_is_refused_with_400(crm_api, ada):
    response = crm_api.post("/api/v1/events", order_placed())

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "idempotency_key_required"
    assert "Idempotency-Key" in error["message"]
    assert not ContactEvent.objects.exists()


def test_a_retry_sent_with_a_rotated_api_key_is_stored_once(crm_api, api_as, ada):
    # given an event sent with the old key
    first = crm_api.post("/api/v1/events", order_placed(), **{"Idempotency-Key": "order-A-1"})
    # when the same request is retried after the key was rotated
    rotated = api_as(ApiScope.EVENTS_WRITE, name="CRM (rotated)")
    retry = rotated.post("/api/v1/events", order_placed(), **{"Idempotency-Key": "order-A-1"})

    # then it is the same event, still recorded as sent by the first key
    assert (first.status_code, retry.status_code) == (202, 200)
    assert retry.json()["id"] == first.json()["id"]
    assert ContactEvent.objects.count() == 1
    assert ContactEvent.objects.get().sent_by == f"apikey:{crm_api.raw_key.split('_')[1]}"


@pytest.mark.parametrize("header", [True, False])
def test_an_idempotency_key_reused_for_a_different_event_is_refused_with_409(crm_api, ada, header):
    def send(body):
        if header:
            return crm_api.post("/api/v1/events", body, **{"Idempotency-Key": "order-A-1"})
        return crm_api.post("/api/v1/events", {**body, "event_id": "order-A-1"})

    first = send(order_placed())

    reused = send(order_placed(properties={"order_id": "A-2"}))

    assert (first.status_code, reused.status_code) == (202, 409)
    error = reused.json()["error"]
    assert (error["code"], error["field"]) == ("idempotency_key_reused", "Idempotency-Key" if header else "event_id")
    assert str(first.json()["id"]) in error["message"]
    assert ContactEvent.objects.get().properties == {"order_id": "A-1"}


def test_a_retry_with_the_fields_in_another_order_is_the_same_request(client, crm_api, ada):
    headers = {"Authorization": f"Bearer {crm_api.raw_key}", "Idempotency-Key": "1"}
    first = client.post("/api/v1/events", b'{"external_id": "crm-1", "name": "x", "properties": {"a": 1, "b": 2}}',
                        content_type="application/json", headers=headers)
    retry = client.post("/api/v1/events", b'{"properties": {"b": 2, "a": 1},  "name": "x", "external_id": "crm-1"}',
                        content_type="application/json", headers=headers)

    assert (first.status_code, retry.status_code) == (202, 200)
    assert retry.json()["duplicate"] is True


def test_a_reused_key_with_other_contact_data_changes_nothing(crm_api, ada):
    crm_api.post("/api/v1/events", {"contact": {"external_id": "crm-1", "first_name": "Ada"}, "name": "x"},
                 **{"Idempotency-Key": "1"})

    response = crm_api.post("/api/v1/events", {"contact": {"external_id": "crm-1", "first_name": "Augusta"},
                                               "name": "x"}, **{"Idempotency-Key": "1"})

    assert response.status_code == 409
    assert Contact.objects.get().first_name == "Ada"
    assert AuditEntry.objects.filter(action="contact.updated").count() == 1


def test_an_event_for_an_unknown_external_id_is_404_naming_it(crm_api):
    response = crm_api.post("/api/v1/events", order_placed(external_id="crm-404"), **{"Idempotency-Key": "1"})

    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("contact_not_found", "external_id")
    assert "crm-404" in error["message"]
    assert not ContactEvent.objects.exists()


def test_an_event_with_contact_fields_creates_the_contact(crm_api):
    body = {"contact": {"external_id": "crm-2", "email": "grace@example.com"}, "name": "signed_up"}

    response = crm_api.post("/api/v1/events", body, **{"Idempotency-Key": "signup-2"})

    assert response.status_code == 202
    contact = Contact.objects.get(external_id="crm-2")
    assert contact.email == "grace@example.com"
    assert ContactEvent.objects.get().contact == contact
    assert sorted(AuditEntry.objects.values_list("action", flat=True)) == ["contact.created"]


def test_an_event_with_only_an_external_id_in_contact_needs_an_existing_contact(crm_api):
    body = {"contact": {"external_id": "crm-2"}, "name": "signed_up"}

    response = crm_api.post("/api/v1/events", body, **{"Idempotency-Key": "signup-2"})

    assert response.status_code == 404


def test_invalid_contact_data_in_an_event_stores_nothing(crm_api):
    # given contact data whose phone is wrong, for a contact that does not exist yet
    body = {"contact": {"external_id": "crm-2", "email": "grace@example.com", "phone": "12"}, "name": "signed_up"}

    # when
    response = crm_api.post("/api/v1/events", body, **{"Idempotency-Key": "signup-2"})

    # then neither the contact, nor the event, nor an audit entry was stored
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "phone"
    assert not Contact.objects.exists()
    assert not ContactEvent.objects.exists()
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize("overrides, field", [
    ({"name": ""}, "name"),
    ({"name": "order placed!"}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"properties": ["A-1"]}, "properties"),
    ({"properties": {"blob": "x" * 20_000}}, "properties"),
    ({"occurred_at": "yesterday"}, "occurred_at"),
    ({"occurred_at": "2025-05-01T12:00:00"}, "occurred_at"),
    ({"occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at"),
    ({"occurred_at": "0001-01-01T00:00:00Z"}, "occurred_at"),
    ({"occurred_at": "1999-12-31T23:59:59Z"}, "occurred_at"),
    ({"occurred_at": "2025-13-01T00:00:00Z"}, "occurred_at"),
    ({"occurred_at": 1714557600}, "occurred_at"),
    ({"name": "order.placed\n"}, "name"),
    ({"external_id": ""}, "external_id"),
    ({"contact": "crm-1", "external_id": None}, "contact"),
    ({"customer": "crm-1"}, "customer"),
])
def test_an_invalid_event_is_refused_with_400_naming_the_field(crm_api, ada, overrides, field):
    body = {key: value for key, value in order_placed(**overrides).items() if value is not None}

    response = crm_api.post("/api/v1/events", body, **{"Idempotency-Key": "1"})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == field
    assert not ContactEvent.objects.exists()


def test_an_event_more_than_a_day_in_the_future_is_refused(crm_api, ada):
    two_days_ahead = (timezone.now() + timedelta(days=2)).isoformat()

    response = crm_api.post("/api/v1/events", order_placed(occurred_at=two_days_ahead), **{"Idempotency-Key": "1"})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "occurred_at"


def test_a_received_event_is_stored_with_its_sender_and_left_for_the_tick(crm_api, ada):
    crm_api.post("/api/v1/events", order_placed(), **{"Idempotency-Key": "1"})

    # the request writes the event row only: the tick audits and processes it
    event = ContactEvent.objects.get()
    assert (event.sent_by, event.processed_at) == (f"apikey:{crm_api.raw_key.split('_')[1]}", None)
    assert not AuditEntry.objects.filter(object_type="contacts.contactevent").exists()


def test_events_need_the_events_write_scope(api_as, ada):
    contacts_only = api_as(ApiScope.CONTACTS_WRITE)

    response = contacts_only.post("/api/v1/events", order_placed(), **{"Idempotency-Key": "1"})

    assert response.status_code == 403
    assert "events:write" in response.json()["error"]["message"]


def test_an_event_for_an_erased_contact_is_refused(crm_api, ada):
    Contact.objects.update(erased_at=timezone.now())

    response = crm_api.post("/api/v1/events", order_placed(), **{"Idempotency-Key": "1"})

    assert response.status_code == 409
    assert not ContactEvent.objects.exists()


def test_an_event_post_makes_one_statement_on_postgresql(crm_api, ada, django_assert_max_num_queries):
    # The key was verified by ada's PUT and is cached, as are the declared property types (loaded
    # once per OMNI_TYPED_DATA_CACHE_SECONDS): the event and its audit entry are one
    # statement on PostgreSQL; SQLite adds a savepoint, the audit insert and the release.
    data_types.definitions()
    with django_assert_max_num_queries(1 if connection.vendor == "postgresql" else 4):
        response = crm_api.post("/api/v1/events", order_placed(), **{"Idempotency-Key": "1"})
    assert response.status_code == 202


def test_an_event_sent_with_a_new_key_adds_only_the_key_lookup_and_its_use(
    api_as, ada, django_assert_max_num_queries
):
    fresh = api_as(ApiScope.EVENTS_WRITE, name="Shop")
    data_types.definitions()  # cached by an earlier request, like a known key
    with django_assert_max_num_queries(3 if connection.vendor == "postgresql" else 6):
        response = fresh.post("/api/v1/events", order_placed(), **{"Idempotency-Key": "1"})
    assert response.status_code == 202


def test_a_repeated_event_post_makes_two_queries(crm_api, ada, django_assert_max_num_queries):
    crm_api.post("/api/v1/events", order_placed(), **{"Idempotency-Key": "1"})
    # The insert that finds the key taken, then the stored event.
    with django_assert_max_num_queries(2 if connection.vendor == "postgresql" else 5):
        response = crm_api.post("/api/v1/events", order_placed(), **{"Idempotency-Key": "1"})
    assert response.json()["duplicate"] is True


def test_an_event_that_creates_its_contact_makes_a_bounded_number_of_queries(
    crm_api, django_assert_max_num_queries
):
    body = {"contact": {"external_id": "crm-2", "email": "grace@example.com"}, "name": "signed_up"}
    # As above, plus the key's first-use mark and the contact's lock, insert and audit.
    with django_assert_max_num_queries(16):
        response = crm_api.post("/api/v1/events", body, **{"Idempotency-Key": "1"})
    assert response.status_code == 202


@pytest.mark.parametrize("raw_body, field", [
    (b'{"external_id": "crm-1", "name": "x", "properties": {"total": 1e400}}', "properties.total"),
    (b'{"external_id": "crm-1", "name": "x", "properties": {"total": -1e400}}', "properties.total"),
    (b'{"external_id": "crm-1", "name": "x", "properties": {"note": "\\ud800"}}', "properties.note"),
    (b'{"external_id": "crm-1", "name": "x", "properties": {"items": [{"n": "a\\udfffb"}]}}',
     "properties.items[0].n"),
    (b'{"external_id": "crm-1", "name": "x\\ud800"}', "name"),
    (b'{"external_id": "crm-\\ud800", "name": "x"}', "external_id"),
])
def test_json_the_database_cannot_store_is_refused_with_400_naming_the_field(client, crm_api, ada, raw_body, field):
    response = client.post("/api/v1/events", raw_body, content_type="application/json",
                           headers={"Authorization": f"Bearer {crm_api.raw_key}", "Idempotency-Key": "1"})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == field
    assert not ContactEvent.objects.exists()


def test_an_api_request_skips_the_browser_middleware(crm_api, ada, client):
    # when
    api_response = crm_api.post("/api/v1/events", order_placed(), **{"Idempotency-Key": "1"})
    admin_response = client.get("/admin/login/")
    # then: no session, user or messages for the API, which authenticates by key
    assert api_response.status_code == 202
    assert not any(hasattr(api_response.wsgi_request, name) for name in ("session", "user", "_messages"))
    assert all(hasattr(admin_response.wsgi_request, name) for name in ("session", "user", "_messages"))


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_json_nested_deeper_than_the_limit_is_refused_with_400_naming_the_limit(client, crm_api, ada):
    from omni.lib.text import MAX_JSON_DEPTH

    body = '{"event_id": "e-1", "external_id": "crm-1", "name": "x", "properties": {"a": %s}}' % nested(MAX_JSON_DEPTH)

    response = crm_api.post("/api/v1/events", body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_field"
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in error["message"]
    assert error["field"].startswith("properties.a[0]")
    assert not ContactEvent.objects.exists()


def test_json_nested_up_to_and_past_what_the_parser_takes_never_answers_500(crm_api, ada):
    # Near Python's recursion limit the parser still succeeds and later code recursed past it.
    import sys

    limit = sys.getrecursionlimit()
    answers = {}
    for depth in range(limit - 150, limit + 10, 3):
        event = '{"event_id": "e-%d", "external_id": "crm-1", "name": "x", "properties": {"a": %s}}' % (
            depth, nested(depth))
        contact = '{"attributes": {"a": %s}}' % nested(depth)
        answers[depth] = (crm_api.post("/api/v1/events", event).status_code,
                          crm_api.put("/api/v1/contacts/crm-1", contact).status_code)

    assert {depth: codes for depth, codes in answers.items() if max(codes) >= 500} == {}
    assert set(answers.values()) == {(400, 400)}
