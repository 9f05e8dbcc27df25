"""In a real browser, a compliance user erases a contact from its admin page, giving the reason;
a marketer is not offered the button. verify_audit passes after."""
import io

import pytest
from django.core.management import call_command

from channels.models import Message, MessageStatus
from contacts.models import Contact
from omni import audit
from omni.models import AuditEntry
from omni.tests.browser import expect

from .browser_steps_erase import erase_contact_step
from .erasure_fixtures import contact_with_everything

pytestmark = pytest.mark.browser


def test_a_compliance_user_erases_a_contact_from_its_page(demo_logins, page, log_in, screenshot, live_server):
    # given a contact with something in every app, and a compliance user
    contact = contact_with_everything(external_id="erin-browser")
    log_in("compliance", demo_logins["compliance"])

    # when they erase it from its page, saying why
    erase_contact_step(page, live_server.url, contact, "Ticket DPO-60: erasure asked by email",
                       screenshot=screenshot)

    # then its personal data is gone, what was unsent is cancelled, and the chain is intact
    contact.refresh_from_db()
    assert contact.erased_at is not None and (contact.email, contact.first_name) == ("", "")
    assert not Message.objects.filter(contact=contact, status=MessageStatus.PENDING).exists()
    entry = AuditEntry.objects.get(action="contact.erased", contact_id=contact.pk)
    assert entry.actor_label == "compliance" and entry.personal.data == {"why": "Ticket DPO-60: erasure asked by email"}
    audit.seal_pending()
    call_command("verify_audit", stdout=io.StringIO())

    # and erasing it again from its page is refused, saying when it was erased
    page.goto(f"{live_server.url}/admin/contacts/contact/{contact.pk}/erase/")
    page.locator("#id_reason").fill("again")
    with page.expect_navigation():
        page.locator("#confirm-erasure").click()
    expect(page.locator(".messagelist")).to_contain_text("was already erased on")
    screenshot("a second erasure refused")


def test_a_marketer_is_not_offered_erasure(demo_logins, page, log_in, screenshot, live_server):
    contact = Contact.objects.create(external_id="mia", first_name="Mia", email="mia@example.com")
    log_in("marketer", demo_logins["marketer"])

    page.goto(f"{live_server.url}/admin/contacts/contact/{contact.pk}/change/")
    expect(page.locator("h1")).to_be_visible()
    assert page.get_by_role("link", name="Erase personal data…").count() == 0
    screenshot("a marketer's contact page: no erasure")
    page.goto(f"{live_server.url}/admin/contacts/contact/{contact.pk}/erase/")
    assert Contact.objects.get(pk=contact.pk).erased_at is None
