"""Consent captured where contacts are made: the contact's admin page and the API."""
import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from compliance.models import Consent, ConsentChange
from contacts.models import Contact
from omni.models import ApiKey, ApiScope, AuditEntry, AuditPersonalData


@pytest.fixture
def compliance_officer(django_user_model, role_groups):
    user = django_user_model.objects.create_user(username="cora", password="not-used", is_staff=True)
    user.groups.add(Group.objects.get(name="Compliance"))
    return user


@pytest.fixture
def officer_client(client, compliance_officer):
    client.force_login(compliance_officer)
    return client


@pytest.fixture
def contact(db):
    return Contact.objects.create(external_id="ann", email="ann@example.com", phone="+14155550101", first_name="Ann")


def contact_page(contact) -> str:
    return reverse("admin:contacts_contact_change", args=[contact.pk])


def record_url(contact) -> str:
    return reverse("admin:compliance_consentchange_record", args=[contact.pk])


def consent_post(**overrides) -> dict:
    values = {"channel": "sms", "purpose": "marketing", "status": "granted", "source": "form",
              "lawful_basis": "consent", "agreed_to": "Texts about offers, about 4 a month",
              "collected_at": "paper form at the Leeds store", "reference": "LDS-0042", "given_on": "2026-11-30"}
    values.update(overrides)
    return {f"consent-{name}": value for name, value in values.items()}


def test_the_compliance_role_may_record_consent_but_not_change_the_contact(compliance_officer):
    assert compliance_officer.has_perm("compliance.add_consentchange")
    assert not compliance_officer.has_perm("contacts.change_contact")


def test_the_contact_page_shows_the_consent_form_to_compliance_staff(officer_client, contact):
    page = officer_client.get(contact_page(contact))

    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="consent-agreed_to"' in html
    assert f'formaction="{record_url(contact)}"' in html


def test_compliance_staff_record_a_grant_with_evidence_from_the_contact_page(officer_client, contact,
                                                                          compliance_officer):
    # when: the contact page's form, posted by its "Record consent" button (with the page's other fields)
    response = officer_client.post(record_url(contact), {"first_name": "Mallory", **consent_post()})

    # then
    assert response.status_code == 302
    assert response.url == f"{contact_page(contact)}#consents-group"
    change = ConsentChange.objects.get()
    assert (change.channel, change.purpose, change.status, change.source, change.lawful_basis) == (
        "sms", "marketing", "granted", "form", "consent")
    assert change.evidence == {"recorded_on": "contact_page", "agreed_to": "Texts about offers, about 4 a month",
                               "where": "paper form at the Leeds store", "reference": "LDS-0042",
                               "given_on": "2026-11-30"}
    assert change.actor == compliance_officer
    assert Consent.objects.get(contact=contact, channel="sms", purpose="marketing").status == "granted"
    entry = AuditEntry.objects.get(action="consent.changed")
    assert entry.actor_id == compliance_officer.pk and entry.contact_id == contact.pk
    # the evidence names the person's words and place: outside the chain
    assert "Leeds" not in str(entry.data)
    assert AuditPersonalData.objects.get(entry=entry).data["evidence"]["where"] == "paper form at the Leeds store"
    # the contact's own fields are not the consent view's to save
    contact.refresh_from_db()
    assert contact.first_name == "Ann"
    page = officer_client.get(response.url)
    assert "Recorded: SMS marketing opted in (Signup form)." in page.content.decode()


def test_a_revocation_needs_no_evidence(officer_client, contact):
    response = officer_client.post(record_url(contact), consent_post(
        status="revoked", lawful_basis="", agreed_to="", collected_at="", reference="", given_on=""))

    assert response.status_code == 302
    change = ConsentChange.objects.get()
    assert (change.status, change.evidence) == ("revoked", {"recorded_on": "contact_page"})


@pytest.mark.parametrize("missing", ["agreed_to", "collected_at", "given_on", "lawful_basis"])
def test_a_grant_without_its_evidence_is_refused_naming_the_field(officer_client, contact, missing):
    response = officer_client.post(record_url(contact), consent_post(**{missing: ""}))

    assert response.status_code == 400
    assert list(response.context["form"].errors) == [missing]
    assert "Nothing was saved" in response.content.decode()
    assert not ConsentChange.objects.exists()
    assert not Consent.objects.exists()
    assert not AuditEntry.objects.filter(action="consent.changed").exists()


@pytest.mark.parametrize("field, value", [
    ("channel", "fax"), ("purpose", "spam"), ("status", "pending"), ("source", "keyword"),
    ("lawful_basis", "because"), ("given_on", "yesterday"), ("given_on", "2999-01-01"), ("reference", "x" * 201),
])
def test_a_bad_value_is_refused_naming_the_field_and_nothing_is_saved(officer_client, contact, field, value):
    response = officer_client.post(record_url(contact), consent_post(**{field: value}))

    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert not ConsentChange.objects.exists()
    assert not AuditEntry.objects.filter(action="consent.changed").exists()


def test_staff_without_the_consent_permission_cannot_record(client, django_user_model, role_groups, contact):
    agent = django_user_model.objects.create_user(username="sam", password="not-used", is_staff=True)
    agent.groups.add(Group.objects.get(name="Support agents"))
    client.force_login(agent)

    response = client.post(record_url(contact), consent_post())

    assert response.status_code == 403
    assert not ConsentChange.objects.exists()


def test_an_erased_contact_takes_no_consent(officer_client, contact):
    Contact.objects.filter(pk=contact.pk).update(erased_at="2026-12-01T00:00:00Z")

    response = officer_client.post(record_url(contact), consent_post())

    assert response.status_code == 404
    assert not ConsentChange.objects.exists()


# The API


@pytest.fixture
def crm_api(client, db):
    _, raw_key = ApiKey.generate("CRM", [ApiScope.CONTACTS_READ, ApiScope.CONTACTS_WRITE])

    def put(path, body):
        return client.put(path, body, content_type="application/json", headers={"Authorization": f"Bearer {raw_key}"})

    return put


def test_the_api_records_a_lawful_basis(crm_api):
    response = crm_api("/api/v1/contacts/crm-1", {"phone": "+14155550100", "consents": [
        {"channel": "sms", "purpose": "marketing", "status": "granted", "lawful_basis": "consent",
         "evidence": {"form": "checkout"}}]})

    assert response.status_code == 201
    assert response.json()["consents"][0]["lawful_basis"] == "consent"
    assert ConsentChange.objects.get().lawful_basis == "consent"
    assert Consent.objects.get().lawful_basis == "consent"


def test_the_api_refuses_a_bad_lawful_basis_naming_its_item(crm_api):
    response = crm_api("/api/v1/contacts/crm-1", {"phone": "+14155550100", "consents": [
        {"channel": "sms", "purpose": "marketing", "status": "granted", "lawful_basis": "consent"},
        {"channel": "email", "purpose": "marketing", "status": "granted", "lawful_basis": "because"}]})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "consents[1].lawful_basis"
    assert not Contact.objects.exists()
    assert not ConsentChange.objects.exists()


def test_the_api_refuses_a_bad_lawful_basis_at_index_0(crm_api):
    response = crm_api("/api/v1/contacts/crm-1", {"consents": [
        {"channel": "sms", "purpose": "marketing", "status": "granted", "lawful_basis": ["consent"]}]})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "consents[0].lawful_basis"
