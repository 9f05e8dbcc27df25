"""In a real browser, a compliance user exports messages from the sidebar's "Message export" and
downloads one contact's trail from the timeline."""
import csv
import io

import pytest

from channels import routing
from channels.models import MessageSource
from compliance.actions import record_consent_change
from contacts.models import Contact
from omni.models import AuditEntry
from omni.tests.browser import expect, open_from_index
from omni.tests.browser_steps_export import export_contact_trail_step

pytestmark = pytest.mark.browser


def test_a_compliance_user_exports_messages_and_a_contacts_trail(demo_logins, page, live_server, log_in, screenshot):
    # given a contact with a marketing email (allowed) and a marketing SMS (refused: no opt-in)
    contact = Contact.objects.create(external_id="=trail", email="trail@example.com", phone="+14155550123",
                                     first_name="Tess")
    record_consent_change(contact, "email", "marketing", "granted", "form", lawful_basis="consent",
                          evidence={"form": "signup"}, announce=False)
    for channel in ("email", "sms"):
        message, _ = routing.create_message(contact=contact, source=MessageSource.API, purpose="marketing",
                                            channel_plan=[{"channel": channel}],
                                            content=[{"channel": channel, "subject": "News", "text_body": "Hi"}])
        routing.dispatch(message)
    log_in("compliance", demo_logins["compliance"])

    # when they open the message export from the sidebar and export this contact's messages as CSV
    open_from_index(page, "Message export")
    page.locator("#id_contact").fill("=trail")
    screenshot("the message export's filters")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Export").click()
    rows = list(csv.DictReader(io.StringIO(download_info.value.path().read_text())))

    # then the rows name the contact (neutralized) and each decision
    assert [(r["contact_external_id"], r["channel"], r["decision_outcome"]) for r in rows] == [
        ("'=trail", "email", "allow"), ("'=trail", "sms", "suppress")]

    # when they name a contact that does not exist
    page.locator("#id_contact").fill("nobody")
    page.get_by_role("button", name="Export").click()
    expect(page.locator("#export-errors")).to_contain_text("No contact has this external id or email address.")
    screenshot("a contact that does not exist is refused, naming the field")

    # and they download the contact's trail from the timeline
    workbook = export_contact_trail_step(page, live_server.url, contact, screenshot)
    decisions = workbook["Decisions"]
    assert [row[decisions[0].index("lawful_basis")] for row in decisions[1:]] == ["consent", ""]
    assert AuditEntry.objects.filter(action="contact.report_exported", contact_id=contact.pk).count() == 1
    assert AuditEntry.objects.filter(action="messages.exported").get().data["rows"] == 2
