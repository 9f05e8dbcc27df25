"""A marketer changes a running journey in a real browser: the edit stays a draft until they
publish it, the contacts in the journey stay on their version until moved. Demo data after one
tick (four contacts in version 1 of the Welcome journey: Carol activated, which is its goal)."""
import pytest

from campaigns.tick import tick
from campaigns.models import Enrollment, Journey
from omni.tests.browser import expect, open_from_index

pytestmark = pytest.mark.browser


def run_journey_action(page, label: str) -> None:
    open_from_index(page, "Journeys")
    page.locator("#result_list tr", has_text="Welcome").locator("input.action-select").check()
    page.locator("select[name=action]").select_option(label=label)
    with page.expect_navigation():
        page.locator("button[name=index]").click()


def test_a_marketer_publishes_an_edit_and_moves_the_contacts_to_it(demo_logins, eager_celery, page, log_in,
                                                                   screenshot):
    # given the demo contacts waiting on version 1
    tick()
    log_in("marketer", demo_logins["marketer"])

    # when the marketer makes the SMS step urgent in the journey's builder
    open_from_index(page, "Journeys")
    with page.expect_navigation():
        page.locator("#result_list").get_by_role("link", name="Welcome", exact=True).click()
    expect(page.get_by_role("group", name="Versions", exact=True)).to_contain_text(
        "New enrollments start on version 1. The draft below is the same as this version.")
    with page.expect_navigation():
        page.get_by_role("link", name="Edit welcome-sms", exact=True).click()
    page.locator("select[name=urgency]").select_option("high")
    with page.expect_navigation():
        page.get_by_role("button", name="Save step").click()
    expect(page.locator(".messagelist")).to_contain_text("Step 'welcome-sms' saved.")

    # then it is a draft change only
    expect(page.get_by_role("group", name="Versions", exact=True)).to_contain_text("The draft below has unpublished changes.")
    screenshot("draft changed")
    assert Journey.objects.get(slug="welcome").live_version.number == 1

    # when they publish it, then move the contacts
    run_journey_action(page, "Publish changes")
    expect(page.locator(".messagelist")).to_contain_text(
        "Welcome: version 2 published; new enrollments start on it. 4 contact(s) in the journey stay on their "
        "version until you move them")
    run_journey_action(page, "Move contacts to the latest version")
    expect(page.locator(".messagelist")).to_contain_text("Welcome: 4 contact(s) moved to version 2.")
    screenshot("contacts moved")

    # then the journey's page lists both versions in words, everyone on version 2
    with page.expect_navigation():
        page.locator("#result_list").get_by_role("link", name="Welcome", exact=True).click()
    versions = page.get_by_role("group", name="Versions", exact=True)
    expect(versions).to_contain_text("New enrollments start on version 2.")
    expect(page.locator("body")).to_contain_text("welcome-sms: send welcome-sms v1 by sms, high urgency")
    screenshot("journey with two versions")
    assert set(Enrollment.objects.filter(journey__slug="welcome", state__in=["active", "paused"])
               .values_list("journey_version__number", flat=True)) == {2}
