"""Approval in a real browser, with OMNI_JOURNEY_APPROVAL_REQUIRED on as in production: a marketer's
journey with a marketing email is refused activation until approved; the marketer requests
approval, the approver logs in and approves it, and the marketer activates it. Demo data."""
import pytest
from django.contrib.auth import get_user_model

from campaigns.models import Journey, JourneyStatus, JourneyStep, StepKind
from omni.choices import Channel
from omni.tests.browser import expect, open_from_index
from templates.models import Template

from .conftest import make_journey

pytestmark = pytest.mark.browser


@pytest.fixture
def newsletter(demo_logins, journey_approval_required):
    """A draft journey of the demo marketer's that sends a marketing email (its template's purpose)."""
    journey = make_journey(name="Spring newsletter", slug="spring-newsletter", trigger_event="subscribed",
                           owner=get_user_model().objects.get(username="marketer"),
                           objective="Tell subscribers about the spring range.")
    JourneyStep.objects.create(journey=journey, key="newsletter", position=1, kind=StepKind.SEND,
                               template=Template.objects.get(key="welcome-email"),
                               channel_plan=[{"channel": Channel.EMAIL}])
    return journey


def open_journey(page, name: str) -> None:
    open_from_index(page, "Journeys")
    with page.expect_navigation():
        page.locator("#result_list").get_by_role("link", name=name, exact=True).click()


def activate(page, name: str) -> None:
    open_from_index(page, "Journeys")
    page.locator("#result_list tr", has_text=name).locator("input.action-select").check()
    page.locator("select[name=action]").select_option(label="Activate")
    with page.expect_navigation():
        page.locator("button[name=index]").click()


def switch_user(page, log_in, username: str, password: str) -> None:
    page.context.clear_cookies()
    log_in(username, password)


def test_a_marketer_requests_approval_an_approver_approves_and_the_marketer_activates(
        newsletter, demo_logins, page, log_in, screenshot):
    approval_box = page.locator("#journey-approval")

    # given the marketer on their journey's page: approval is needed, and activation is refused
    log_in("marketer", demo_logins["marketer"])
    open_journey(page, "Spring newsletter")
    expect(approval_box).to_contain_text("Needed before it can be activated")
    expect(page.locator("#request-approval")).to_be_visible()
    expect(page.locator("#approve-journey")).to_have_count(0)
    activate(page, "Spring newsletter")
    expect(page.locator(".messagelist")).to_contain_text("Spring newsletter was not activated")
    expect(page.locator(".messagelist")).to_contain_text("needs approval before it runs")
    screenshot("activation refused without approval")

    # when the marketer requests approval
    open_journey(page, "Spring newsletter")
    with page.expect_navigation():
        page.locator("#request-approval").click()

    # then the page says who asked, and the change log records it
    expect(page.locator(".messagelist")).to_contain_text("Approval requested")
    expect(approval_box).to_contain_text("Approval requested by marketer")
    expect(page.locator("#journey-change-log")).to_contain_text("requested approval of the draft")
    screenshot("approval requested")

    # when the approver logs in and approves the draft they see
    switch_user(page, log_in, "approver", demo_logins["approver"])
    open_journey(page, "Spring newsletter")
    expect(page.locator("#request-approval")).to_have_count(0)
    screenshot("the approver reviews the journey")
    with page.expect_navigation():
        page.locator("#approve-journey").click()

    # then it is approved, for this draft, by them
    expect(page.locator(".messagelist")).to_contain_text("Approved: this draft may now be activated")
    expect(approval_box).to_contain_text("Approved by approver")
    expect(page.locator("#journey-change-log")).to_contain_text("approved the draft")
    screenshot("approved")

    # when the marketer comes back and activates it
    switch_user(page, log_in, "marketer", demo_logins["marketer"])
    activate(page, "Spring newsletter")

    # then it runs, and its page's log tells the story
    expect(page.locator(".messagelist")).to_contain_text("Spring newsletter activated.")
    newsletter.refresh_from_db()
    assert newsletter.status == JourneyStatus.ACTIVE
    open_journey(page, "Spring newsletter")
    expect(page.locator("#journey-change-log")).to_contain_text("activated the journey (version 1)")
    screenshot("activated, with its change log")
    assert Journey.objects.get(pk=newsletter.pk).approved_by.username == "approver"
