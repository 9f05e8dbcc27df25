import pytest
from django.utils import timezone

from omni.models import AuditEntry
from compliance.models import Consent, ConsentChange
from contacts.models import Contact
from omni.models import ApiScope


def test_putting_a_new_external_id_creates_the_contact_with_201(crm_api):
    # when
    response = crm_api.put("/api/v1/contacts/crm-1", {
        "email": " Ada@Example.COM ", "phone": "+1 (415) 555-0100", "first_name": "Ada",
        "timezone": "America/Los_Angeles", "country": "us", "lifecycle_stage": "lead",
    })

    # then
    assert response.status_code == 201
    assert response.headers["Location"] == "/api/v1/contacts/crm-1"
    body = response.json()
    assert body["external_id"] == "crm-1"
    assert body["email"] == "ada@example.com"
    assert body["phone"] == "+14155550100"
    assert body["country"] == "US"
    contact = Contact.objects.get(external_id="crm-1")
    assert (contact.email, contact.phone, contact.lifecycle_stage) == ("ada@example.com", "+14155550100", "lead")


def test_putting_an_existing_external_id_updates_it_with_200(crm_api):
    crm_api.put("/api/v1/contacts/crm-1", {"email": "ada@example.com", "first_name": "Ada"})

    response = crm_api.put("/api/v1/contacts/crm-1", {"last_name": "Lovelace"})

    assert response.status_code == 200
    contact = Contact.objects.get(external_id="crm-1")
    assert (contact.first_name, contact.last_name, contact.email) == ("Ada", "Lovelace", "ada@example.com")
    assert Contact.objects.count() == 1


def test_a_null_value_clears_an_optional_field(crm_api):
    crm_api.put("/api/v1/contacts/crm-1", {"phone": "+14155550100"})

    crm_api.put("/api/v1/contacts/crm-1", {"phone": None})

    assert Contact.objects.get(external_id="crm-1").phone == ""


@pytest.mark.parametrize("field, value", [
    ("phone", "12"),
    ("phone", "+1 555 not a number"),
    ("email", "ada@"),
    ("email", 42),
    ("timezone", "Mars/Olympus_Mons"),
    ("lifecycle_stage", "prospect"),
    ("locale", "english please"),
    ("country", "USA"),
    ("region", "Florida"),
    ("region", "ZZ-FL"),
    ("attributes", ["vip"]),
])
def test_an_invalid_value_is_refused_with_400_naming_the_field(crm_api, field, value):
    response = crm_api.put("/api/v1/contacts/crm-1", {"first_name": "Ada", field: value})

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_field", field)
    assert not Contact.objects.exists()


def test_an_unknown_field_is_refused_with_400_naming_it(crm_api):
    response = crm_api.put("/api/v1/contacts/crm-1", {"email": "ada@example.com", "favourite_colour": "teal"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("unknown_field", "favourite_colour")
    assert not Contact.objects.exists()


def test_attributes_merge_into_the_stored_ones_and_null_removes_a_key(crm_api):
    # given
    crm_api.put("/api/v1/contacts/crm-1", {"attributes": {"plan": "free", "seats": 1, "trial": True}})

    # when
    response = crm_api.put("/api/v1/contacts/crm-1", {"attributes": {"plan": "pro", "trial": None}})

    # then
    assert response.json()["attributes"] == {"plan": "pro", "seats": 1}
    assert Contact.objects.get(external_id="crm-1").attributes == {"plan": "pro", "seats": 1}


def test_creating_and_updating_audit_the_changed_field_names_without_values(crm_api):
    # given
    crm_api.put("/api/v1/contacts/crm-1", {"email": "ada@example.com", "first_name": "Ada"})

    # when
    crm_api.put("/api/v1/contacts/crm-1", {"email": "ada@example.com", "phone": "+14155550100"})

    # then
    created, updated = AuditEntry.objects.order_by("id")
    contact = Contact.objects.get()
    assert (created.action, created.contact_id) == ("contact.created", contact.pk)
    assert created.data == {"fields": ["email", "first_name"]}
    assert (updated.action, updated.data) == ("contact.updated", {"fields": ["phone"]})
    assert created.actor_label.startswith("apikey:")
    assert "ada@example.com" not in str(created.data) + str(updated.data)


def test_a_put_that_changes_nothing_writes_nothing(crm_api):
    crm_api.put("/api/v1/contacts/crm-1", {"email": "ada@example.com"})
    updated_at = Contact.objects.get().updated_at

    response = crm_api.put("/api/v1/contacts/crm-1", {"email": "ADA@example.com"})

    assert response.status_code == 200
    assert Contact.objects.get().updated_at == updated_at
    assert list(AuditEntry.objects.values_list("action", flat=True)) == ["contact.created"]


def test_consents_in_the_body_are_recorded_as_changes_and_current_consent(crm_api, record_consent_change):
    # when
    response = crm_api.put("/api/v1/contacts/crm-1", {
        "phone": "+14155550100",
        "consents": [{
            "channel": "sms", "purpose": "marketing", "status": "granted",
            "evidence": {"form": "checkout", "text": "Text me offers"},
        }],
    })

    # then
    assert response.status_code == 201
    change = ConsentChange.objects.get()
    assert (change.channel, change.purpose, change.status, change.source) == ("sms", "marketing", "granted", "api")
    assert change.evidence == {"form": "checkout", "text": "Text me offers"}
    assert change.actor_label.startswith("apikey:")
    consent = Consent.objects.get()
    assert (consent.contact.external_id, consent.status) == ("crm-1", "granted")
    assert response.json()["consents"][0]["status"] == "granted"


@pytest.mark.parametrize("consent, field", [
    ({"channel": "fax", "purpose": "marketing", "status": "granted"}, "consents[0].channel"),
    ({"channel": "sms", "purpose": "spam", "status": "granted"}, "consents[0].purpose"),
    ({"channel": "sms", "purpose": "marketing", "status": "maybe"}, "consents[0].status"),
    # pending (double opt-in) is Omni's to set, never a client's
    ({"channel": "email", "purpose": "marketing", "status": "pending"}, "consents[0].status"),
    ({"channel": "sms", "purpose": "marketing", "status": "granted", "evidence": "yes"}, "consents[0].evidence"),
    ({"channel": "sms", "purpose": "marketing", "status": "granted", "ip": "1.2.3.4"}, "consents[0].ip"),
])
def test_an_invalid_consent_is_refused_and_stores_nothing(crm_api, consent, field):
    response = crm_api.put("/api/v1/contacts/crm-1", {"phone": "+14155550100", "consents": [consent]})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == field
    assert not Contact.objects.exists()
    assert not ConsentChange.objects.exists()


def test_with_double_opt_in_an_email_marketing_grant_waits_for_confirmation(crm_api, settings):
    settings.OMNI_DOUBLE_OPT_IN = True

    response = crm_api.put("/api/v1/contacts/crm-1", {
        "email": "ada@example.com",
        "consents": [{"channel": "email", "purpose": "marketing", "status": "granted"}],
    })

    assert response.status_code == 201
    assert response.json()["consents"][0]["status"] == "pending"
    assert ConsentChange.objects.get().status == "pending"


def test_getting_a_contact_returns_its_profile(crm_api):
    crm_api.put("/api/v1/contacts/crm-1", {"email": "ada@example.com", "attributes": {"plan": "pro"}})

    response = crm_api.get("/api/v1/contacts/crm-1")

    assert response.status_code == 200
    assert response.json()["email"] == "ada@example.com"
    assert response.json()["attributes"] == {"plan": "pro"}


def test_getting_an_unknown_contact_is_404_naming_the_external_id(crm_api):
    response = crm_api.get("/api/v1/contacts/nobody")

    assert response.status_code == 404
    assert "nobody" in response.json()["error"]["message"]


def test_reading_needs_the_read_scope_and_writing_the_write_scope(api_as):
    reader = api_as(ApiScope.CONTACTS_READ)
    writer = api_as(ApiScope.CONTACTS_WRITE)

    refused_write = reader.put("/api/v1/contacts/crm-1", {"email": "ada@example.com"})
    refused_read = writer.get("/api/v1/contacts/crm-1")

    assert (refused_write.status_code, refused_read.status_code) == (403, 403)
    assert "contacts:write" in refused_write.json()["error"]["message"]
    assert "contacts:read" in refused_read.json()["error"]["message"]


def test_another_method_on_a_contact_is_405(crm_api):
    response = crm_api.client.delete("/api/v1/contacts/crm-1", headers=crm_api.headers({}))

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, PUT"


def test_an_erased_contact_cannot_be_filled_in_again(crm_api):
    crm_api.put("/api/v1/contacts/crm-1", {"first_name": "Ada"})
    Contact.objects.update(first_name="", erased_at=timezone.now())

    response = crm_api.put("/api/v1/contacts/crm-1", {"email": "ada@example.com"})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "contact_erased"
    assert Contact.objects.get().email == ""


# (A percent-encoded lone surrogate never reaches the view: Django keeps bad UTF-8 in a path
# percent-encoded, which is a storable id.)
@pytest.mark.parametrize("path", ["/api/v1/contacts/ab%00c", "/api/v1/contacts/ab%0Ac", "/api/v1/contacts/ab%7Fc"])
def test_an_external_id_with_a_control_character_is_refused_with_400(crm_api, path):
    put = crm_api.put(path, {"email": "ada@example.com"})
    get = crm_api.get(path)

    assert (put.status_code, get.status_code) == (400, 400)
    assert put.json()["error"]["field"] == "external_id"
    assert not Contact.objects.exists()


def test_a_lone_surrogate_in_a_contact_field_is_refused_with_400(client, crm_api):
    response = client.put("/api/v1/contacts/crm-1", b'{"first_name": "A\\ud800"}', content_type="application/json",
                          headers={"Authorization": f"Bearer {crm_api.raw_key}"})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "first_name"
    assert not Contact.objects.exists()


@pytest.mark.parametrize("country", ["US", "us"])
def test_a_national_phone_number_is_read_with_the_country_in_the_same_payload(crm_api, country):
    response = crm_api.put("/api/v1/contacts/crm-1", {"phone": "(415) 555-0199", "country": country})

    assert response.status_code == 201
    assert Contact.objects.get().phone == "+14155550199"


def test_a_national_phone_number_is_read_with_the_contacts_stored_country(crm_api):
    crm_api.put("/api/v1/contacts/crm-1", {"country": "GB"})

    response = crm_api.put("/api/v1/contacts/crm-1", {"phone": "020 7946 0018"})

    assert response.status_code == 200
    assert Contact.objects.get().phone == "+442079460018"


def test_a_national_phone_number_without_any_country_is_refused_naming_the_phone(crm_api):
    response = crm_api.put("/api/v1/contacts/crm-1", {"phone": "(415) 555-0199"})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "phone"


def test_an_event_creating_its_contact_reads_a_national_phone_with_its_country(crm_api):
    body = {"contact": {"external_id": "crm-2", "phone": "(415) 555-0199", "country": "US"}, "name": "signed_up"}

    response = crm_api.post("/api/v1/events", body, **{"Idempotency-Key": "1"})

    assert response.status_code == 202
    assert Contact.objects.get().phone == "+14155550199"


def test_a_region_is_kept_in_iso_3166_2_and_must_lie_in_the_country(crm_api):
    stored = crm_api.put("/api/v1/contacts/crm-1", {"country": "us", "region": "us-fl"})
    elsewhere = crm_api.put("/api/v1/contacts/crm-2", {"country": "US", "region": "CA-ON"})

    assert (stored.status_code, stored.json()["region"]) == (201, "US-FL")
    assert (elsewhere.status_code, elsewhere.json()["error"]["field"]) == (400, "region")


def test_the_model_refuses_a_bad_region_naming_it(db):
    from django.core.exceptions import ValidationError

    from compliance.models import QuietHours

    with pytest.raises(ValidationError) as contact_error:
        Contact(external_id="x", region="Florida").full_clean()
    with pytest.raises(ValidationError) as mismatch:
        Contact(external_id="y", country="US", region="CA-ON").full_clean()
    with pytest.raises(ValidationError) as rule_error:
        QuietHours(name="Florida", start="21:00", end="08:00", region="FL").full_clean()

    assert "region" in contact_error.value.message_dict and "region" in mismatch.value.message_dict
    assert list(rule_error.value.message_dict) == ["region"]
