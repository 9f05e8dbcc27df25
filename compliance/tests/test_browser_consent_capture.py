"""In a real browser, a compliance user (who may not change contacts) records a contact's consent
with its evidence and lawful basis from the contact's page."""
import pytest

from compliance.models import ConsentChange
from compliance.tests.browser_steps_consent import EVIDENCE, record_consent_step
from contacts.models import Contact
from omni.models import AuditEntry
from omni.tests.browser import expect

pytestmark = pytest.mark.browser


def test_a_compliance_user_records_consent_with_evidence_from_the_contact_page(
        demo_logins, page, live_server, log_in, screenshot):
    # given a compliance user and a contact with no email consent
    log_in("compliance", demo_logins["compliance"])
    contact = Contact.objects.create(external_id="gwen", first_name="Gwen", email="gwen@example.com")

    # when they record an opt-in with its evidence from the contact's page
    consent = record_consent_step(page, live_server.url, contact, screenshot=screenshot)

    # then it is the contact's consent, with the evidence as typed, recorded by them and audited
    change = ConsentChange.objects.get(contact=contact)
    assert (consent.status, consent.lawful_basis, consent.last_change_id) == ("granted", "consent", change.pk)
    assert {key: change.evidence[key] for key in ("agreed_to", "where", "reference")} == {
        "agreed_to": EVIDENCE["agreed_to"], "where": EVIDENCE["collected_at"], "reference": EVIDENCE["reference"]}
    assert change.actor.username == "compliance"
    assert AuditEntry.objects.filter(action="consent.changed", contact_id=contact.pk).count() == 1

    # when they try an opt-in without evidence, it is refused naming the field, nothing saved
    page.goto(f"/admin/contacts/contact/{contact.pk}/change/")
    form = page.locator("#record-consent")
    form.locator("#id_consent-channel").select_option("sms")
    form.locator("#id_consent-status").select_option("granted")
    form.locator("#id_consent-lawful_basis").select_option("consent")
    with page.expect_navigation():
        form.get_by_role("button", name="Record consent").click()
    expect(page.locator(".errornote")).to_contain_text("Nothing was saved")
    expect(page.locator("#content-main")).to_contain_text("An opt-in needs evidence")
    screenshot("an opt-in without evidence is refused")
    assert ConsentChange.objects.filter(contact=contact).count() == 1
