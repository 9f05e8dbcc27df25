"""Edge cases of the event API and phone numbers found in review: each test shows one defect, fixed."""
import pytest

from contacts.models import Contact, ContactEvent

BATCH = "/api/v1/events/batch"


def test_a_batch_event_may_name_a_contact_an_earlier_event_of_the_batch_created(crm_api):
    # given a batch whose first event creates the contact and whose second is about it
    events = [
        {"event_id": "e-1", "contact": {"external_id": "crm-9", "email": "new@example.com"}, "name": "signed_up"},
        {"event_id": "e-2", "external_id": "crm-9", "name": "order.placed"},
    ]

    # when
    response = crm_api.post(BATCH, {"events": events})

    # then both are stored, as two requests sent in this order would have been
    assert response.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == ["stored", "stored"]
    contact = Contact.objects.get(external_id="crm-9")
    assert set(ContactEvent.objects.filter(contact=contact).values_list("idempotency_key", flat=True)) == {"e-1", "e-2"}


def test_the_first_of_two_batch_events_with_one_key_is_the_one_stored(crm_api):
    # given a batch with one key twice: first with contact fields, then without
    crm_api.put("/api/v1/contacts/crm-1", {"email": "ada@example.com"})
    events = [
        {"event_id": "e-1", "contact": {"external_id": "crm-1", "first_name": "Ada"}, "name": "signed_up"},
        {"event_id": "e-1", "external_id": "crm-1", "name": "order.placed"},
    ]

    # when
    response = crm_api.post(BATCH, {"events": events})

    # then the first is stored and the second refused as a reuse of its key
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["stored", "refused"]
    assert results[1]["error"]["status"] == 409
    assert ContactEvent.objects.get(idempotency_key="e-1").name == "signed_up"


@pytest.mark.parametrize("phone", ["+1 415 555 0100 ext. 5", "+14155550100x7", "(415) 555-0100 ext 12"])
def test_a_phone_number_with_an_extension_is_refused_not_stored_without_it(crm_api, phone):
    # given a number with an extension, which no text message can reach and E.164 cannot hold

    # when
    response = crm_api.put("/api/v1/contacts/crm-1", {"phone": phone, "country": "US"})

    # then it is refused naming the field, rather than stored as the switchboard's number
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "phone"
    assert not Contact.objects.filter(external_id="crm-1").exists()


@pytest.mark.parametrize("phone, country, stored", [
    ("  (415) 555-0100  ", "US", "+14155550100"),
    ("020 7946 0018", "gb", "+442079460018"),
])
def test_a_national_phone_number_with_spaces_around_is_read_in_its_country(crm_api, phone, country, stored):
    response = crm_api.put("/api/v1/contacts/crm-1", {"phone": phone, "country": country})

    assert response.status_code == 201
    assert response.json()["phone"] == stored
