"""A browser step the composed Compliance II walk reuses: erasing a contact from its admin page."""
from omni.tests.browser import expect


def erase_contact_step(page, base_url: str, contact, reason: str, *, screenshot=None) -> None:
    """On `page`, already logged in as a Compliance user, open the contact's admin page, choose
    "Erase personal data…", give `reason` on the confirmation page, confirm, and check the
    admin says it was erased. `screenshot(name)`, when given, is called at each stage."""
    page.goto(f"{base_url}/admin/contacts/contact/{contact.pk}/change/")
    with page.expect_navigation():
        page.get_by_role("link", name="Erase personal data…").click()
    expect(page.locator("#erased-contacts")).to_contain_text(str(contact))
    expect(page.locator("#content-main")).to_contain_text("This cannot be undone")
    page.locator("#id_reason").fill(reason)
    if screenshot:
        screenshot("erasure confirmation with its reason")
    with page.expect_navigation():
        page.locator("#confirm-erasure").click()
    expect(page.locator(".messagelist")).to_contain_text("Erased the personal data of 1 contact(s)")
    if screenshot:
        screenshot("contact erased")
