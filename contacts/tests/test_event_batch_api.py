"""POST /api/v1/events/batch: up to 1,000 events, each stored or refused on its own."""
import json

import pytest
from django.utils import timezone

from contacts.models import Contact, ContactEvent
from omni.models import ApiScope

BATCH = "/api/v1/events/batch"


@pytest.fixture
def ada(crm_api) -> Contact:
    """A contact the CRM created, known by external id crm-1."""
    crm_api.put("/api/v1/contacts/crm-1", {"email": "ada@example.com"})
    return Contact.objects.get(external_id="crm-1")


def order(event_id, **overrides) -> dict:
    return {"event_id": event_id, "external_id": "crm-1", "name": "order.placed",
            "properties": {"order_id": event_id}, **overrides}


def test_each_event_of_a_batch_gets_its_own_result_and_the_good_ones_are_stored(crm_api, ada):
    # given an event stored earlier, and a batch mixing new, repeated, reused and bad events
    crm_api.post("/api/v1/events", order("e-0"))
    events = [
        order("e-1"),                                          # stored
        order("e-0"),                                          # a retry of the earlier one
        order("e-0", properties={"order_id": "other"}),        # its key reused for another event
        order("e-2", name="order placed!"),                    # invalid name
        order("e-3", external_id="crm-404"),                   # unknown contact
        "not an object",
        order(None),                                           # no event_id
        order("e-4", customer="x"),                            # unknown field
        order("e-1"),                                          # the same event twice in one batch
        order("e-1", properties={"order_id": "changed"}),      # and its key reused in the same batch
        {"event_id": "e-5", "contact": {"external_id": "crm-2", "email": "grace@example.com"}, "name": "signed_up"},
    ]

    # when
    response = crm_api.post(BATCH, {"events": events})

    # then
    assert response.status_code == 200
    body = response.json()
    outcome = [(r["index"], r["status"], r.get("error", {}).get("status"), r.get("error", {}).get("field"))
               for r in body["results"]]
    assert outcome == [
        (0, "stored", None, None),
        (1, "duplicate", None, None),
        (2, "refused", 409, "event_id"),
        (3, "refused", 400, "name"),
        (4, "refused", 404, "external_id"),
        (5, "refused", 400, "events[5]"),
        (6, "refused", 400, "event_id"),
        (7, "refused", 400, "customer"),
        (8, "duplicate", None, None),
        (9, "refused", 409, "event_id"),
        (10, "stored", None, None),
    ]
    assert (body["stored"], body["duplicate"], body["refused"]) == (2, 2, 7)
    assert body["results"][2]["error"]["code"] == "idempotency_key_reused"
    stored = {e.idempotency_key: e for e in ContactEvent.objects.select_related("contact")}
    assert sorted(stored) == ["e-0", "e-1", "e-5"]
    assert body["results"][0]["id"] == stored["e-1"].pk
    assert body["results"][8]["id"] == stored["e-1"].pk
    assert body["results"][1]["id"] == stored["e-0"].pk
    assert stored["e-1"].properties == {"order_id": "e-1"}
    assert stored["e-5"].contact.email == "grace@example.com"
    assert body["results"][10]["contact"] == {"id": stored["e-5"].contact_id, "external_id": "crm-2"}


def test_a_stored_batch_event_is_what_the_single_endpoint_would_store(crm_api, ada):
    # when
    crm_api.post(BATCH, {"events": [order("e-1", occurred_at="2025-05-01T12:00:00+02:00")]})

    # then the event and its sender are as POST /events writes them
    event = ContactEvent.objects.get()
    assert (event.contact, event.name, event.properties, event.source) == (ada, "order.placed", {"order_id": "e-1"},
                                                                          "api")
    assert event.occurred_at.isoformat() == "2025-05-01T10:00:00+00:00"
    assert event.sent_by == f"apikey:{crm_api.raw_key.split('_')[1]}"
    assert event.processed_at is None
    # and a retry through the single endpoint is recognized as the same event
    retry = crm_api.post("/api/v1/events", order("e-1", occurred_at="2025-05-01T12:00:00+02:00"))
    assert (retry.status_code, retry.json()["id"]) == (200, event.pk)


def test_an_event_for_an_erased_contact_is_refused_in_a_batch(crm_api, ada):
    Contact.objects.update(erased_at=timezone.now())

    result = crm_api.post(BATCH, {"events": [order("e-1")]}).json()["results"][0]

    assert (result["status"], result["error"]["status"], result["error"]["code"]) == ("refused", 409, "contact_erased")
    assert not ContactEvent.objects.exists()


def test_a_batch_body_over_its_limit_is_refused_with_413_and_nothing_stored(crm_api, ada, settings):
    settings.OMNI_MAX_BATCH_BODY_BYTES = 2000

    response = crm_api.post(BATCH, {"events": [order(f"e-{i}") for i in range(40)]})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert not ContactEvent.objects.exists()


def test_a_batch_of_more_than_1000_events_is_refused_with_413_naming_the_field(crm_api, ada):
    response = crm_api.post(BATCH, {"events": [order(f"e-{i}") for i in range(1001)]})

    assert response.status_code == 413
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("too_many_events", "events")
    assert "1000" in error["message"]
    assert not ContactEvent.objects.exists()


@pytest.mark.parametrize("body, field", [
    ({"events": []}, "events"),
    ({"events": {"event_id": "e-1"}}, "events"),
    ({}, "events"),
    ({"events": [order("e-1")], "extra": 1}, "extra"),
])
def test_a_malformed_batch_is_refused_with_400_naming_the_field(crm_api, ada, body, field):
    response = crm_api.post(BATCH, body)

    assert response.status_code == 400
    assert response.json()["error"]["field"] == field
    assert not ContactEvent.objects.exists()


def test_a_batch_that_is_not_json_is_refused_with_400(client, crm_api, ada):
    response = client.post(BATCH, b'{"events": [', content_type="application/json",
                           headers={"Authorization": f"Bearer {crm_api.raw_key}"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


def test_batches_need_the_events_write_scope(api_as, ada):
    response = api_as(ApiScope.CONTACTS_WRITE).post(BATCH, {"events": [order("e-1")]})

    assert response.status_code == 403
    assert not ContactEvent.objects.exists()


def test_a_batch_of_1000_events_makes_a_handful_of_queries(crm_api, django_assert_max_num_queries):
    # given 1,000 contacts, 100 events already stored
    Contact.objects.bulk_create([Contact(external_id=f"c{i}") for i in range(1000)])
    crm_api.post(BATCH, {"events": [order(f"e-{i}", external_id=f"c{i}") for i in range(100)]})
    events = [order(f"e-{i}", external_id=f"c{i}") for i in range(1000)]

    # when: one insert, the repeats' lookup, the unknown contacts' lookup
    with django_assert_max_num_queries(3):
        response = crm_api.post(BATCH, {"events": events})

    # then
    body = response.json()
    assert (body["stored"], body["duplicate"], body["refused"]) == (900, 100, 0)
    assert ContactEvent.objects.count() == 1000
    assert len(json.dumps(events)) < 2 * 1024 * 1024  # the default body limit holds a full batch


def test_a_batch_over_1000_events_is_refused_before_what_they_hold_is_read(crm_api, ada):
    # given more events than a batch may hold, the last one unstorable (a NUL)
    events = [1] * 1001 + ["\x00"]

    # when
    response = crm_api.post(BATCH, {"events": events})

    # then the count is what is refused: the body's strings were never walked
    assert response.status_code == 413
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("too_many_events", "events")


def test_a_body_of_a_megabyte_and_a_half_of_bare_numbers_is_refused_naming_the_limit(crm_api, ada, settings):
    # given a body under the byte limit that holds three quarters of a million values
    body = '{"events": [' + ",".join(["1"] * 750_000) + "]}"
    assert 1024 * 1024 < len(body) < settings.OMNI_MAX_BATCH_BODY_BYTES

    # when
    response = crm_api.post(BATCH, body)

    # then
    assert response.status_code == 413
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("too_many_events", "events")
    assert "1000" in error["message"]
