"""Each role's workspace in a real browser: its sidebar groups and its home; Settings absent for
everyone but administrators, and its addresses answering 403 inside the admin's frame; every
list page the role opens fitting a 1366 px wide screen; the header search taking a support
agent to a contact; and no request leaving the live server (the theme's files are served by
Omni itself). The data is the demo data (`seed_demo`) after one orchestration tick."""
import pytest

from campaigns.tick import tick
from contacts.models import Contact
from omni.tests.browser import INDEX_MODEL_LINKS, expect
from omni.web.views import contact_page_url

pytestmark = pytest.mark.browser

SETTINGS_URLS = ["/admin/omni/apikey/", "/admin/django_celery_beat/periodictask/", "/admin/auth/user/",
                 "/admin/auth/group/"]
SCREEN_WIDTH = 1366


@pytest.fixture
def demo_after_a_tick(demo_logins, eager_celery):
    tick()
    return demo_logins


@pytest.fixture
def requests_seen(page, live_server):
    """Every URL the browser asks for, from before the first page loads."""
    seen = []
    page.on("request", lambda request: seen.append(request.url))
    page.set_viewport_size({"width": SCREEN_WIDTH, "height": 900})
    return seen


def sidebar_groups(page) -> list[str]:
    return [text.strip() for text in page.locator("#nav-sidebar-apps h2").all_inner_texts() if text.strip()]


def assert_every_list_page_fits(page, screenshot) -> list[str]:
    links = page.locator(INDEX_MODEL_LINKS)
    pages = dict(zip([text.strip() for text in links.all_inner_texts()], [link.get_attribute("href") for link in links.all()]))
    for name, href in pages.items():
        assert page.goto(href).status == 200, name
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= SCREEN_WIDTH, f"{name} is {width} px wide"
    screenshot("last list page")
    return list(pages)


def assert_nothing_left_the_server(seen, live_server):
    outside = [url for url in seen if not url.startswith((live_server.url, "data:", "blob:", "about:"))]
    assert outside == []


@pytest.mark.parametrize("username, groups, home_panels", [
    ("marketer", ["Marketing", "Support", "Compliance", "Activity"], ["Marketing"]),
    ("support", ["Marketing", "Support", "Compliance", "Activity"], ["Support"]),
    ("compliance", ["Marketing", "Support", "Compliance", "Activity"], ["Compliance"]),
])
def test_a_role_sees_its_groups_and_home_but_no_settings(demo_after_a_tick, page, log_in, screenshot, requests_seen,
                                                         live_server, username, groups, home_panels):
    # given
    log_in(username, demo_after_a_tick[username])

    # then: the sidebar's groups and the home's panels for this role
    assert sidebar_groups(page) == groups
    expect(page.locator("#content-main section.home-panel h2")).to_have_text(home_panels)
    screenshot("home")

    # and Settings is nowhere, its addresses refused inside the admin's frame with a way home
    for url in SETTINGS_URLS:
        assert page.goto(url).status == 403, url
        expect(page.locator("#nav-sidebar-apps")).to_be_visible()
        expect(page.get_by_role("link", name="Back to your home")).to_be_visible()
    screenshot("settings refused")

    # and every list page it opens fits the screen
    assert_every_list_page_fits(page, screenshot)
    assert_nothing_left_the_server(requests_seen, live_server)


def test_an_administrator_sees_every_group_and_panel_and_opens_the_settings(
        demo_after_a_tick, page, log_in, screenshot, requests_seen, live_server):
    log_in("admin", demo_after_a_tick["admin"])

    assert sidebar_groups(page) == ["Marketing", "Support", "Compliance", "Activity", "Settings"]
    expect(page.locator("#content-main section.home-panel h2")).to_have_text(
        ["Marketing", "Support", "Compliance", "Administrators"])
    screenshot("home")
    for url in SETTINGS_URLS:
        assert page.goto(url).status == 200, url
    assert {"API keys", "Periodic tasks", "Users", "Groups"} <= set(assert_every_list_page_fits(page, screenshot))
    assert_nothing_left_the_server(requests_seen, live_server)


def test_a_support_agent_finds_a_contact_from_the_header_search(demo_after_a_tick, page, log_in, screenshot,
                                                               requests_seen, live_server):
    # given
    log_in("support", demo_after_a_tick["support"])
    bob = Contact.objects.get(phone="+14155550102")

    # when they type the number as people write it, on any page
    page.goto("/admin/channels/conversation/")
    page.get_by_label("Find a contact").fill("(415) 555-0102")
    with page.expect_navigation():
        page.get_by_label("Find a contact").press("Enter")

    # then they land on that contact
    assert page.url == live_server.url + contact_page_url(bob.pk)
    screenshot("found")

    # and a number nobody has says what it was read as
    page.get_by_label("Find a contact").fill("4155550199")
    with page.expect_navigation():
        page.get_by_label("Find a contact").press("Enter")
    expect(page.locator("#content-main")).to_contain_text("read as +14155550199")
    screenshot("nobody found")
    assert_nothing_left_the_server(requests_seen, live_server)
