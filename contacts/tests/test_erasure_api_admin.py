"""Erasure from outside: POST /api/v1/contacts/<external_id>/erase with the contacts:erase scope,
and the admin's confirmation page for the roles holding contacts.erase_contact."""
import pytest
from django.contrib.auth.models import Group

from channels.models import Message, MessageStatus
from contacts.models import Contact
from omni.models import ApiScope, AuditEntry

from .erasure_fixtures import EMAIL, contact_with_everything


@pytest.fixture
def erin(db):
    return contact_with_everything()


@pytest.fixture
def staff_in(django_user_model, role_groups):
    def make(username, group):
        user = django_user_model.objects.create_user(username=username, password="not-used", is_staff=True)
        user.groups.add(Group.objects.get(name=group))
        return user

    return make


# --- the API --------------------------------------------------------------------------------

def test_the_api_erases_with_the_scope_and_a_reason(api_as, erin):
    api = api_as(ApiScope.CONTACTS_ERASE)

    response = api.post("/api/v1/contacts/erin/erase", {"reason": "GDPR request 7"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["external_id"] == "erin" and body["erased_at"]
    assert body["erased"]["channels.messages_cancelled"] == 3
    erin.refresh_from_db()
    assert erin.erased_at is not None and erin.email == ""
    entry = AuditEntry.objects.get(action="contact.erased", contact_id=erin.pk)
    assert entry.actor_label.startswith("apikey:") and entry.personal.data == {"why": "GDPR request 7"}


def test_a_key_without_the_erase_scope_is_refused_with_403(api_as, erin):
    api = api_as(ApiScope.CONTACTS_READ, ApiScope.CONTACTS_WRITE)

    response = api.post("/api/v1/contacts/erin/erase", {"reason": "GDPR request 7"})

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "missing_scope"
    erin.refresh_from_db()
    assert erin.erased_at is None and erin.email == EMAIL


def test_an_unknown_external_id_is_404(api_as, db):
    response = api_as(ApiScope.CONTACTS_ERASE).post("/api/v1/contacts/nobody/erase", {"reason": "GDPR request 7"})

    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("contact_not_found", "external_id")


def test_erasing_twice_over_the_api_is_409(api_as, erin):
    api = api_as(ApiScope.CONTACTS_ERASE)
    api.post("/api/v1/contacts/erin/erase", {"reason": "GDPR request 7"})

    response = api.post("/api/v1/contacts/erin/erase", {"reason": "GDPR request 7"})

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "contact_already_erased" and "already erased" in error["message"]


@pytest.mark.parametrize("body, field", [
    ({}, "reason"),
    ({"reason": ""}, "reason"),
    ({"reason": 42}, "reason"),
    ({"reason": "x" * 1001}, "reason"),
    ({"reason": "ok", "hard": True}, "hard"),
])
def test_a_bad_body_is_refused_with_400_naming_the_field_and_nothing_is_erased(api_as, erin, body, field):
    response = api_as(ApiScope.CONTACTS_ERASE).post("/api/v1/contacts/erin/erase", body)

    assert response.status_code == 400
    assert response.json()["error"]["field"] == field
    erin.refresh_from_db()
    assert erin.erased_at is None


def test_an_oversized_body_is_refused_with_413(api_as, erin, settings):
    settings.OMNI_MAX_BODY_BYTES = 1024

    response = api_as(ApiScope.CONTACTS_ERASE).post("/api/v1/contacts/erin/erase", {"reason": "x" * 2000})

    assert response.status_code == 413
    erin.refresh_from_db()
    assert erin.erased_at is None


def test_only_post_erases(api_as, erin):
    response = api_as(ApiScope.CONTACTS_ERASE).get("/api/v1/contacts/erin/erase")

    assert response.status_code == 405


# --- the admin ------------------------------------------------------------------------------

def test_compliance_staff_erase_from_the_contact_page_with_a_reason(client, staff_in, erin):
    client.force_login(staff_in("cora", "Compliance"))
    page = client.get(f"/admin/contacts/contact/{erin.pk}/change/")
    assert page.status_code == 200
    assert f"/admin/contacts/contact/{erin.pk}/erase/" in page.content.decode()

    confirmation = client.get(f"/admin/contacts/contact/{erin.pk}/erase/")
    assert confirmation.status_code == 200 and b"This cannot be undone" in confirmation.content
    erin.refresh_from_db()
    assert erin.erased_at is None  # asking is not erasing

    refused = client.post(f"/admin/contacts/contact/{erin.pk}/erase/", {"confirm_erasure": "yes", "reason": " "})
    assert refused.status_code == 200 and b"This field is required" in refused.content
    erin.refresh_from_db()
    assert erin.erased_at is None

    done = client.post(f"/admin/contacts/contact/{erin.pk}/erase/",
                       {"confirm_erasure": "yes", "reason": "Ticket DPO-51"}, follow=True)
    assert b"Erased the personal data of 1 contact(s)" in done.content
    erin.refresh_from_db()
    assert erin.erased_at is not None and erin.email == ""
    assert not Message.objects.filter(contact=erin, status=MessageStatus.PENDING).exists()
    entry = AuditEntry.objects.get(action="contact.erased", contact_id=erin.pk)
    assert entry.actor_label == "cora" and entry.personal.data == {"why": "Ticket DPO-51"}


def test_marketers_cannot_erase(client, staff_in, erin):
    client.force_login(staff_in("mara", "Marketers"))

    page = client.get(f"/admin/contacts/contact/{erin.pk}/change/")
    assert f"/admin/contacts/contact/{erin.pk}/erase/" not in page.content.decode()
    refused = client.post(f"/admin/contacts/contact/{erin.pk}/erase/", {"confirm_erasure": "yes", "reason": "x"})
    listed = client.post("/admin/contacts/contact/", {"action": "erase_contacts", "_selected_action": [erin.pk],
                                                      "confirm_erasure": "yes", "reason": "x"})

    assert refused.status_code == 403
    assert listed.status_code in (200, 302, 403)
    erin.refresh_from_db()
    assert erin.erased_at is None and erin.email == EMAIL


def test_the_list_action_asks_for_the_reason_then_erases_the_selected(client, staff_in, erin):
    other = contact_with_everything(external_id="otto", email="otto@example.com", phone="+14155550177")
    client.force_login(staff_in("cora", "Compliance"))
    selected = {"action": "erase_contacts", "_selected_action": [erin.pk, other.pk], "index": "0"}

    confirmation = client.post("/admin/contacts/contact/", selected)
    assert confirmation.status_code == 200 and b"these 2 contacts" in confirmation.content
    assert Contact.objects.filter(erased_at__isnull=False).count() == 0

    done = client.post("/admin/contacts/contact/", {"action": "erase_contacts",
                                                    "_selected_action": [erin.pk, other.pk],
                                                    "confirm_erasure": "yes", "reason": "Ticket DPO-52"}, follow=True)

    assert b"Erased the personal data of 2 contact(s)" in done.content
    assert Contact.objects.filter(pk__in=[erin.pk, other.pk], erased_at__isnull=False, email="").count() == 2


def test_the_list_action_is_offered_only_to_roles_that_may_erase(client, staff_in, erin):
    client.force_login(staff_in("cora", "Compliance"))
    assert b'value="erase_contacts"' in client.get("/admin/contacts/contact/").content

    client.force_login(staff_in("mara", "Marketers"))
    assert b'value="erase_contacts"' not in client.get("/admin/contacts/contact/").content


def test_an_erased_contacts_pages_still_open(admin_client, erin):
    from django.urls import reverse

    from channels.models import Conversation
    from contacts.actions import erase_contact

    erase_contact(erin, None, "Ticket DPO-53", actor_label="test")
    conversation = Conversation.objects.get(contact=erin)

    for url in (f"/admin/contacts/contact/{erin.pk}/change/", reverse("omni-web:timeline", args=[erin.pk]),
                "/admin/channels/message/", f"/admin/channels/conversation/{conversation.pk}/change/",
                "/admin/compliance/suppression/", "/admin/channels/delivery/"):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert EMAIL not in response.content.decode(), url
    # nothing left to erase: the page no longer offers it
    page = admin_client.get(f"/admin/contacts/contact/{erin.pk}/change/").content.decode()
    assert f"/admin/contacts/contact/{erin.pk}/erase/" not in page


# --- after erasure, the contact page -----------------------------------------------------------

def test_an_erased_contacts_page_shows_what_is_left_and_a_post_fills_nothing_in(client, staff_in, db):
    from contacts.actions import erase_contact

    ella = Contact.objects.create(external_id="ella", email="ella@example.com", first_name="Ella")
    erase_contact(ella, why="Ticket DPO-52")
    client.force_login(staff_in("mara", "Marketers"))

    page = client.get(f"/admin/contacts/contact/{ella.pk}/change/")
    posted = client.post(f"/admin/contacts/contact/{ella.pk}/change/",
                         {"external_id": "ella", "email": "ella@example.com", "first_name": "Ella", "locale": "en"},
                         follow=True)

    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert [str(m) for m in posted.context["messages"]] == [
        "This contact's personal data was erased on request, so it cannot be changed: nothing was saved."]
    ella.refresh_from_db()
    assert (ella.email, ella.first_name) == ("", "") and ella.erased_at is not None


def test_an_edit_read_before_the_erasure_and_saved_after_it_fills_nothing_in(rf, client, staff_in, erin):
    from django.contrib import admin

    from campaigns.tests.test_admin_versions import change_form_data
    from contacts.actions import ContactErased, erase_contact

    mara = staff_in("mara", "Marketers")
    client.force_login(mara)
    data = {**change_form_data(client.get(f"/admin/contacts/contact/{erin.pk}/change/")), "first_name": "Erin B."}
    contact_admin = admin.site._registry[Contact]
    request = rf.post(f"/admin/contacts/contact/{erin.pk}/change/")
    request.user = mara
    edited = Contact.objects.get(pk=erin.pk)
    form = contact_admin.get_form(request, edited, change=True)(data, instance=edited)
    assert form.is_valid(), form.errors
    # meanwhile compliance erases her
    erase_contact(Contact.objects.get(pk=erin.pk), why="Ticket DPO-53")

    with pytest.raises(ContactErased):
        contact_admin.save_model(request, form.save(commit=False), form, change=True)

    erin.refresh_from_db()
    assert (erin.email, erin.phone, erin.first_name) == ("", "", "") and erin.erased_at is not None
