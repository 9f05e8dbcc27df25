"""Edges of contacts and the public API: what a malformed import cell or consent date, a key
narrowed in the admin and a region outside the stored country do."""
import pytest

from compliance.models import ConsentChange
from contacts.models import Contact, ImportStatus
from omni.models import ApiKey, ApiScope

from .test_import_contacts import imported


@pytest.mark.parametrize("cell", ['{""score"": NaN}', '{""score"": Infinity}', '{""score"": 1e400}',
                                  '{""note"": ""a\\u0000b""}', '{""note"": ""\\ud800""}'])
def test_an_attributes_cell_the_database_cannot_store_is_refused_naming_its_row(compliance_user, cell):
    # given a file whose first row's attributes hold what no JSON column stores
    text = f'external_id,attributes\ncrm-1,"{cell}"\ncrm-2,"{{""score"": 3}}"\n'

    # when the valid rows are imported
    done = imported(text, compliance_user)

    # then the bad row is named and the good one imported, rather than the whole import failing
    assert done.status == ImportStatus.DONE
    assert [(e["row"], e["column"]) for e in done.errors] == [(2, "attributes")]
    assert list(Contact.objects.values_list("external_id", "attributes")) == [("crm-2", {"score": 3})]


def test_a_scope_taken_off_a_key_in_the_admin_is_refused_at_once_by_the_same_process(admin_client):
    # given a key with two scopes, verified (and so trusted for a while) by this process
    key, raw_key = ApiKey.generate("CRM", [ApiScope.CONTACTS_READ, ApiScope.CONTACTS_WRITE])
    headers = {"Authorization": f"Bearer {raw_key}"}
    admin_client.put("/api/v1/contacts/crm-1", {"first_name": "Ada"}, content_type="application/json",
                     headers=headers)

    # when an administrator takes the write scope off the key
    response = admin_client.post(f"/admin/omni/apikey/{key.pk}/change/",
                                 {"name": "CRM", "scopes": [ApiScope.CONTACTS_READ]})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.scopes == [ApiScope.CONTACTS_READ]

    # then the key may no longer write, in this process too
    refused = admin_client.put("/api/v1/contacts/crm-1", {"first_name": "Eve"}, content_type="application/json",
                               headers=headers)
    assert refused.status_code == 403
    assert Contact.objects.get(external_id="crm-1").first_name == "Ada"


def test_a_region_outside_the_stored_country_is_refused_naming_the_region(crm_api):
    # given a contact in the United States
    crm_api.put("/api/v1/contacts/crm-1", {"country": "US", "region": "US-FL"})

    # when a region of another country is sent without a country
    response = crm_api.put("/api/v1/contacts/crm-1", {"region": "CA-ON"})

    # then it is refused as the import and the contact form refuse it, and nothing changes
    assert (response.status_code, response.json()["error"]["field"]) == (400, "region")
    assert Contact.objects.get(external_id="crm-1").region == "US-FL"


@pytest.mark.parametrize("consent_at", ["0001-01-01T00:00:00+01:00", "0001-01-01", "1900-01-01"])
def test_a_consent_date_before_2000_is_refused_naming_its_row(compliance_user, consent_at):
    # given a file whose first row dates its grant before any system could have recorded it
    # (year 1 with a positive offset cannot even be turned into UTC)
    text = ("external_id,email,consent_email_marketing,consent_evidence,consent_at\n"
            f"crm-1,a@example.com,granted,Signed up at the fair,{consent_at}\n"
            "crm-2,b@example.com,granted,Signed up at the fair,2026-01-01\n")

    # when the valid rows are imported
    done = imported(text, compliance_user)

    # then that row is refused naming consent_at, as the API refuses such a date, and the other imported
    assert done.status == ImportStatus.DONE
    assert [(e["row"], e["column"]) for e in done.errors] == [(2, "consent_at")]
    assert "before 2000-01-01" in done.errors[0]["message"]
    assert list(Contact.objects.values_list("external_id", flat=True)) == ["crm-2"]
    assert list(ConsentChange.objects.values_list("contact__external_id", flat=True)) == ["crm-2"]
