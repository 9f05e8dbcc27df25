"""Browser steps of the contact import, for this app's browser test and the composed walk of
Compliance II: a person uploads a CSV in the admin, reads the errors row by row, and imports the
valid rows."""
import re
import tempfile
from pathlib import Path

from omni.tests.browser import expect


def import_contacts_step(page, base_url: str, csv_text: str, screenshot=None) -> str:
    """On `page`, already logged in as a Compliance user: open Contact imports from the contact
    list's Import button, upload `csv_text` (a file with at least one bad row), check that the
    errors are shown per row with their column, choose to import the valid rows and wait for
    the import to finish. Returns the import page's URL. `screenshot(name)`, when given, is called
    at each step."""
    shot = screenshot or (lambda name: None)
    page.goto(f"{base_url}/admin/contacts/contact/")
    with page.expect_navigation():
        page.locator("a[href$='/admin/contacts/contact/import/']").first.click()
    expect(page.locator("h1").first).to_contain_text("Import contacts")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "contacts.csv"
        path.write_text(csv_text, encoding="utf-8")
        page.locator("input[type=file][name=import_file]").set_input_files(str(path))
        formats = page.locator("select[name=format]")
        if formats.count():  # a choice only when more than one format is offered
            formats.select_option(label="csv")
        shot("import: file chosen")
        with page.expect_navigation():
            page.get_by_role("button", name="Submit").click()
    expect(page.locator("#import-status")).to_have_attribute("data-status", "validated", timeout=60_000)
    errors = page.locator("#import-errors tbody tr")
    expect(errors.first).to_be_visible()
    expect(page.locator("#import-errors-csv")).to_be_visible()
    shot("import: errors per row")
    page.locator("#import-choice").get_by_label(re.compile("Import the valid rows")).check()
    with page.expect_navigation():
        page.locator("#import-choice").get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-status")).to_have_attribute("data-status", "done", timeout=60_000)
    expect(page.locator("#import-status")).to_contain_text("imported")
    shot("import: done")
    return page.url
