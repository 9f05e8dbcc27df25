"""A contact in a real browser: opens the preference page from the List-Unsubscribe link of a
marketing email, changes a consent and submits; a used, forged or expired link says so."""
import time

import pytest
from django.core import signing

from channels.delivery import send_delivery
from channels.models import Delivery, Message, MessageSource, OutboxMessage
from compliance import links
from compliance.actions import record_consent_change
from compliance.models import Consent
from contacts.models import Contact
from omni.tests.browser import expect

pytestmark = pytest.mark.browser


@pytest.fixture
def unsubscribe_link(live_server, settings) -> tuple[Contact, str]:
    """Ann, opted in to marketing by email and SMS, and the List-Unsubscribe link of the
    marketing email she was sent through the sandbox."""
    settings.OMNI_PUBLIC_URL = live_server.url
    ann = Contact.objects.create(external_id="ann", email="ann@example.com", phone="+14155550101", first_name="Ann")
    for channel in ("email", "sms"):
        record_consent_change(ann, channel, "marketing", "granted", "form", evidence={"form": "signup"})
    message = Message.objects.create(
        contact=ann, purpose="marketing", source=MessageSource.API, channel_plan=[{"channel": "email"}],
        status="queued", content=[{"channel": "email", "subject": "Autumn sale", "text_body": "20% off.",
                                   "html_body": "<p>20% off.</p>"}],
    )
    delivery = Delivery.objects.create(message=message, contact=ann, channel="email", provider="sandbox",
                                       to_address=ann.email)
    send_delivery(delivery.pk)
    header = OutboxMessage.objects.get(delivery=delivery).content["headers"]["List-Unsubscribe"]
    return ann, header.strip("<>")


def status_of(contact, channel="email", purpose="marketing") -> str:
    return Consent.objects.get(contact=contact, channel=channel, purpose=purpose).status


def test_a_contact_changes_a_consent_from_the_link_in_an_email_and_cannot_submit_the_form_twice(
        unsubscribe_link, page, screenshot):
    ann, url = unsubscribe_link

    # when Ann opens the link
    page.goto(url)

    # then she sees her preferences, as they are
    expect(page.get_by_role("heading", name="Your email preferences")).to_be_visible()
    expect(page.get_by_label("Marketing by Email")).to_be_checked()
    expect(page.get_by_label("Marketing by SMS")).to_be_checked()
    screenshot("preference page")

    # when she stops marketing email, prefers SMS and saves
    page.get_by_label("Marketing by Email").uncheck()
    page.get_by_label("Where would you rather hear from us?").select_option("sms")
    page.get_by_role("button", name="Save my preferences").click()

    # then the page says so, and so does her consent
    expect(page.get_by_role("status")).to_contain_text("Your preferences were saved")
    expect(page.get_by_role("status")).to_contain_text("Marketing by Email: opted out")
    screenshot("saved")
    assert status_of(ann) == "revoked"
    assert status_of(ann, "sms") == "granted"
    ann.refresh_from_db()
    assert ann.preferred_channel == "sms"

    # when the browser sends the same form again (a reload of the result page resubmits it)
    page.reload()

    # then nothing changes and the page says why
    expect(page.get_by_role("alert")).to_contain_text("already used")
    expect(page.get_by_role("alert")).to_contain_text("Nothing was changed")
    screenshot("form used twice")
    assert status_of(ann) == "revoked"

    # and opening the link again shows the page as it is now
    page.goto(url)
    expect(page.get_by_label("Marketing by Email")).not_to_be_checked()
    expect(page.get_by_label("Where would you rather hear from us?")).to_have_value("sms")
    screenshot("preference page again")


def test_a_forged_or_expired_link_shows_why_and_changes_nothing(unsubscribe_link, page, screenshot, settings):
    ann, url = unsubscribe_link

    # when the link was altered
    page.goto(url[:-4] + "abcd")

    # then
    expect(page.get_by_role("alert")).to_contain_text("This link is not valid")
    expect(page.get_by_role("checkbox")).to_have_count(0)
    screenshot("forged link")

    # when the link is older than the links live
    settings.OMNI_UNSUBSCRIBE_LINK_DAYS = 30

    class LongAgo(signing.TimestampSigner):
        def timestamp(self):
            return signing.b62_encode(int(time.time() - 31 * 86400))

    old = LongAgo(salt=links.LINK_SALT).sign_object({"c": ann.pk, "d": 1, "m": 1})
    page.goto(f"/u/unsubscribe/{old}")

    # then
    expect(page.get_by_role("alert")).to_contain_text("This link has expired")
    screenshot("expired link")
    assert status_of(ann) == "granted"
