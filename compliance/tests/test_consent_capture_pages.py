"""Evidence from Omni's own pages (the preference page, the double opt-in confirmation): the
time, IP address, user agent and the version of the consent text shown. Consent texts are
versioned rows: a new text is a new version, never an edit."""
from datetime import datetime

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from compliance import links
from compliance.actions import publish_consent_text, record_consent_change
from compliance.models import Consent, ConsentChange, ConsentText
from contacts.models import Contact
from omni.models import AuditEntry

BROWSER = {"REMOTE_ADDR": "203.0.113.7", "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux) Firefox/130.0"}


@pytest.fixture
def contact(db):
    return Contact.objects.create(external_id="ann", email="ann@example.com", first_name="Ann")


@pytest.fixture
def client():
    return Client(enforce_csrf_checks=True)


def preference_page(client, contact):
    return client.get(reverse("compliance:unsubscribe", args=[links.unsubscribe_token(contact.pk, 41, 40)]), **BROWSER)


def test_each_own_page_has_a_first_text_seeded(db):
    assert set(ConsentText.objects.filter(version=1).values_list("key", flat=True)) == {
        "preference_page", "double_opt_in"}


def test_a_new_text_is_a_new_version_and_the_old_one_stays(db):
    first = ConsentText.objects.current("preference_page")

    second = publish_consent_text("preference_page", "  Tick what you want.  ")

    assert (second.version, second.text) == (first.version + 1, "Tick what you want.")
    assert ConsentText.objects.get(pk=first.pk).text == first.text
    assert ConsentText.objects.current("preference_page") == second
    assert AuditEntry.objects.filter(action="consent_text.published", object_id=str(second.pk)).exists()


@pytest.mark.parametrize("key, text", [("footer", "Hello"), ("preference_page", "   ")])
def test_an_unknown_key_or_an_empty_text_is_refused(db, key, text):
    with pytest.raises(ValueError):
        publish_consent_text(key, text)


def test_the_preference_page_keeps_the_time_address_browser_and_text_version_shown(client, contact):
    # given a newer text than the seeded one
    shown = publish_consent_text("preference_page", "Version two: we send offers about twice a month.")

    # when the contact opens the page, a newer text is published meanwhile, and the form is sent
    page = preference_page(client, contact)
    publish_consent_text("preference_page", "Version three, not seen by Ann.")
    before = datetime.now().astimezone()
    response = client.post(reverse("compliance:preferences"),
                           {"form": page.context["form_token"], "receive": ["email:marketing"]}, **BROWSER)

    # then the page showed version two, and the opt-in says so
    assert "Version two: we send offers" in page.content.decode()
    assert response.status_code == 200
    change = ConsentChange.objects.get(contact=contact, channel="email", purpose="marketing")
    assert change.status == "granted" and change.source == "preference_page"
    evidence = change.evidence
    assert evidence["consent_text"] == {"key": "preference_page", "version": shown.version}
    assert (evidence["ip"], evidence["user_agent"]) == (BROWSER["REMOTE_ADDR"], BROWSER["HTTP_USER_AGENT"])
    assert datetime.fromisoformat(evidence["at"]) >= before.replace(microsecond=0)


def test_the_double_opt_in_confirmation_keeps_the_text_version_shown(client, contact, settings):
    settings.OMNI_DOUBLE_OPT_IN = True
    pending = record_consent_change(contact, "email", "marketing", "granted", "form", evidence={"form": "signup"})
    shown = publish_consent_text("double_opt_in", "Confirm: offers by email, at most weekly.")
    path = reverse("compliance:confirm", args=[links.confirmation_token(contact.pk, pending.pk)])

    page = client.get(path)
    publish_consent_text("double_opt_in", "A later text.")
    response = client.post(path, {"shown": page.context["shown"]}, **BROWSER)

    assert "Confirm: offers by email, at most weekly." in page.content.decode()
    assert response.status_code == 200
    confirmed = Consent.objects.get(contact=contact, channel="email", purpose="marketing").last_change
    assert confirmed.status == "granted"
    assert confirmed.evidence["consent_text"] == {"key": "double_opt_in", "version": shown.version}
    assert confirmed.evidence["ip"] == BROWSER["REMOTE_ADDR"]
    assert confirmed.evidence["user_agent"] == BROWSER["HTTP_USER_AGENT"]
    assert confirmed.evidence["at"]


def test_a_forged_text_version_confirms_nothing(client, contact, settings):
    settings.OMNI_DOUBLE_OPT_IN = True
    pending = record_consent_change(contact, "email", "marketing", "granted", "form")
    path = reverse("compliance:confirm", args=[links.confirmation_token(contact.pk, pending.pk)])

    response = client.post(path, {"shown": '{"t":1}:forged'}, **BROWSER)

    assert response.status_code == 400
    assert Consent.objects.get(contact=contact, channel="email", purpose="marketing").status == "pending"


# The admin of the texts


@pytest.fixture
def officer_client(django_user_model, role_groups):
    user = django_user_model.objects.create_user(username="cora", password="not-used", is_staff=True)
    user.groups.add(Group.objects.get(name="Compliance"))
    client = Client()
    client.force_login(user)
    return client


def test_compliance_staff_write_a_new_version_in_the_admin(officer_client):
    first = ConsentText.objects.current("double_opt_in")
    add = reverse("admin:compliance_consenttext_add")

    form = officer_client.get(f"{add}?key=double_opt_in")
    response = officer_client.post(add, {"key": "double_opt_in", "text": "New words."})

    assert form.context["adminform"].form.initial["text"] == first.text
    assert response.status_code == 302
    newest = ConsentText.objects.current("double_opt_in")
    assert (newest.version, newest.text) == (first.version + 1, "New words.")
    assert newest.created_by.username == "cora"


def test_a_text_is_never_edited_in_the_admin(officer_client):
    first = ConsentText.objects.current("double_opt_in")
    change = reverse("admin:compliance_consenttext_change", args=[first.pk])

    page = officer_client.get(change)
    edit = officer_client.post(change, {"key": "double_opt_in", "text": "Rewritten history."})

    assert page.status_code == 200 and "Write a new version" in page.content.decode()
    assert edit.status_code == 403
    assert ConsentText.objects.get(pk=first.pk).text == first.text
