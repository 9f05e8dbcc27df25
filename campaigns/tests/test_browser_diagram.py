"""A marketer watches the Welcome journey's diagram in a real browser: the live version is drawn
with every step, and when the tick moves the demo contacts on, the counts on the open page
change without a reload. Demo data (contacts who signed up, not yet enrolled)."""
import pytest

from campaigns.models import Journey
from campaigns.step_counts import contacts_at_steps
from campaigns.tick import tick
from omni.tests.browser import expect, open_from_index

pytestmark = pytest.mark.browser

# The page asks for fresh counts every few seconds (journey_diagram.REFRESH_SECONDS); a little more.
REFRESHED_WITHIN_MS = 25_000


def diagram_picture(page, full_page_path) -> None:
    """The diagram section alone, beside the full page's picture (which is too tall to read it)."""
    page.locator("#journey-diagram").screenshot(path=str(full_page_path).replace(".png", "-section.png"))


def test_the_diagram_shows_the_live_version_and_its_counts_move_after_a_tick_without_a_reload(
        demo_logins, eager_celery, page, log_in, screenshot):
    journey = Journey.objects.get(slug="welcome")
    version = journey.live_version
    keys = [step["key"] for step in version.steps]
    before = contacts_at_steps([version.pk])[version.pk]
    log_in("marketer", demo_logins["marketer"])

    # when the marketer opens the journey
    open_from_index(page, "Journeys")
    with page.expect_navigation():
        page.locator("#result_list").get_by_role("link", name="Welcome", exact=True).click()

    # then its live version is drawn, every step a node with its counts
    drawing = page.locator(f"#journey-{journey.pk}-v{version.number}")
    expect(drawing).to_be_visible()
    expect(drawing.locator("g.journey-node")).to_have_count(len(keys))
    for key in keys:
        expect(drawing.locator(f'[data-at-step="{key}"]')).to_have_text(str(before.get(key, 0)))
    page.evaluate("window.stillTheSamePage = true")
    diagram_picture(page, screenshot("diagram before the tick"))

    # when the tick enrolls the demo contacts and runs their first steps
    tick()
    after = contacts_at_steps([version.pk])[version.pk]
    moved = [key for key in keys if after.get(key, 0) != before.get(key, 0)]
    assert moved, (before, after)

    # then the open page shows the new counts, without having been reloaded
    for key in moved:
        expect(drawing.locator(f'[data-at-step="{key}"]')).to_have_text(str(after[key]), timeout=REFRESHED_WITHIN_MS)
    expect(drawing.locator(f'[data-passed="{keys[0]}"]')).not_to_have_text("0")
    assert page.evaluate("window.stillTheSamePage") is True
    diagram_picture(page, screenshot("diagram after the tick"))
