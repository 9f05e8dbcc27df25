"""A marketer in a real browser: declares that the contacts' `score` attribute is a number,
builds a segment of high scorers with the form (never JSON) while its count changes under it,
and makes a draft journey start for contacts entering that segment. Demo data, with scores."""
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Enrollment, Journey, JourneyStatus, JourneyStep, StepKind, TriggerType
from campaigns.tick import tick
from contacts.models import AttributeDefinition, Contact, Segment
from omni.choices import Channel, Purpose
from omni.tests.browser import expect, open_from_index
from templates.models import Template

from .conftest import make_journey

pytestmark = pytest.mark.browser

SCORES = {"demo-alice": 80, "demo-bob": 20, "demo-carol": 95, "demo-dave": 40}


@pytest.fixture
def scored_demo(demo_logins):
    """The demo contacts with a `score` attribute (Erin has none), and a draft journey to start."""
    for external_id, score in SCORES.items():
        contact = Contact.objects.get(external_id=external_id)
        contact.attributes = {**contact.attributes, "score": score}
        contact.save(update_fields=["attributes"])
    journey = make_journey(name="High scorers", slug="high-scorers", trigger_type=TriggerType.EVENT,
                           trigger_event="not-yet-chosen")
    JourneyStep.objects.create(journey=journey, key="thanks", position=1, kind=StepKind.SEND,
                               template=Template.objects.get(key="welcome-email"), purpose=Purpose.MARKETING,
                               channel_plan=[{"channel": Channel.EMAIL}])
    return demo_logins


def segment_count(page):
    return page.locator(".segment-live-count .segment-count")


def test_a_marketer_types_an_attribute_builds_a_segment_and_starts_a_journey_with_it(
        scored_demo, eager_celery, page, log_in, screenshot):
    log_in("marketer", scored_demo["marketer"])

    # when the marketer declares score as a number
    open_from_index(page, "Attribute definitions")
    with page.expect_navigation():
        page.get_by_role("link", name="Add attribute definition").click()
    page.locator("input[name=name]").fill("score")
    page.locator("select[name=data_type]").select_option(label="Number")
    with page.expect_navigation():
        page.locator("input[name=_save]").click()
    expect(page.locator(".messagelist")).to_contain_text("score")
    assert AttributeDefinition.objects.get(name="score").data_type == "number"

    # and starts a segment: with no filter yet, everyone counts
    open_from_index(page, "Segments")
    with page.expect_navigation():
        page.get_by_role("link", name="Add segment").click()
    page.locator("input[name=name]").fill("High scorers")
    expect(segment_count(page)).to_contain_text("6 contacts match")  # five customers and Tess Test

    # when they add "score at least 50" with the form
    page.get_by_label("add a filter").select_option(label="Attribute")
    key = page.locator(".segment-filter[data-kind=attribute] input[aria-label=attribute]")
    key.fill("score")
    key.press("Tab")
    filter_row = page.locator(".segment-filter[data-kind=attribute]")
    expect(filter_row).to_contain_text("(number)")
    filter_row.get_by_label("operator").select_option(label="≥")
    filter_row.get_by_label("value").fill("50")

    # then the count under the form follows, with the matching contacts as examples
    expect(segment_count(page)).to_contain_text("2 contacts match")
    expect(page.locator(".segment-live-count")).to_contain_text("Alice")
    expect(page.locator(".segment-live-count")).to_contain_text("Carol")
    screenshot("segment with its live count")

    # when they save it
    with page.expect_navigation():
        page.locator("input[name=_save]").click()
    expect(page.locator(".messagelist")).to_contain_text("High scorers")
    segment = Segment.objects.get(name="High scorers")
    assert segment.definition["filters"][0] == {"kind": "attribute", "attribute": "score", "operator": "at_least",
                                                "value": 50}

    # and make the draft journey start for contacts entering it, then activate it
    open_from_index(page, "Journeys")
    with page.expect_navigation():
        page.locator("#result_list").get_by_role("link", name="High scorers", exact=True).click()
    page.locator("select[name=trigger_type]").select_option(label="Entering a segment")
    page.locator("#id_trigger_segment + .select2 .select2-selection").click()
    page.locator(".select2-search__field").fill("High")
    page.locator(".select2-results__option", has_text="High scorers").click()
    with page.expect_navigation():
        page.locator("input[name=_save]").click()
    open_from_index(page, "Journeys")
    page.locator("#result_list tr", has_text="High scorers").locator("input.action-select").check()
    page.locator("select[name=action]").select_option(label="Activate")
    with page.expect_navigation():
        page.locator("button[name=index]").click()
    screenshot("journey activated")
    journey = Journey.objects.get(slug="high-scorers")
    assert (journey.status, journey.live_version.trigger_type, journey.live_version.trigger_segment_id) == (
        JourneyStatus.ACTIVE, TriggerType.SEGMENT_ENTRY, segment.pk)

    # then the first look at the segment takes those already in it as its members, enrolling nobody,
    now = timezone.now()
    tick(now)
    assert not Enrollment.objects.filter(journey=journey).exists()
    # and Dave, whose score rises past 50, enters it and the journey at the next look
    dave = Contact.objects.get(external_id="demo-dave")
    dave.attributes = {**dave.attributes, "score": 70}
    dave.save(update_fields=["attributes"])
    tick(now + timedelta(seconds=segment.refresh_seconds + 1))
    assert list(Enrollment.objects.filter(journey=journey).values_list("contact__external_id", flat=True)) == [
        "demo-dave"]
