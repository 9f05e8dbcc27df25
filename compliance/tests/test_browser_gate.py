"""In a real browser, a compliance user adds a quiet-hours rule and a frequency cap in the admin,
then reads the decision that deferred a message: its reason and each rule's result."""
from datetime import timedelta

import pytest
from django.utils import timezone

from channels import routing
from channels.models import Message, MessageSource, MessageStatus
from compliance.models import FrequencyCap, QuietHours
from contacts.models import Contact
from omni.tests.browser import expect, open_from_index

from .browser_steps_replay import confirm_replay

pytestmark = pytest.mark.browser


def test_a_compliance_user_adds_quiet_hours_and_a_cap_then_reads_a_deferred_decision(
        demo_logins, eager_celery, page, log_in, screenshot):
    # given a compliance user on the admin
    log_in("compliance", demo_logins["compliance"])
    now = timezone.now()

    # when they add quiet hours around this hour (UTC, where the contact lives)
    open_from_index(page, "Quiet hours")
    page.locator(".object-tools").get_by_role("link", name="Add quiet hours").click()
    page.get_by_label("Name").fill("Quiet now")
    page.locator("#id_start").fill(f"{(now - timedelta(hours=1)):%H:%M:00}")
    page.locator("#id_end").fill(f"{(now + timedelta(hours=2)):%H:%M:00}")
    page.locator("#id_country").fill("CA")
    page.locator("#id_region").fill("us-fl")
    page.get_by_role("button", name="Save", exact=True).click()
    # a region outside the rule's country is refused, naming the region
    expect(page.locator(".field-region .errorlist")).to_contain_text("Region US-FL is not in the country CA")
    screenshot("quiet hours refused: a region outside the country")
    page.locator("#id_region").fill("")
    page.locator("#id_country").fill("US")
    page.get_by_role("button", name="Save", exact=True).click()
    confirm_replay(page)  # after its policy replay (compliance/replay_admin.py)
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    screenshot("quiet hours added")

    # and a cap of five a day for customers and trials
    open_from_index(page, "Frequency caps")
    page.locator(".object-tools").get_by_role("link", name="Add frequency cap").click()
    page.get_by_label("Name").fill("Five a day")
    page.locator("#id_limit").fill("5")
    page.locator("#id_action").select_option("defer")
    page.get_by_label("Customer", exact=True).check()
    page.get_by_label("Trial", exact=True).check()
    screenshot("frequency cap form")
    page.get_by_role("button", name="Save", exact=True).click()
    confirm_replay(page)
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    screenshot("frequency cap added")

    # then the rules are stored as typed
    rule, cap = QuietHours.objects.get(), FrequencyCap.objects.get()
    assert (rule.country, rule.region, cap.limit, cap.action, sorted(cap.lifecycle_stages)) == (
        "US", "", 5, "defer", ["customer", "trial"])

    # when a message for a customer in the US is routed now
    contact = Contact.objects.create(external_id="fran", first_name="Fran", phone="+13055550100", country="US",
                                     timezone="UTC", lifecycle_stage="customer")
    message, _ = routing.create_message(contact=contact, source=MessageSource.API, purpose="informational",
                                        channel_plan=[{"channel": "sms"}],
                                        content=[{"channel": "sms", "text_body": "Your statement is ready"}])
    routing.dispatch(message, now=now)
    assert Message.objects.get(pk=message.pk).status == MessageStatus.DEFERRED

    # then the compliance user reads the deferred decision, its reason and each rule's result
    open_from_index(page, "Decisions")
    expect(page.locator("#result_list")).to_contain_text("quiet_hours")
    screenshot("decisions")
    with page.expect_navigation():
        page.locator("#result_list tbody tr").first.locator("th a, td a").first.click()
    expect(page.locator("h1")).to_have_text("View decision")
    expect(page.locator(".fieldBox.field-reason")).to_contain_text("quiet_hours")
    results = page.locator("table.rule-results")
    expect(results.locator("tr.rule-quiet_hours")).to_contain_text("defer")
    expect(results.locator("tr.rule-quiet_hours")).to_contain_text(f"#{rule.pk} v1")
    expect(results.locator("tr.rule-frequency_cap")).to_contain_text("pass")
    expect(results.locator("tr.rule-frequency_cap")).to_contain_text("0 of 5 in 86400s")
    expect(results.locator("tr.rule-consent")).to_contain_text("pass")
    expect(page.locator(".field-what_it_read")).to_contain_text("in UTC (from the profile)")
    screenshot("deferred decision with each rule's result")
