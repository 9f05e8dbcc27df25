"""Test contacts: set in the admin only by staff allowed to mark them, never through the API."""
import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from contacts.models import Contact
from omni.models import AuditEntry
from omni.tests.admin_pages import change_form_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def tess(db):
    return Contact.objects.create(external_id="tess", first_name="Tess", email="tess@example.com")


def log_in(client, django_user_model, *, name, group=None, permissions=()):
    user = django_user_model.objects.create_user(username=name, password="not-used", is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(content_type__app_label="contacts", codename=codename))
    client.force_login(user)
    return user


def mark_as_test_in_the_admin(client, contact):
    url = reverse("admin:contacts_contact_change", args=[contact.pk])
    page = client.get(url)
    assert page.status_code == 200
    data = change_form_data(page)
    data["is_test"] = "on"
    return page, client.post(url, data)


def test_a_marketer_marks_a_contact_as_a_test_contact_in_the_admin_and_it_is_audited(client, django_user_model,
                                                                                     role_groups, tess):
    log_in(client, django_user_model, name="marketer", group="Marketers")

    page, response = mark_as_test_in_the_admin(client, tess)

    assert 'name="is_test"' in page.content.decode()
    assert response.status_code == 302, response.content.decode()[:2000]
    tess.refresh_from_db()
    assert tess.is_test
    assert AuditEntry.objects.get(action="contact.updated").data == {"fields": ["is_test"]}


def test_staff_who_may_change_contacts_but_not_mark_test_contacts_cannot_set_it(client, django_user_model, tess):
    log_in(client, django_user_model, name="editor", permissions=("view_contact", "change_contact"))

    page, response = mark_as_test_in_the_admin(client, tess)

    # shown, read-only: the box is not in the form, and a forged value is ignored
    assert 'name="is_test"' not in page.content.decode()
    assert response.status_code == 302
    tess.refresh_from_db()
    assert not tess.is_test


def test_the_contact_list_filters_test_contacts(admin_client, tess):
    Contact.objects.create(external_id="ann", first_name="Ann")
    Contact.objects.filter(pk=tess.pk).update(is_test=True)

    response = admin_client.get(reverse("admin:contacts_contact_changelist") + "?is_test__exact=1")

    assert [c.pk for c in response.context["cl"].result_list] == [tess.pk]


def test_the_contact_api_refuses_is_test_naming_the_field(crm_api):
    response = crm_api.put("/api/v1/contacts/crm-1", {"email": "ada@example.com", "is_test": True})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "is_test"
    assert not Contact.objects.filter(is_test=True).exists()


def test_an_event_cannot_make_its_contact_a_test_contact(crm_api):
    response = crm_api.post("/api/v1/events", {"contact": {"external_id": "crm-2", "email": "bo@example.com",
                                                           "is_test": True},
                                               "name": "signed_up", "properties": {}},
                            **{"Idempotency-Key": "e-1"})

    assert response.status_code in (400, 422)
    assert response.json()["error"]["field"].endswith("is_test")
    assert not Contact.objects.filter(is_test=True).exists()


def test_an_existing_test_contact_stays_one_when_the_api_updates_it(crm_api):
    crm_api.put("/api/v1/contacts/crm-1", {"email": "ada@example.com"})
    Contact.objects.filter(external_id="crm-1").update(is_test=True)

    crm_api.put("/api/v1/contacts/crm-1", {"first_name": "Ada"})

    assert Contact.objects.get(external_id="crm-1").is_test
