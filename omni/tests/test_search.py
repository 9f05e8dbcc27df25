"""The header's contact search: a phone in any notation, an email in any case, an external id or
the start of a name; one match opens the contact, several give a list, none says what was tried."""
import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from contacts.models import Contact
from omni.web.search import MAX_RESULTS, find_contacts
from omni.web.views import contact_page_url

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def us_numbers(settings):
    settings.OMNI_DEFAULT_COUNTRY = "US"


@pytest.fixture
def bob():
    Contact.objects.create(external_id="crm-alice", first_name="Alice", last_name="Archer", email="alice@example.com",
                           phone="+14155550101")
    return Contact.objects.create(external_id="crm-bob-7", first_name="Bob", last_name="Baker",
                                  email="bob.baker@example.com", phone="+14155550102")


@pytest.mark.parametrize("typed", ["+1 415-555-0102", "4155550102", "(415) 555-0102", "BOB.Baker@Example.COM",
                                   "crm-bob-7", "bak", "BOB", "bob b"])
def test_one_contact_is_found_however_it_is_typed(bob, typed):
    assert [contact.pk for contact in find_contacts(typed).contacts] == [bob.pk]


def test_a_national_number_is_read_with_the_default_country_and_says_so(bob, settings):
    assert find_contacts("4155550102").readings[0] == "read as +14155550102"

    settings.OMNI_DEFAULT_COUNTRY = ""
    assert find_contacts("4155550102").contacts == []


def test_an_erased_contact_never_matches(bob):
    Contact.objects.filter(pk=bob.pk).update(erased_at=timezone.now())

    for typed in ("+14155550102", "bob.baker@example.com", "crm-bob-7", "Bob"):
        assert find_contacts(typed).contacts == []


def test_at_most_fifty_contacts_are_listed():
    Contact.objects.bulk_create(Contact(first_name="Sam", last_name=f"Smith{i:02d}") for i in range(MAX_RESULTS + 3))

    result = find_contacts("sam")

    assert len(result.contacts) == MAX_RESULTS and result.more


@pytest.fixture
def support_client(client, django_user_model, role_groups):
    agent = django_user_model.objects.create_user(username="agent", password="pw", is_staff=True)
    agent.groups.add(Group.objects.get(name="Support agents"))
    client.force_login(agent)
    return client


def test_one_match_opens_the_contacts_timeline(support_client, bob):
    response = support_client.get("/admin/find/", {"q": "(415) 555-0102"})

    assert response.status_code == 302
    assert response["Location"] == contact_page_url(bob.pk)


def test_several_matches_are_listed_with_name_email_and_phone(support_client, bob):
    Contact.objects.create(first_name="Bobby", last_name="Tables", email="bobby@example.com")

    page = support_client.get("/admin/find/", {"q": "bob"}).content.decode()

    assert "Bob Baker" in page and "bob.baker@example.com" in page and "+14155550102" in page
    assert "Bobby Tables" in page and "bobby@example.com" in page


def test_no_match_says_what_was_tried(support_client, bob):
    page = support_client.get("/admin/find/", {"q": "(415) 555-0199"}).content.decode()

    assert "No contact found" in page
    assert "read as +14155550199" in page


def test_searching_needs_the_permission_to_view_contacts(client, django_user_model, bob):
    nobody = django_user_model.objects.create_user(username="nobody", password="pw", is_staff=True)
    client.force_login(nobody)

    assert client.get("/admin/find/", {"q": "bob"}).status_code == 403


def test_the_search_box_is_in_every_admin_page_header(support_client):
    for url in ("/admin/", "/admin/contacts/contact/", "/admin/channels/conversation/"):
        assert 'id="omni-search"' in support_client.get(url).content.decode(), url


@pytest.mark.postgres
def test_a_name_prefix_is_read_through_an_index_on_postgresql(bob):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        find_contacts("bak")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny table would be scanned anyway
        cursor.execute("EXPLAIN " + queries.captured_queries[-1]["sql"])
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "contact_first_name_prefix" in plan and "contact_last_name_prefix" in plan
