"""A marketer in a real browser tries a journey before it goes live: puts it into testing, enrols
the demo's test contact (Tess Test) found by search, skips her wait and sees her move on to the
next step, highlighted on the diagram, whose counts move as she does without a reload. Demo data."""
import pytest
from django.utils import timezone

from campaigns.tests.conftest import make_journey
from campaigns.models import Enrollment, JourneyStatus, JourneyStep, StepKind
from campaigns.tick import tick
from channels.models import Message
from contacts.models import Contact
from omni.choices import Channel, Purpose
from omni.tests.browser import expect, open_from_index
from templates.models import Template

pytestmark = pytest.mark.browser


@pytest.fixture
def draft_journey(demo_logins):
    """A draft: the welcome email, a day's wait, then an exit; started by `trial_started`."""
    journey = make_journey(name="Trial welcome", slug="trial-welcome", trigger_event="trial_started")
    JourneyStep.objects.create(journey=journey, key="hello", position=1, kind=StepKind.SEND,
                               template=Template.objects.get(key="welcome-email"), purpose=Purpose.MARKETING,
                               channel_plan=[{"channel": Channel.EMAIL}])
    JourneyStep.objects.create(journey=journey, key="a-day", position=2, kind=StepKind.WAIT, config={"seconds": 86400})
    JourneyStep.objects.create(journey=journey, key="bye", position=3, kind=StepKind.EXIT)
    return journey


def test_a_marketer_tests_a_journey_with_the_test_contact_and_skips_her_wait(
        demo_logins, draft_journey, eager_celery, page, log_in, screenshot):
    tess = Contact.objects.get(external_id="demo-tess")
    assert tess.is_test
    log_in("marketer", demo_logins["marketer"])

    # when the marketer opens the draft and puts it into testing
    open_from_index(page, "Journeys")
    with page.expect_navigation():
        page.locator("#result_list").get_by_role("link", name="Trial welcome", exact=True).click()
    section = page.locator("#journey-testing")
    with page.expect_navigation():
        section.get_by_role("button", name="Test with test contacts").click()
    expect(page.locator(".messagelist")).to_contain_text("is being tested on version 1")
    draft_journey.refresh_from_db()
    assert draft_journey.status == JourneyStatus.TESTING

    # and finds Tess by search (only test contacts are offered) and enrols her
    section = page.locator("#journey-testing")
    section.get_by_label("Name, email or phone").fill("tess")
    with page.expect_navigation():
        section.get_by_role("button", name="Find test contacts").click()
    found = page.locator("#journey-testing .test-contact-found")
    expect(found).to_have_count(1)
    screenshot("test contact found")
    with page.expect_navigation():
        found.get_by_role("button", name="Enrol Tess Test").click()
    expect(page.locator(".messagelist")).to_contain_text("Tess Test enrolled")

    # then the tick sends her the welcome email, a test, and she waits a day
    tick(timezone.now())
    message = Message.objects.get(contact=tess)
    assert message.is_test
    page.reload()
    row = page.locator("#test-enrollments .test-enrollment")
    expect(row).to_have_attribute("data-step", "bye")
    expect(row).to_contain_text("bye: exit")
    screenshot("test contact waiting")

    # and the diagram shows where she stands
    with page.expect_navigation():
        row.get_by_role("link", name="Show on the diagram").click()
    drawing = page.locator(f"#journey-{draft_journey.pk}-v1")
    expect(drawing.locator('g.journey-node[data-step="bye"]')).to_contain_text("the contact is here")
    expect(drawing.locator('[data-at-step="bye"]')).to_have_text("1")
    screenshot("test contact on the diagram")

    # when the marketer skips the wait
    row = page.locator("#test-enrollments .test-enrollment")
    with page.expect_navigation():
        row.get_by_role("button", name="Skip the wait").click()
    expect(page.locator(".messagelist")).to_contain_text("wait at step bye skipped")

    # then at the next tick she moves on, and the open page's counts follow without a reload
    drawing = page.locator(f"#journey-{draft_journey.pk}-v1")
    expect(drawing.locator('[data-at-step="bye"]')).to_have_text("1")
    tick(timezone.now())
    expect(drawing.locator('[data-at-step="bye"]')).to_have_text("0", timeout=25_000)
    expect(drawing.locator('[data-passed="bye"]')).to_have_text("1", timeout=25_000)
    screenshot("the counts moved on the diagram")
    page.reload()
    expect(page.locator("#no-test-enrollments")).to_be_visible()
    enrollment = Enrollment.objects.get(journey=draft_journey, contact=tess)
    assert enrollment.state not in ("active", "paused") and enrollment.steps_taken == 3
    screenshot("test contact moved on")
