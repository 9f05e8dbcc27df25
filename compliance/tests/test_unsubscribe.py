"""One-click unsubscribe and the preference page, reached from a signed link without logging in.
Forged, expired and replayed links change nothing, and the page says so."""
import time

import pytest
from django.core import signing
from django.test import Client
from django.urls import reverse

from compliance import links
from compliance.actions import record_consent_change
from compliance.models import Consent, ConsentChange, SpentLink
from compliance.preferences import opt_outs_by_message
from contacts.models import Contact, Device
from omni.models import AuditEntry

DELIVERY_ID, MESSAGE_ID = 41, 40


@pytest.fixture
def contact(db):
    contact = Contact.objects.create(external_id="ann", email="ann@example.com", phone="+14155550101",
                                     first_name="Ann")
    for channel in ("email", "sms"):
        record_consent_change(contact, channel, "marketing", "granted", "form", evidence={"form": "signup"})
    return contact


@pytest.fixture
def client():
    # A mailbox provider's POST or a contact's browser: no session, no CSRF cookie.
    return Client(enforce_csrf_checks=True)


def unsubscribe_path(contact, delivery_id=DELIVERY_ID, message_id=MESSAGE_ID) -> str:
    return reverse("compliance:unsubscribe", args=[links.unsubscribe_token(contact.pk, delivery_id, message_id)])


def status_of(contact, channel="email", purpose="marketing") -> str:
    consent = Consent.objects.filter(contact=contact, channel=channel, purpose=purpose).first()
    return consent.status if consent else "unknown"


def signed_days_ago(days: int, salt: str, payload: dict) -> str:
    """A token signed with Omni's key and salt as if made `days` ago."""

    class Then(signing.TimestampSigner):
        def timestamp(self):
            return signing.b62_encode(int(time.time() - days * 86400))

    return Then(salt=salt).sign_object(payload)


def form_token_of(response) -> str:
    return response.context["form_token"]


# --- one click -----------------------------------------------------------------------------------

def test_a_one_click_post_without_cookie_or_csrf_token_revokes_marketing_email_at_once(contact, client):
    # when
    response = client.post(unsubscribe_path(contact), {"List-Unsubscribe": "One-Click"})

    # then
    assert response.status_code == 200
    assert "You are unsubscribed" in response.content.decode()
    assert not response.cookies
    assert status_of(contact) == "revoked"
    assert status_of(contact, "sms") == "granted"
    change = ConsentChange.objects.get(contact=contact, source="unsubscribe_link")
    assert change.evidence["delivery_id"] == DELIVERY_ID and change.evidence["message_id"] == MESSAGE_ID
    assert change.evidence["via"] == "one_click"
    assert AuditEntry.objects.filter(action="consent.changed", reason="unsubscribe_link:revoked").count() == 1


def test_a_replayed_one_click_changes_nothing_even_after_the_contact_opted_in_again(contact, client):
    # given an unsubscribe, then a new opt-in
    path = unsubscribe_path(contact)
    client.post(path, {"List-Unsubscribe": "One-Click"})
    record_consent_change(contact, "email", "marketing", "granted", "form")

    # when the same POST comes again
    response = client.post(path, {"List-Unsubscribe": "One-Click"})

    # then
    assert response.status_code == 409
    assert "already used" in response.content.decode()
    assert status_of(contact) == "granted"
    assert ConsentChange.objects.filter(source="unsubscribe_link").count() == 1


@pytest.mark.parametrize("tamper", [
    lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # signature altered
    lambda token: signing.TimestampSigner(key="not-omni-s-key", salt=links.LINK_SALT).sign_object(
        {"c": 1, "d": DELIVERY_ID, "m": MESSAGE_ID}),  # signed with another key
    lambda token: "garbage",
])
def test_a_forged_link_changes_nothing_and_the_page_says_so(contact, client, tamper):
    token = tamper(links.unsubscribe_token(contact.pk, DELIVERY_ID, MESSAGE_ID))
    path = reverse("compliance:unsubscribe", args=[token])

    posted = client.post(path, {"List-Unsubscribe": "One-Click"})
    shown = client.get(path)

    for response in (posted, shown):
        assert response.status_code == 400
        assert "This link is not valid" in response.content.decode()
        assert "Nothing was changed" in response.content.decode()
    assert status_of(contact) == "granted"
    assert not SpentLink.objects.exists()


def test_a_token_of_another_kind_is_not_an_unsubscribe_link(contact, client):
    # A confirmation token is signed by the same key under another salt.
    token = links.confirmation_token(contact.pk, 1)

    response = client.post(reverse("compliance:unsubscribe", args=[token]), {"List-Unsubscribe": "One-Click"})

    assert response.status_code == 400
    assert status_of(contact) == "granted"


def test_an_expired_link_changes_nothing_and_the_page_says_so(contact, client, settings):
    settings.OMNI_UNSUBSCRIBE_LINK_DAYS = 30
    token = signed_days_ago(31, links.LINK_SALT, {"c": contact.pk, "d": DELIVERY_ID, "m": MESSAGE_ID})
    path = reverse("compliance:unsubscribe", args=[token])

    posted = client.post(path, {"List-Unsubscribe": "One-Click"})
    shown = client.get(path)

    for response in (posted, shown):
        assert response.status_code == 410
        assert "This link has expired" in response.content.decode()
    assert status_of(contact) == "granted"


def test_a_link_still_young_enough_works(contact, client, settings):
    settings.OMNI_UNSUBSCRIBE_LINK_DAYS = 30
    token = signed_days_ago(29, links.LINK_SALT, {"c": contact.pk, "d": DELIVERY_ID, "m": MESSAGE_ID})

    response = client.post(reverse("compliance:unsubscribe", args=[token]), {"List-Unsubscribe": "One-Click"})

    assert response.status_code == 200
    assert status_of(contact) == "revoked"


def test_a_post_without_the_one_click_body_changes_nothing(contact, client):
    response = client.post(unsubscribe_path(contact), {})

    assert response.status_code == 400
    assert status_of(contact) == "granted"


def test_the_link_of_an_erased_contact_is_not_valid(contact, client):
    path = unsubscribe_path(contact)
    Contact.objects.filter(pk=contact.pk).update(erased_at=contact.created_at)

    assert client.post(path, {"List-Unsubscribe": "One-Click"}).status_code == 400
    assert status_of(contact) == "granted"


# --- the preference page -------------------------------------------------------------------------

def test_opening_the_link_shows_the_preference_page_and_changes_nothing(contact, client):
    # given a device, so push is offered too
    Device.objects.create(contact=contact, platform="ios", token="device-1")

    # when a mail scanner (or the contact) follows the link
    response = client.get(unsubscribe_path(contact))

    # then
    assert response.status_code == 200
    page = response.content.decode()
    assert "Your email preferences" in page
    assert {s.key: s.receiving for s in response.context["scopes"]} == {
        "email:marketing": True, "email:informational": True, "sms:marketing": True, "sms:informational": True,
        "whatsapp:marketing": False, "whatsapp:informational": True, "rcs:marketing": False,
        "rcs:informational": True, "push:marketing": False, "push:informational": True,
    }
    assert 'value="email:marketing" checked' in page
    assert "Unsubscribe from everything" in page
    assert '<select id="preferred_channel" name="preferred_channel">' in page
    assert ConsentChange.objects.count() == 2 and not SpentLink.objects.exists()
    assert not response.cookies
    assert "no-cache" in response["Cache-Control"]


def test_submitting_the_preferences_records_each_change_with_the_delivery_and_the_preferred_channel(contact, client):
    # given
    form = form_token_of(client.get(unsubscribe_path(contact)))

    # when the contact keeps SMS marketing, drops email marketing and email news, and prefers SMS
    response = client.post(reverse("compliance:preferences"), {
        "form": form, "receive": ["sms:marketing", "sms:informational", "whatsapp:informational",
                                  "rcs:informational", "whatsapp:marketing"],
        "preferred_channel": "sms",
    })

    # then
    assert response.status_code == 200
    assert "Your preferences were saved" in response.content.decode()
    assert status_of(contact, "email", "marketing") == "revoked"
    assert status_of(contact, "email", "informational") == "revoked"
    assert status_of(contact, "whatsapp", "marketing") == "granted"
    assert status_of(contact, "sms", "marketing") == "granted"
    changes = ConsentChange.objects.filter(source="preference_page")
    assert changes.count() == 3
    assert all(c.evidence["delivery_id"] == DELIVERY_ID and c.evidence["via"] == "preference_page" for c in changes)
    contact.refresh_from_db()
    assert contact.preferred_channel == "sms"
    assert AuditEntry.objects.filter(action="contact.updated", data__fields=["preferred_channel"]).exists()


def test_a_preference_form_works_once(contact, client):
    # given a submitted form
    form = form_token_of(client.get(unsubscribe_path(contact)))
    client.post(reverse("compliance:preferences"), {"form": form, "receive": ["email:marketing"]})
    changes_before = ConsentChange.objects.count()

    # when the same form is submitted again, asking for something else
    response = client.post(reverse("compliance:preferences"),
                           {"form": form, "receive": ["sms:marketing"], "preferred_channel": "email"})

    # then nothing changes and the page says so
    assert response.status_code == 409
    assert "already used" in response.content.decode()
    assert ConsentChange.objects.count() == changes_before
    assert status_of(contact, "email") == "granted"
    contact.refresh_from_db()
    assert contact.preferred_channel == ""


def test_a_forged_or_expired_form_changes_nothing(contact, client):
    form = form_token_of(client.get(unsubscribe_path(contact)))
    old = signed_days_ago(2, links.FORM_SALT, {"c": contact.pk, "d": DELIVERY_ID, "m": MESSAGE_ID, "n": "x"})
    # The unsubscribe link's own token is not a form token.
    link_token = links.unsubscribe_token(contact.pk, DELIVERY_ID, MESSAGE_ID)

    for token, status in [(form[:-3] + "xyz", 400), (old, 410), (link_token, 400), ("", 400)]:
        response = client.post(reverse("compliance:preferences"), {"form": token, "everything": "1"})
        assert response.status_code == status
    assert status_of(contact) == "granted" and status_of(contact, "sms") == "granted"


def test_unsubscribe_from_everything_revokes_every_channel_and_purpose_on_the_page(contact, client):
    form = form_token_of(client.get(unsubscribe_path(contact)))

    response = client.post(reverse("compliance:preferences"),
                           {"form": form, "everything": "1", "receive": ["sms:marketing"]})

    assert response.status_code == 200
    for channel in ("email", "sms", "whatsapp", "rcs"):
        for purpose in ("marketing", "informational"):
            assert status_of(contact, channel, purpose) == "revoked"
    assert status_of(contact, "email", "transactional") == "unknown"
    contact.refresh_from_db()
    assert contact.preferred_channel == ""
    assert {c.evidence["via"] for c in ConsentChange.objects.filter(source="preference_page")} == {
        "unsubscribe_everything"}


def test_a_campaign_counts_the_opt_outs_its_messages_brought(contact, client):
    other = Contact.objects.create(external_id="bob", email="bob@example.com")
    record_consent_change(other, "email", "marketing", "granted", "form")
    client.post(unsubscribe_path(contact, 51, 50), {"List-Unsubscribe": "One-Click"})
    client.post(unsubscribe_path(other, 53, 52), {"List-Unsubscribe": "One-Click"})
    form = form_token_of(client.get(unsubscribe_path(contact, 55, 54)))
    client.post(reverse("compliance:preferences"), {"form": form, "everything": "1"})

    assert opt_outs_by_message([50, 52, 54, 99]) == {50: 1, 52: 1, 54: 1}

