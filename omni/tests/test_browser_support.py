"""A support agent works the demo's inbox in a real browser: opens the inbox from the sidebar,
takes Bob's unassigned conversation, answers with a saved reply filled in for Bob, sees it
delivered by the sandbox, and closes the conversation; Bob's welcome journey, paused by his
question, resumes."""
import pytest

from campaigns.models import Enrollment, EnrollmentState
from campaigns.tick import tick
from channels.models import Conversation, ConversationStatus, Message, SavedReply
from omni.tests.browser import expect

pytestmark = pytest.mark.browser


@pytest.fixture
def demo_with_a_saved_reply(demo_logins, eager_celery):
    """The demo (Bob asked a question by SMS: seed_demo) and a saved reply agents use."""
    SavedReply.objects.create(title="Trial dates", body="Hi {{ contact.first_name }}, your trial runs 14 days from "
                                                        "today: the page shows the wrong date, we are fixing it.")
    return demo_logins


def test_a_support_agent_takes_bobs_question_answers_with_a_saved_reply_and_closes_it(
        demo_with_a_saved_reply, page, log_in, screenshot):
    # given Bob's welcome journey, which waits while he talks with support (the demo's on_reply)
    tick()
    assert Enrollment.objects.get(contact__first_name="Bob", journey__slug="welcome").state == EnrollmentState.PAUSED
    # and a support agent on their home
    log_in("support", demo_with_a_saved_reply["support"])

    # when they open the inbox from the sidebar
    with page.expect_navigation():
        page.locator("#nav-sidebar-apps").get_by_role("link", name="Inbox", exact=True).click()

    # then Bob's question waits, unassigned, and the tab says so
    expect(page.locator("#tabs-items")).to_contain_text("Unassigned (1)")
    row = page.locator("#inbox-list tr.conversation", has_text="Bob")
    expect(row).to_contain_text("unassigned")
    expect(row).to_contain_text("trial page")
    screenshot("inbox")

    # when they open it and take it
    with page.expect_navigation():
        row.get_by_role("link", name="Bob").click()
    expect(page.locator("#thread .entry-inbound")).to_contain_text("only signed up today")
    with page.expect_navigation():
        page.locator("#assign-me").click()
    expect(page.locator("#thread-facts")).to_contain_text("assigned to support")

    # and answer with the saved reply, filled in for Bob
    page.get_by_label("Saved reply").select_option(label="Trial dates")
    with page.expect_navigation():
        page.get_by_role("button", name="Use").click()
    expect(page.locator("#reply-form textarea")).to_have_value(
        "Hi Bob, your trial runs 14 days from today: the page shows the wrong date, we are fixing it.")
    screenshot("the saved reply filled in")
    with page.expect_navigation():
        page.get_by_role("button", name="Send reply").click()

    # then the reply is in the thread, delivered (the sandbox reports it)
    reply = page.locator("#thread .entry-reply")
    expect(reply).to_contain_text("Hi Bob, your trial runs 14 days")
    expect(reply.locator(".delivery-status")).to_contain_text("Delivered")
    screenshot("the reply delivered")

    # when they close the conversation
    with page.expect_navigation():
        page.locator("#close-conversation").click()

    # then it is closed, by them, and the inbox is empty again
    expect(page.locator("#thread-facts")).to_contain_text("Closed")
    conversation = Conversation.objects.get(contact__first_name="Bob")
    assert conversation.status == ConversationStatus.CLOSED and conversation.closed_by.username == "support"
    assert Message.objects.get(conversation=conversation, source="agent").status == "delivered"
    page.goto("/admin/inbox/")
    expect(page.locator("#tabs-items")).to_contain_text("All (0)")
    screenshot("closed")

    # and the next tick resumes Bob's journey
    tick()
    enrollment = Enrollment.objects.get(contact__first_name="Bob", journey__slug="welcome")
    assert (enrollment.state, enrollment.paused_for_conversation_id) == (EnrollmentState.ACTIVE, None)
