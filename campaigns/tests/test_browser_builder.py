"""A marketer in a real browser builds the welcome journey with the builder, never typing JSON:
email now; wait up to 3 days for `activated`, else WhatsApp; then SMS at day 7; the goal
`activated`. Activation is refused naming the broken step (its template was never published);
the marketer follows the problem's link to the step, fixes it, and activates the journey."""
import pytest

from campaigns.models import Journey, JourneyStatus
from omni.tests.browser import expect, open_from_index
from templates.models import Template, TemplateVariant

pytestmark = pytest.mark.browser


@pytest.fixture
def welcome_templates_for_builder(demo_logins):
    """The demo's templates (welcome email, WhatsApp nudge and SMS, all published), and a day-7 SMS
    that was written but never published."""
    # written, never published: a journey cannot send it
    draft = Template.objects.create(key="day-seven-sms", name="Day 7 SMS (draft)", purpose="marketing")
    TemplateVariant.objects.create(template=draft, channel="sms", text_body="Still there? Reply STOP to opt out.")
    return demo_logins


def add_step(page, after_label: str, kind: str):
    with page.expect_navigation():
        page.get_by_role("link", name=after_label, exact=True).click()
    with page.expect_navigation():
        page.get_by_role("link", name=kind, exact=True).click()


def save_step(page):
    with page.expect_navigation():
        page.get_by_role("button", name="Save step").click()
    expect(page.locator(".messagelist")).to_contain_text("Step")


def choose_send(page, template_label: str, channel_label: str):
    page.locator("select[name=template]").select_option(label=template_label)
    page.locator("input[name=plan][value=own]").check()
    page.locator("select[name=channel_1]").select_option(label=channel_label)


def test_a_marketer_builds_the_welcome_journey_without_json_and_fixes_what_activation_refuses(
        welcome_templates_for_builder, page, log_in, screenshot):
    log_in("marketer", welcome_templates_for_builder["marketer"])

    # the journey: on signed_up, goal activated
    open_from_index(page, "Journeys")
    with page.expect_navigation():
        page.get_by_role("link", name="Add journey").click()
    page.locator("input[name=name]").fill("Welcome II")
    page.locator("input[name=trigger_event]").fill("signed_up")
    page.locator("input[name=goal_event]").fill("activated")
    page.locator("textarea[name=objective]").fill("Turn sign-ups into active users.")
    page.locator("select[name=lifecycle_stage]").select_option(label="Trial")
    # only sign-ups from the website, on a paid plan: one condition row shows, "Add a condition" the next
    rows = page.locator(".trigger-condition-row:visible")
    expect(rows).to_have_count(1)
    page.locator("input[name=trigger_conditions-0-property]").fill("source")
    page.locator("select[name=trigger_conditions-0-operator]").select_option("equals")
    page.locator("input[name=trigger_conditions-0-value]").fill("website")
    page.get_by_role("button", name="Add a condition").click()
    expect(rows).to_have_count(2)
    page.locator("input[name=trigger_conditions-1-property]").fill("plan")
    page.locator("select[name=trigger_conditions-1-operator]").select_option("is_set")
    # no JSON box: the only text areas are the description and the objective
    assert page.locator("textarea:not([name=description]):not([name=objective])").count() == 0
    with page.expect_navigation():
        page.locator("input[name=_continue]").click()
    screenshot("the journey saved")
    journey = Journey.objects.get(slug="welcome-ii")
    assert journey.trigger_conditions == [{"property": "source", "operator": "equals", "value": "website"},
                                          {"property": "plan", "operator": "is_set"}]

    # email now
    add_step(page, "Add a first step", "Send a message")
    choose_send(page, "Welcome email", "Email")
    screenshot("send step form")
    save_step(page)

    # wait up to 3 days for activated
    add_step(page, "Add step after send-welcome-email", "Wait for an event or engagement")
    page.locator("input[name=event]").fill("activated")
    page.locator("input[name=timeout_0]").fill("3")
    page.locator("select[name=timeout_1]").select_option("days")
    save_step(page)

    # else WhatsApp
    add_step(page, "Add step on wait-event: otherwise", "Send a message")
    choose_send(page, "Welcome WhatsApp nudge (day 3)", "WhatsApp")
    save_step(page)

    # then SMS at day 7: four more days, and the SMS (with a template that was never published)
    add_step(page, "Add step after send-welcome-whatsapp", "Wait")
    page.locator("input[name=duration_0]").fill("4")
    page.locator("select[name=duration_1]").select_option("days")
    save_step(page)
    add_step(page, "Add step after wait", "Send a message")
    choose_send(page, "Day 7 SMS (draft)", "SMS")
    save_step(page)
    screenshot("the welcome journey in the builder")

    steps = {step.key: step for step in journey.steps.select_related("next_step", "else_step")}
    assert list(journey.steps.order_by("position").values_list("key", flat=True)) == [
        "send-welcome-email", "wait-event", "send-welcome-whatsapp", "wait", "send-day-seven-sms"]
    assert steps["send-welcome-email"].next_step.key == "wait-event"
    assert steps["wait-event"].config == {"event": "activated", "timeout_seconds": 3 * 86400}
    assert steps["wait-event"].ends and steps["wait-event"].else_step.key == "send-welcome-whatsapp"
    assert steps["send-welcome-whatsapp"].next_step.key == "wait"
    assert steps["wait"].config == {"seconds": 4 * 86400} and steps["wait"].next_step.key == "send-day-seven-sms"
    assert steps["send-day-seven-sms"].ends

    # activation is refused, naming the step
    expect(page.locator("#journey-problems")).to_contain_text("send-day-seven-sms")
    open_from_index(page, "Journeys")
    page.locator("#result_list tr", has_text="Welcome II").locator("input.action-select").check()
    page.locator("select[name=action]").select_option(label="Activate")
    with page.expect_navigation():
        page.locator("button[name=index]").click()
    expect(page.locator(".messagelist")).to_contain_text(
        "Welcome II was not activated: Send step 'send-day-seven-sms' uses template 'day-seven-sms', which has no "
        "published version")
    screenshot("activation refused")
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.DRAFT

    # the marketer follows the problem to the step and sends the published welcome SMS instead
    with page.expect_navigation():
        page.locator("#result_list").get_by_role("link", name="Welcome II", exact=True).click()
    with page.expect_navigation():
        page.locator("#journey-problems a", has_text="send-day-seven-sms").click()
    expect(page.locator(".step-flags")).to_contain_text("no published version")
    page.locator("select[name=template]").select_option(label="Welcome SMS (day 7)")
    screenshot("fixing the step")
    save_step(page)
    expect(page.locator("#journey-problems")).to_have_count(0)

    open_from_index(page, "Journeys")
    page.locator("#result_list tr", has_text="Welcome II").locator("input.action-select").check()
    page.locator("select[name=action]").select_option(label="Activate")
    with page.expect_navigation():
        page.locator("button[name=index]").click()
    expect(page.locator(".messagelist")).to_contain_text("Welcome II activated.")
    screenshot("activated")
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.ACTIVE
    assert [step["key"] for step in journey.live_version.steps][-1] == "send-day-seven-sms"
