"""Browser steps for the compliance export, for composed walks (issue 22's compliance user)."""
import tempfile
from pathlib import Path

from omni.lib.spreadsheet import read_xlsx
from omni.web.exports import REPORT_SHEETS


def export_contact_trail_step(page, base_url: str, contact, screenshot=None) -> dict[str, list[list[str]]]:
    """On `page`, logged in as a Compliance user: open the contact's timeline, download its trail
    with the page's link, and check the workbook has a sheet for each part of the trail with the
    contact's messages in it. Returns the workbook (sheet name: rows of cell text)."""
    from playwright.sync_api import expect

    page.goto(f"{base_url.rstrip('/')}/admin/contacts/{contact.pk}/timeline/")
    link = page.locator("#contact-report")
    expect(link).to_be_visible()
    if screenshot:
        screenshot("the contact's timeline with the trail's download link")
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert download.suggested_filename.startswith(f"omni-contact-{contact.pk}-"), download.suggested_filename
    assert download.suggested_filename.endswith(".xlsx"), download.suggested_filename
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / download.suggested_filename
        download.save_as(path)
        with path.open("rb") as file:
            workbook = read_xlsx(file)
    assert list(workbook) == REPORT_SHEETS, list(workbook)
    sent = workbook["Messages as sent"]
    message_ids = {str(pk) for pk in contact.messages.values_list("pk", flat=True)}
    assert {row[0] for row in sent[1:]} == message_ids, (sent, message_ids)
    return workbook
