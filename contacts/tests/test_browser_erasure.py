"""In a real browser, a compliance user erases a contact from its admin page, giving the reason;
a marketer is not offered the button. verify_audit passes after."""
import io

import pytest
from django.core.management import call_command
from django.db import connection

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


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="an import holding its upload in another connection "
                                                              "needs PostgreSQL; set DATABASE_URL to run it")
def test_an_erasure_behind_a_running_import_is_queued_and_followed_until_it_is_done(
        demo_logins, page, log_in, screenshot, live_server, monkeypatch):
    from contacts import import_erasure
    from contacts.erasure_requests import carry_out_erasure_requests
    from contacts.imports import check_import, start_import

    from .test_erasure_requests import BO_THEN_CLEO, all_or_nothing_import_running

    # given an all-or-nothing import naming cleo, running, and a compliance user
    monkeypatch.setattr(import_erasure, "IMPORT_LOCK_WAIT", "1s")
    cleo = Contact.objects.create(external_id="cleo", email="cleo@example.com", first_name="Cleo")
    bo = Contact.objects.create(email="bo@example.com", first_name="Bo")
    upload = check_import(start_import("long.csv", BO_THEN_CLEO, actor=None))
    log_in("compliance", demo_logins["compliance"])

    with all_or_nothing_import_running(upload, bo, monkeypatch):
        # when they erase cleo from her page
        page.goto(f"{live_server.url}/admin/contacts/contact/{cleo.pk}/erase/")
        page.locator("#id_reason").fill("Ticket DPO-61")
        with page.expect_navigation():
            page.locator("#confirm-erasure").click()

        # then her page warns that the erasure is queued and runs once the import finishes
        warning = page.locator(".messagelist")
        expect(warning).to_contain_text("Not erased yet")
        expect(warning).to_contain_text("It runs by itself as soon as the import finishes")
        screenshot("erasure queued behind a running import")
        # and the link leads to the request, pending
        with page.expect_navigation():
            warning.get_by_role("link", name="Erasure requests").click()
        expect(page.locator("#content-main")).to_contain_text("Pending")
        screenshot("the queued erasure request")

    # when the import has ended and the queued erasure ran
    carry_out_erasure_requests()

    # then the list shows it done
    page.goto(f"{live_server.url}/admin/contacts/erasurerequest/")
    expect(page.locator("#result_list")).to_contain_text("Erased by this request")
    screenshot("the erasure request done")
    cleo.refresh_from_db()
    assert cleo.erased_at is not None
