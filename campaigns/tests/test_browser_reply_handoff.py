"""A marketer in a real browser: sets what a reply does to a journey from a select, and pauses
and resumes one contact's enrollment with a reason typed in the action bar. Demo data after one
tick (four contacts in version 1 of the Welcome journey: Carol activated, which is its goal)."""
import pytest
from django.contrib.auth.models import Permission, User

from campaigns.models import Enrollment, EnrollmentState, Journey, OnReply
from campaigns.tick import tick
from omni import audit
from omni.tests.browser import expect, open_from_index

pytestmark = pytest.mark.browser


def run_enrollment_action(page, contact_name: str, label: str, reason: str = "") -> None:
    """Run an action on the contact's Welcome enrollment (the demo has them in other journeys too)."""
    row = page.locator("#result_list tr", has_text=contact_name).filter(has_text="Welcome").first
    row.locator("input.action-select").check()
    page.locator("select[name=action]").select_option(label=label)
    page.locator("input[name=reason]").fill(reason)
    with page.expect_navigation():
        page.locator("button[name=index]").click()


def test_a_marketer_sets_on_reply_and_pauses_and_resumes_one_enrollment(demo_logins, eager_celery, page, log_in,
                                                                        screenshot):
    # given the demo contacts waiting, and a marketer allowed to pause enrollments
    tick()
    User.objects.get(username="marketer").user_permissions.add(Permission.objects.get(codename="pause_enrollment"))
    log_in("marketer", demo_logins["marketer"])

    # when they choose, on the journey's page, that a reply ends it (the demo's pauses it until
    # the conversation closes)
    open_from_index(page, "Journeys")
    with page.expect_navigation():
        page.locator("#result_list").get_by_role("link", name="Welcome", exact=True).click()
    replies = page.get_by_role("group", name="Replies", exact=True)
    expect(replies).to_contain_text("Enrollments paused by staff are never resumed by a closing.")
    replies.locator("select[name=on_reply]").select_option(label=OnReply.EXIT.label)
    screenshot("on reply chosen")
    with page.expect_navigation():
        page.locator("input[name=_continue]").click()

    # then it is a draft change, to publish like any other
    expect(page.get_by_role("group", name="Versions", exact=True)).to_contain_text(
        "The draft below has unpublished changes.")
    assert Journey.objects.get(slug="welcome").on_reply == OnReply.EXIT

    # when they pause one contact's enrollment with a reason
    open_from_index(page, "Enrollments")
    enrollment = (Enrollment.objects.filter(state=EnrollmentState.ACTIVE, journey__slug="welcome")
                  .select_related("contact").first())
    name = str(enrollment.contact)
    run_enrollment_action(page, name, "Pause selected enrollments (type the reason)", "Asked us to wait a week")

    # then the list says so, and shows who paused it and why
    expect(page.locator(".messagelist")).to_contain_text("1 enrollment(s) paused")
    expect(page.locator("#result_list tr", has_text=name).filter(has_text="Welcome").first).to_contain_text(
        "by marketer: Asked us to wait a week")
    screenshot("enrollment paused")
    enrollment.refresh_from_db()
    assert enrollment.state == EnrollmentState.PAUSED

    # when they resume it
    run_enrollment_action(page, name, "Resume selected enrollments")

    # then it runs again, both audited
    expect(page.locator(".messagelist")).to_contain_text("1 enrollment(s) resumed")
    screenshot("enrollment resumed")
    enrollment.refresh_from_db()
    assert enrollment.state == EnrollmentState.ACTIVE
    assert set(audit.for_object(enrollment).filter(actor_label="marketer").values_list("action", flat=True)) == {
        "journey.enrollment_paused", "journey.enrollment_resumed"}
