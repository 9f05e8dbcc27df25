"""A support agent reads how support is doing in a real browser: from the sidebar to the week's
tables, then an earlier period with nothing in it."""
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from channels.models import ServiceLevel
from contacts.models import Contact
from omni.tests.browser import expect
from omni.tests.test_support_figures import conversation

pytestmark = pytest.mark.browser


def test_a_support_agent_reads_the_weeks_figures_and_an_empty_period(demo_logins, page, log_in, screenshot):
    # given a week with an SMS conversation answered in 12 minutes and closed by the support agent
    support = get_user_model().objects.get(username="support")
    ServiceLevel.objects.get_or_create(channel="sms", defaults={"first_response_minutes": 15})
    opened = timezone.now() - timedelta(days=1)
    conversation(Contact.objects.create(external_id="figures-1"), "sms", opened, agent=support,
                 first_response=opened + timedelta(minutes=12), closed=opened + timedelta(hours=3), satisfaction=5)
    log_in("support", demo_logins["support"])

    # when they open the figures from the sidebar
    page.goto("/admin/")
    with page.expect_navigation():
        page.get_by_role("link", name="Support figures").click()

    # then the last seven days show per channel and per agent
    expect(page.locator("h1")).to_contain_text("How support is doing")
    expect(page.locator("#figures-by-channel")).to_contain_text("SMS")
    sms = page.locator('#figures-by-channel tr[data-key="sms"]')
    expect(sms).to_contain_text("12 min")
    expect(sms).to_contain_text("90%: 12 min")
    expect(page.locator("#figures-by-agent")).to_contain_text("1 of 1")
    screenshot("figures of the last seven days")

    # and a period long before says there is nothing in it
    page.get_by_label("From").fill("2020-01-01")
    page.get_by_label("To").fill("2020-01-31")
    with page.expect_navigation():
        page.get_by_role("button", name="Show").click()
    expect(page.locator("#figures-empty")).to_be_visible()
    screenshot("an empty period")
