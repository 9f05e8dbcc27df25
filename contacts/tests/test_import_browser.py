"""In a real browser, a compliance user imports a CSV with one bad row: the errors show per row,
they import the valid rows and the contacts and consents are there."""
import pytest

from compliance.models import Consent
from contacts.models import Contact, ContactImport
from contacts.tests.browser_steps_import import import_contacts_step

pytestmark = pytest.mark.browser

CSV = """external_id,email,phone,first_name,consent_email_marketing,lawful_basis_email_marketing,consent_evidence,consent_at
crm-1,ada@example.com,+14155550101,Ada,granted,consent,Spring fair form (text v2),2026-11-01T10:00:00+00:00
crm-2,not-an-email,+14155550102,Bo,granted,consent,Spring fair form (text v2),
crm-3,cy@example.com,+14155550103,Cy,revoked,,,
"""


def test_a_compliance_user_imports_the_valid_rows_of_a_file_with_a_bad_row(demo_logins, page, live_server, log_in,
                                                                          screenshot):
    log_in("compliance", demo_logins["compliance"])

    url = import_contacts_step(page, live_server.url, CSV, screenshot)

    contact_import = ContactImport.objects.get(pk=int(url.rstrip("/").split("/")[-2]))
    assert (contact_import.status, contact_import.imported_rows) == ("done", 2)
    assert [(e["row"], e["column"]) for e in contact_import.errors] == [(3, "email")]
    assert set(Contact.objects.filter(external_id__startswith="crm-").values_list("external_id", flat=True)) == {
        "crm-1", "crm-3"}
    assert Consent.objects.get(contact__external_id="crm-1", channel="email", purpose="marketing").status == "granted"
