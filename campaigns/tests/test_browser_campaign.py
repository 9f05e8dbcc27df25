"""A campaign in a real browser, from the demo data: the marketer builds a segment with the form
and a campaign with an A/B test of two variants and a holdout, never typing JSON, and asks for
approval; the approver logs in and approves it; the marketer starts it (in the background) and
watches the progress bar move as the tick sends, without reloading the page. A start whose
worker has not run yet shows on the open page as under way, then as started once it has.
Screenshots at each step."""
import re

import pytest
from django.utils import timezone

from campaigns.campaign_start_requests import STARTED, run_requested_start
from campaigns.models import Campaign, CampaignRecipient, CampaignStatus, RecipientOutcome
from campaigns.tick import tick
from contacts.models import Segment
from omni.tests.browser import expect, open_from_index

pytestmark = pytest.mark.browser

# The start runs as a Celery task and the page checks every few seconds; a loaded machine is slower.
START_TIMEOUT_MS = 30_000


def open_campaign(page, name: str) -> None:
    open_from_index(page, "Campaigns")
    with page.expect_navigation():
        page.locator("#result_list").get_by_role("link", name=name, exact=True).click()


def switch_user(page, log_in, username: str, password: str) -> None:
    page.context.clear_cookies()
    log_in(username, password)


def choose(page, field: str, search: str, option: str) -> None:
    """Pick `option` in an autocomplete (select2) field by typing `search`."""
    page.locator(f"#id_{field} + .select2 .select2-selection").click()
    page.locator(".select2-search__field").fill(search)
    page.locator(".select2-results__option", has_text=option).first.click()


def add_variant(page, row: int, name: str, template: str, weight: str) -> None:
    page.get_by_text("Add another A/B test variant").click()
    page.locator(f"[name=variants-{row}-name]").fill(name)
    page.locator(f"select[name=variants-{row}-template]").select_option(label=template)
    page.locator(f"[name=variants-{row}-weight]").fill(weight)


def test_a_marketer_builds_a_tested_campaign_an_approver_approves_it_and_the_marketer_watches_it_send(
        demo_logins, eager_celery, settings, page, log_in, screenshot):
    settings.OMNI_CAMPAIGN_APPROVAL_MIN_AUDIENCE = 0  # the demo's few customers need approval too
    log_in("marketer", demo_logins["marketer"])

    # when the marketer builds a segment with the form: those who opted in to marketing email
    open_from_index(page, "Segments")
    with page.expect_navigation():
        page.get_by_role("link", name="Add segment").click()
    page.locator("input[name=name]").fill("Spring customers")
    page.get_by_label("add a filter").select_option(label="Consent")
    consent = page.locator(".segment-filter[data-kind=consent]")
    consent.locator("select[aria-label=status]").select_option("opted_in")
    consent.locator("select[aria-label=channel]").select_option("email")
    consent.locator("select[aria-label=purpose]").select_option("marketing")
    expect(page.locator(".segment-live-count .segment-count")).not_to_contain_text("0 contacts match")
    screenshot("the segment")
    with page.expect_navigation():
        page.locator("input[name=_save]").click()
    segment = Segment.objects.get(name="Spring customers")
    assert segment.definition["filters"] == [{"kind": "consent", "status": "opted_in", "channel": "email",
                                              "purpose": "marketing"}]

    # and a campaign to it: email, a 10% holdout, an A/B test of two variants on a fifth of it
    open_from_index(page, "Campaigns")
    with page.expect_navigation():
        page.get_by_role("link", name="Add campaign").click()
    page.locator("input[name=name]").fill("Spring launch")
    choose(page, "template", "welcome", "Welcome email")
    choose(page, "segment", "Spring", "Spring customers")
    page.locator("select[name=purpose]").select_option("marketing")
    page.get_by_label("these channels, in order").check()
    page.locator("select[name=channel_1]").select_option(label="Email")
    page.locator("input[name=holdout_percent]").fill("10")
    page.locator("input[name=test_percent]").fill("50")
    page.locator("input[name=test_period_0]").fill("2")
    page.locator("select[name=test_period_1]").select_option("hours")
    page.locator("select[name=test_metric]").select_option("clicks")
    page.locator("textarea[name=objective]").fill("Bring customers back for the spring range.")
    page.locator("select[name=lifecycle_stage]").select_option(label="Customer")
    page.locator("input[name=goal_event]").fill("purchased")
    page.locator("input[name=goal_window_0]").fill("7")
    page.locator("input[name=max_bounce_rate]").fill("5")
    add_variant(page, 0, "Subject A", "Welcome email", "50")
    add_variant(page, 1, "Subject B", "Welcome email", "50")
    screenshot("the campaign form")
    with page.expect_navigation():
        page.locator("button[name=_continue], input[name=_continue]").first.click()
    expect(page.locator(".messagelist")).to_contain_text("Spring launch")
    campaign = Campaign.objects.get(name="Spring launch")
    assert campaign.channel_plan == [{"channel": "email"}]
    assert (campaign.holdout_percent, campaign.test_percent, campaign.max_bounce_rate) == (10, 50, 0.05)
    assert [v.name for v in campaign.variants.all()] == ["Subject A", "Subject B"]

    # then its page says it needs approval, and the marketer asks for it
    approval = page.locator("#campaign-approval")
    expect(approval).to_contain_text("Needed")
    with page.expect_navigation():
        page.locator("#request-campaign-approval").click()
    expect(page.locator(".messagelist")).to_contain_text("Approval requested")
    expect(approval).to_contain_text("Approval requested by marketer")
    screenshot("approval requested")

    # when the approver logs in and approves the campaign they see
    switch_user(page, log_in, "approver", demo_logins["approver"])
    open_campaign(page, "Spring launch")
    expect(page.locator("#request-campaign-approval")).to_have_count(0)
    expect(page.locator("#campaign-start")).to_have_count(0)  # approvers approve; marketers start
    screenshot("the approver reviews the campaign")
    with page.expect_navigation():
        page.locator("#approve-campaign").click()
    expect(page.locator(".messagelist")).to_contain_text("Approved")
    expect(approval).to_contain_text("Approved by approver")
    expect(page.locator("#campaign-approved-version")).to_be_visible()
    screenshot("approved")
    campaign.refresh_from_db()
    assert campaign.approved_by.username == "approver"

    # when the marketer starts it (the live server runs the start's task: eager_celery)
    switch_user(page, log_in, "marketer", demo_logins["marketer"])
    open_campaign(page, "Spring launch")
    with page.expect_navigation():
        page.locator("#campaign-start").click()
    expect(page.locator(".messagelist")).to_contain_text("Spring launch is starting")
    expect(page.locator("#campaign-progress")).to_have_attribute("data-status", re.compile("^(sending|scheduled)$"),
                                                                 timeout=START_TIMEOUT_MS)
    expect(page.locator("#campaign-start-summary")).to_contain_text("in the audience")
    campaign.refresh_from_db()
    assert campaign.status in (CampaignStatus.SCHEDULED, CampaignStatus.SENDING)
    audience = CampaignRecipient.objects.filter(campaign=campaign).count()
    assert 0 < audience <= segment_size(segment)
    held_out = CampaignRecipient.objects.filter(campaign=campaign, outcome=RecipientOutcome.HOLDOUT).count()
    bar = page.locator("#campaign-progress-bar")
    expect(bar.locator("[data-progress-total]")).to_have_text(str(audience))
    expect(bar.locator("[data-progress-done]")).to_have_text(str(held_out))
    screenshot("started: the progress bar before the tick")

    # then as the tick sends, the open page's bar moves without a reload
    tick(timezone.now())
    sent = CampaignRecipient.objects.filter(campaign=campaign).exclude(outcome=RecipientOutcome.PENDING).count()
    assert sent > held_out
    expect(bar.locator("[data-progress-done]")).to_have_text(str(sent), timeout=20_000)
    expect(bar.locator("[data-progress-updated]")).to_contain_text("Updated")
    expect(bar.get_by_role("progressbar")).to_have_attribute("aria-valuenow", str(sent))
    screenshot("the progress bar moved")


def test_the_open_page_follows_a_start_in_the_background_until_it_has_started(demo_logins, page, log_in,
                                                                              screenshot):
    # given the demo's draft campaign, and no worker taking the start yet (no eager_celery)
    log_in("marketer", demo_logins["marketer"])
    open_campaign(page, "Spring offer (demo)")

    # when the marketer presses Start
    with page.expect_navigation():
        page.locator("#campaign-start").click()

    # then the page answers at once: starting, asked for by whom, a bar with no figures yet
    expect(page.locator(".messagelist")).to_contain_text(
        "Spring offer (demo) is starting: the audience snapshot is being taken; this page shows when it has started.")
    expect(page.locator("#campaign-progress")).to_have_attribute("data-status", "starting")
    starting = page.locator("#campaign-starting")
    expect(starting).to_contain_text("Starting, asked for by marketer at")
    expect(starting.get_by_role("progressbar")).to_have_attribute("aria-valuetext", "Taking the audience snapshot")
    expect(starting.get_by_role("progressbar")).not_to_have_attribute("aria-valuenow", re.compile(".*"))
    expect(page.locator("#campaign-start")).to_have_count(0)
    expect(starting.locator("[data-progress-updated]")).to_contain_text("Checked", timeout=START_TIMEOUT_MS)
    screenshot("starting: the audience snapshot under way")

    # when a worker takes the start
    campaign = Campaign.objects.get(name="Spring offer (demo)")
    assert campaign.status == CampaignStatus.STARTING
    assert run_requested_start(campaign.pk) == STARTED

    # then the open page shows, by itself, the campaign started and what its start did
    expect(page.locator("#campaign-progress")).to_have_attribute("data-status", re.compile("^(sending|scheduled)$"),
                                                                 timeout=START_TIMEOUT_MS)
    audience = CampaignRecipient.objects.filter(campaign=campaign).count()
    expect(page.locator("#campaign-start-summary")).to_contain_text(f"{audience} in the audience")
    expect(page.locator("#campaign-progress-bar [data-progress-total]")).to_have_text(str(audience))
    expect(page.locator("#campaign-starting")).to_have_count(0)
    screenshot("started: the page shows what the start did")


def segment_size(segment) -> int:
    from contacts import segments

    return segments.preview(segment.definition, timeout_ms=5000).count


def test_the_open_progress_bar_follows_the_recipients_without_a_reload(demo_logins, page, log_in, screenshot):
    # given a sending campaign with four recipients not decided yet
    from django.contrib.auth import get_user_model

    from campaigns.campaign_state import move_campaign
    from contacts.models import Contact

    campaign = Campaign.objects.get(name="Spring offer (demo)")
    move_campaign(campaign, CampaignStatus.SENDING, action="campaign.started",
                  actor=get_user_model().objects.get(username="marketer"))
    contacts = list(Contact.objects.order_by("pk")[:4])
    CampaignRecipient.objects.bulk_create([CampaignRecipient(campaign=campaign, contact=c) for c in contacts])
    log_in("marketer", demo_logins["marketer"])
    open_campaign(page, "Spring offer (demo)")
    bar = page.locator("#campaign-progress-bar")
    expect(bar.locator("[data-progress-done]")).to_have_text("0")
    expect(bar.get_by_role("progressbar")).to_have_attribute("aria-valuemax", "4")

    # when three are decided while the page is open
    CampaignRecipient.objects.filter(contact__in=contacts[:2]).update(outcome=RecipientOutcome.SKIPPED)
    CampaignRecipient.objects.filter(contact=contacts[2]).update(outcome=RecipientOutcome.HOLDOUT)

    # then the bar, its figures and its words follow within a few seconds
    expect(bar.locator("[data-progress-done]")).to_have_text("3", timeout=15_000)
    expect(bar.locator("[data-progress-percent]")).to_have_text("75")
    expect(bar.locator('[data-count="left_out"]')).to_have_text("2")
    expect(bar.locator('[data-count="held_out"]')).to_have_text("1")
    expect(bar.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "3")
    expect(bar.locator('[data-segment="left_out"]')).to_have_attribute("style", "width: 50%;")
    screenshot("the bar after three were decided")
