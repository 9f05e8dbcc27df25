"""A support agent reads a contact's timeline in a real browser: from the header search, typed
as people write a number, to the welcome email with its delivery events, then only the SMS side
of the story."""
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Enrollment
from campaigns.tick import tick
from channels import conversations
from channels.models import Conversation
from channels.provider_reports import record_inbound_message
from omni.models import AuditEntry
from omni.tests.browser import expect

pytestmark = pytest.mark.browser


@pytest.fixture
def bob_after_welcome(demo_logins, eager_celery, settings):
    """The demo after the welcome email (with the sandbox's delivery events), the wait, the
    welcome SMS, and Bob's SMS reply; returns the demo logins."""
    # Marketing waits while Bob's demo question is open (compliance/tests/test_conversation_hold.py):
    # here an agent has closed it, and nothing is held after a closing, so his welcome goes out.
    settings.OMNI_CONVERSATION_HOLD = timedelta(0)
    conversations.close(Conversation.objects.filter(contact__external_id="demo-bob"))
    tick()
    # The journey's wait has passed: the next ticks check the email and send the SMS.
    for _ in range(3):
        Enrollment.objects.update(next_run_at=timezone.now() - timedelta(seconds=1))
        tick()
    record_inbound_message("sandbox", "demo-reply-1", "sms", from_address="+14155550102",
                           body="Thanks! Can I move to the yearly plan?")
    return demo_logins


def test_a_support_agent_reads_the_welcome_email_and_its_events_then_only_sms(
        bob_after_welcome, page, log_in, screenshot):
    # given a support agent on any admin page
    log_in("support", bob_after_welcome["support"])
    page.goto("/admin/channels/conversation/")

    # when they type Bob's number as people write it into the header search
    page.get_by_label("Find a contact").fill("(415) 555-0102")
    with page.expect_navigation():
        page.get_by_label("Find a contact").press("Enter")

    # then the welcome email reads as sent, in a frame that runs no scripts, with its events
    expect(page.locator("h1")).to_contain_text("Timeline of Bob")
    email = page.locator("article.entry-message", has=page.locator("section.delivery-email"))
    expect(email).to_have_count(1)
    expect(email).to_contain_text("Welcome, Bob!")
    expect(email).to_contain_text("journey Welcome, step welcome-email")
    frame = email.locator("iframe.email-html")
    assert frame.get_attribute("sandbox") == ""
    expect(page.frame_locator("iframe.email-html").locator("body")).to_contain_text("Thanks for signing up")
    expect(email.locator("table.delivery-events")).to_contain_text("Delivered")
    # decisions are theirs to read, and so are enrollments (they pause one when a customer writes in)
    expect(page.locator("article.entry-decision").first).to_be_visible()
    expect(page.locator("#timeline-hidden")).to_have_count(0)
    expect(page.locator("#timeline-reachability")).to_contain_text("SMS")
    screenshot("timeline")
    frame.scroll_into_view_if_needed()
    screenshot("the welcome email")

    # when they keep only SMS
    page.locator("select[name=channel]").select_option("sms")
    with page.expect_navigation():
        page.get_by_role("button", name="Show").click()

    # then the welcome SMS, Bob's demo question and his reply, his SMS consent remain, and no email
    kinds = set(page.locator("article.timeline-entry").evaluate_all("els => els.map(e => e.dataset.kind)"))
    assert kinds <= {"message", "inbound", "consent", "decision"} and {"message", "inbound"} <= kinds
    expect(page.locator("article.entry-inbound")).to_have_count(2)
    expect(page.locator("article.entry-inbound").first).to_contain_text("yearly plan")
    expect(page.locator("section.delivery-sms").first).to_contain_text("welcome to Omni")
    expect(page.locator("section.delivery-email")).to_have_count(0)
    screenshot("sms only")

    # and the opening was audited once: filtering wrote nothing more
    assert AuditEntry.objects.filter(action="contact.timeline_viewed").count() == 1
