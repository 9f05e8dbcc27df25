"""Each role in a real browser: logs in through the admin's login form, reaches its pages from
the admin index and sees their rows, and is refused the rest (no link on the index, 403 at the
address). The data is the demo data (`seed_demo`) after one orchestration tick.

Pages are reached by clicking their names on the admin index, as a person would. The few
addresses a test needs (pages a role has no link to) are all in URLS below.
"""
import pytest

from campaigns.tick import tick
from channels.provider_reports import record_inbound_message
from channels.models import Conversation
from contacts.models import Contact
from omni.tests.browser import INDEX_MODEL_LINKS, expect, index_links, open_from_index

pytestmark = pytest.mark.browser

# Addresses of pages refused to some role, by their names on the admin index (list pages) or
# "add <model>".
URLS = {
    "Audit entries": "/admin/omni/auditentry/",
    "Templates": "/admin/message_templates/template/",
    "Journeys": "/admin/campaigns/journey/",
    "add suppression": "/admin/compliance/suppression/add/",
    "add journey": "/admin/campaigns/journey/add/",
    "add contact": "/admin/contacts/contact/add/",
}


@pytest.fixture
def demo_traffic(demo_logins, eager_celery):
    """The demo data after one tick (welcome emails sent through the sandbox), plus Bob's SMS
    reply, which continues the conversation his demo question opened; returns the demo logins."""
    tick()
    record_inbound_message("sandbox", "demo-reply-1", "sms", from_address="+14155550102",
                           body="Thanks! Can I move to the yearly plan?")
    assert Conversation.objects.filter(contact=Contact.objects.get(external_id="demo-bob"), channel="sms").exists()
    return demo_logins


def status_at(page, url: str) -> int:
    return page.goto(url).status


def assert_refused(page, screenshot, name: str) -> None:
    """The page named `name` in URLS answers 403, and a list page has no link on the index."""
    if not name.startswith("add "):
        assert name not in index_links(page)
    assert status_at(page, URLS[name]) == 403
    screenshot(f"refused {name}")


def test_a_marketer_works_on_audiences_templates_journeys_and_campaigns_but_not_on_compliance(
        demo_traffic, page, log_in, screenshot):
    # given
    log_in("marketer", demo_traffic["marketer"])
    screenshot("index")

    # then: the marketer's pages, each with its heading and the demo rows
    for name, heading, row in [
        ("Contacts", "Select contact to change", "Alice Archer"),
        ("Segments", "Select segment to change", "Demo trial contacts"),
        ("Templates", "Select template to change", "welcome-email"),
        ("Journeys", "Select journey to change", "Welcome"),
        ("Campaigns", "Select campaign to change", "Spring offer (demo)"),
    ]:
        open_from_index(page, name)
        expect(page.locator("h1")).to_have_text(heading)
        expect(page.locator("#result_list")).to_contain_text(row)
        screenshot(name)

    # and the compliance pages are closed to them
    assert "Suppressions" not in index_links(page)
    assert_refused(page, screenshot, "Audit entries")
    assert_refused(page, screenshot, "add suppression")


def test_a_support_agent_reads_contacts_conversations_and_deliveries_but_changes_no_templates_or_journeys(
        demo_traffic, page, log_in, screenshot):
    # given
    log_in("support", demo_traffic["support"])
    screenshot("index")

    # then: what they read to help a contact, with the demo traffic in it
    for name, heading, row in [
        ("Contacts", "Select contact to view", "Bob Baker"),
        ("Conversations", "Select conversation to change", "Bob Baker"),
        ("Inbound messages", "Select inbound message to view", "Thanks! Can I move to the yearly plan?"),
        # (Bob's welcome journey waits while his conversation is open: the demo's on_reply pauses it)
        ("Messages", "Select message to view", "Alice Archer"),
        ("Deliveries", "Select delivery to view", "dave@example.com"),
    ]:
        open_from_index(page, name)
        expect(page.locator("h1")).to_have_text(heading)
        expect(page.locator("#result_list")).to_contain_text(row)
        screenshot(name)

    # and contacts are read-only to them; templates, journeys and the audit log are closed
    for refused in ("add contact", "Templates", "Journeys", "Audit entries"):
        assert_refused(page, screenshot, refused)


def test_compliance_reads_consent_keeps_suppressions_and_exports_the_audit_log_but_cannot_edit_journeys(
        demo_traffic, page, log_in, screenshot):
    # given
    log_in("compliance", demo_traffic["compliance"])
    screenshot("index")

    # then: consent and its history, suppressions (which they may add), the audit log
    for name, heading, row in [
        ("Consents", "Select consent to view", "Erin Evans"),
        ("Consent changes", "Select consent change to view", "seed_demo"),
        ("Suppressions", "Select suppression to change", None),
        ("Audit entries", "Select audit entry to view", "consent.changed"),
    ]:
        open_from_index(page, name)
        expect(page.locator("h1")).to_have_text(heading)
        if row:
            expect(page.locator("#result_list")).to_contain_text(row)
        screenshot(name)
    open_from_index(page, "Suppressions")
    expect(page.locator(".object-tools").get_by_role("link", name="Add suppression")).to_be_visible()

    # when they export the audit log with its button
    open_from_index(page, "Audit entries")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    csv_path = download.path()

    # then they get a CSV of it, and the export itself is audited
    header, *rows = open(csv_path, encoding="utf-8").read().splitlines()
    assert "action" in header
    assert any("consent.changed" in row for row in rows)
    page.reload()
    expect(page.locator("#result_list")).to_contain_text("audit.exported")
    screenshot("audit log after export")

    # and the journey is theirs to read, not to change
    open_from_index(page, "Journeys")
    assert page.locator(".object-tools").get_by_role("link", name="Add journey").count() == 0
    with page.expect_navigation():
        page.locator("#result_list").get_by_role("link", name="Welcome", exact=True).click()
    expect(page.locator("h1")).to_have_text("View journey")
    assert page.locator("input[type=submit][name=_save]").count() == 0
    screenshot("journey read-only")
    assert_refused(page, screenshot, "add journey")


def test_a_superuser_opens_every_page_on_the_admin_index(demo_traffic, page, log_in, screenshot):
    # given
    log_in("admin", demo_traffic["admin"])
    screenshot("index")
    links = page.locator(INDEX_MODEL_LINKS)
    pages = dict(zip(links.all_inner_texts(), [link.get_attribute("href") for link in links.all()]))

    # then every model the index lists opens, with a heading, the audit log included
    assert {"Contacts", "Templates", "Journeys", "Conversations", "Consents", "Audit entries",
            "Suppressions"} <= set(pages)
    assert URLS["Audit entries"] in pages.values()
    for name, href in pages.items():
        assert status_at(page, href) == 200, name
        expect(page.locator("h1")).to_contain_text("Select")
        screenshot(name)
    open_from_index(page, "Audit entries")
    expect(page.get_by_role("link", name="Export CSV")).to_be_visible()

