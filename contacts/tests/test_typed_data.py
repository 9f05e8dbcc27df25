"""Typed data: a declared attribute or event property refuses a value of another type, naming
the field, wherever it comes in (the event API, one or in a batch, the contact PUT, the import,
the admin); undeclared keys pass; each process keeps the definitions without a query per event."""
import time

import pytest
import tablib
from django.contrib import admin

from contacts import data_types
from contacts.models import AttributeDefinition, Contact, ContactEvent, DataType, EventPropertyDefinition
from contacts.resources import ContactResource

pytestmark = pytest.mark.django_db

BATCH = "/api/v1/events/batch"


@pytest.fixture
def ada(crm_api) -> Contact:
    """A contact the CRM created, known by external id crm-1 (the PUT also loads the definitions)."""
    crm_api.put("/api/v1/contacts/crm-1", {"email": "ada@example.com"})
    return Contact.objects.get(external_id="crm-1")


@pytest.fixture
def order_types(db):
    """order.placed declares amount (number), gift (boolean), ships_on (date) and paid_at (datetime)."""
    for name, data_type in [("amount", DataType.NUMBER), ("gift", DataType.BOOLEAN), ("ships_on", DataType.DATE),
                            ("paid_at", DataType.DATETIME)]:
        EventPropertyDefinition.objects.create(event="order.placed", name=name, data_type=data_type)


@pytest.fixture
def plan_type(db):
    """The contact attribute plan is declared as text, seats as a number."""
    AttributeDefinition.objects.create(name="plan", data_type=DataType.TEXT)
    AttributeDefinition.objects.create(name="seats", data_type=DataType.NUMBER)


def order(event_id="e-1", **properties) -> dict:
    return {"event_id": event_id, "external_id": "crm-1", "name": "order.placed", "properties": properties}


# --- the checks --------------------------------------------------------------------------------------

@pytest.mark.parametrize("data_type, value", [
    (DataType.TEXT, "gold"), (DataType.TEXT, ""),
    (DataType.NUMBER, 12), (DataType.NUMBER, 12.5), (DataType.NUMBER, -3),
    (DataType.BOOLEAN, True), (DataType.BOOLEAN, False),
    (DataType.DATE, "2026-12-03"), (DataType.DATE, "2024-02-29"),
    (DataType.DATETIME, "2026-12-03T09:15:00+01:00"), (DataType.DATETIME, "2026-12-03T09:15:00Z"),
    (DataType.DATETIME, "2026-12-03T09:15:00.123456-05:00"),
    (DataType.LIST, []), (DataType.LIST, ["a", 1]),
    (DataType.NUMBER, None),  # null is no value, of any type
])
def test_a_value_of_the_declared_type_is_accepted(data_type, value):
    assert data_types.type_problem("properties.x", data_type, value) is None


@pytest.mark.parametrize("data_type, value, expected", [
    (DataType.TEXT, 12, 'properties.x must be text, not 12.'),
    (DataType.NUMBER, "abc", 'properties.x must be a number, not "abc".'),
    (DataType.NUMBER, "12", 'properties.x must be a number, not "12".'),
    (DataType.NUMBER, True, 'properties.x must be a number, not true.'),
    (DataType.BOOLEAN, "yes", 'properties.x must be true or false, not "yes".'),
    (DataType.BOOLEAN, 1, 'properties.x must be true or false, not 1.'),
    (DataType.DATE, "03/12/2026", 'properties.x must be a date as yyyy-mm-dd, not "03/12/2026".'),
    (DataType.DATE, "2026-02-30", 'properties.x must be a date as yyyy-mm-dd, not "2026-02-30".'),
    (DataType.DATE, "2026-12-03T09:15:00Z", 'properties.x must be a date as yyyy-mm-dd, not "2026-12-03T09:15:00Z".'),
    (DataType.DATETIME, "2026-12-03T09:15:00", "properties.x must be a date and time in ISO 8601 with its offset, "
                                               'e.g. 2026-12-03T09:15:00+01:00, not "2026-12-03T09:15:00".'),
    (DataType.DATETIME, "2026-12-03", "properties.x must be a date and time in ISO 8601 with its offset, "
                                      'e.g. 2026-12-03T09:15:00+01:00, not "2026-12-03".'),
    (DataType.LIST, "a,b", 'properties.x must be a list, not "a,b".'),
    (DataType.LIST, {"a": 1}, 'properties.x must be a list, not {"a": 1}.'),
])
def test_a_value_of_another_type_is_refused_naming_the_field(data_type, value, expected):
    assert data_types.type_problem("properties.x", data_type, value) == expected


def test_a_long_refused_value_is_quoted_shortened():
    problem = data_types.type_problem("attributes.plan", DataType.NUMBER, "x" * 500)
    assert problem.startswith('attributes.plan must be a number, not "xxx') and problem.endswith("….")
    assert len(problem) < 120


# --- the event API -------------------------------------------------------------------------------------

def test_an_event_with_a_property_of_the_wrong_type_is_refused_with_400_naming_it(crm_api, ada, order_types):
    response = crm_api.post("/api/v1/events", order(amount="abc"))

    assert response.status_code == 400
    assert response.json()["error"] == {"code": "wrong_type", "field": "properties.amount",
                                        "message": 'properties.amount must be a number, not "abc".'}
    assert not ContactEvent.objects.exists()


def test_an_event_with_typed_properties_and_undeclared_ones_is_stored(crm_api, ada, order_types):
    properties = {"amount": 12.5, "gift": False, "ships_on": "2026-12-24", "paid_at": "2026-12-03T09:15:00+01:00",
                  "coupon": 42, "note": ["anything"]}

    response = crm_api.post("/api/v1/events", order(**properties))

    assert response.status_code == 202
    assert ContactEvent.objects.get().properties == properties


def test_properties_declared_for_another_event_are_not_checked(crm_api, ada, order_types):
    response = crm_api.post("/api/v1/events", {**order(amount="abc"), "name": "cart.viewed"})

    assert response.status_code == 202


def test_in_a_batch_only_the_event_of_the_wrong_type_is_refused_naming_the_field(crm_api, ada, order_types):
    response = crm_api.post(BATCH, {"events": [order("e-1", amount=10), order("e-2", gift="yes"),
                                               order("e-3", amount=3)]})

    body = response.json()
    assert response.status_code == 200
    assert [result["status"] for result in body["results"]] == ["stored", "refused", "stored"]
    assert body["results"][1]["error"] == {"status": 400, "code": "wrong_type", "field": "properties.gift",
                                           "message": 'properties.gift must be true or false, not "yes".'}
    assert sorted(ContactEvent.objects.values_list("idempotency_key", flat=True)) == ["e-1", "e-3"]


def test_an_event_whose_contact_data_has_an_attribute_of_the_wrong_type_is_refused_naming_it(crm_api, plan_type):
    body = {"contact": {"external_id": "crm-2", "attributes": {"seats": "many"}}, "name": "signed_up",
            "event_id": "s-1"}

    response = crm_api.post("/api/v1/events", body)

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "attributes.seats"
    assert not Contact.objects.filter(external_id="crm-2").exists()
    assert not ContactEvent.objects.exists()


def test_an_event_post_makes_as_many_queries_with_definitions_declared(crm_api, ada, order_types,
                                                                        django_assert_num_queries):
    # given the definitions loaded by an earlier request of this process
    crm_api.post("/api/v1/events", order("e-0", amount=1))

    # then an event costs what it cost before types existed: its one INSERT statement
    with django_assert_num_queries(1):
        response = crm_api.post("/api/v1/events", order("e-1", amount=2))
    assert response.status_code == 202


def test_the_first_check_of_a_process_loads_every_definition_in_one_query(order_types, plan_type,
                                                                          django_assert_num_queries):
    with django_assert_num_queries(1):
        data_types.check_properties("order.placed", {"amount": 1})
        data_types.check_attributes({"plan": "gold"})
        data_types.check_properties("order.placed", {"amount": 2})


# --- the per-process cache ------------------------------------------------------------------------------

def test_a_definition_saved_in_this_process_is_checked_at_once(crm_api, ada):
    assert crm_api.post("/api/v1/events", order("e-1", amount="abc")).status_code == 202

    EventPropertyDefinition.objects.create(event="order.placed", name="amount", data_type=DataType.NUMBER)

    assert crm_api.post("/api/v1/events", order("e-2", amount="abc")).status_code == 400


def test_a_definition_changed_by_another_process_is_checked_once_the_cache_time_is_over(crm_api, ada, settings):
    # given amount declared as text, and this process's copy of it
    settings.OMNI_TYPED_DATA_CACHE_SECONDS = 0.5
    definition = EventPropertyDefinition.objects.create(event="order.placed", name="amount", data_type=DataType.TEXT)
    assert crm_api.post("/api/v1/events", order("e-1", amount="abc")).status_code == 202

    # when another process makes it a number (an update sends no signal to this one)
    EventPropertyDefinition.objects.filter(pk=definition.pk).update(data_type=DataType.NUMBER)

    # then this process keeps its copy until the cache time is over, and checks the new type after
    assert crm_api.post("/api/v1/events", order("e-2", amount="abc")).status_code == 202
    time.sleep(0.6)
    response = crm_api.post("/api/v1/events", order("e-3", amount="abc"))
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "properties.amount"


# --- the contact PUT, the import and the admin ------------------------------------------------------------

def test_a_contact_put_with_an_attribute_of_the_wrong_type_is_refused_naming_it(crm_api, ada, plan_type):
    response = crm_api.put("/api/v1/contacts/crm-1", {"first_name": "Ada", "attributes": {"plan": 3, "seats": 4}})

    assert response.status_code == 400
    assert response.json()["error"] == {"code": "wrong_type", "field": "attributes.plan",
                                        "message": "attributes.plan must be text, not 3."}
    ada.refresh_from_db()
    assert (ada.first_name, ada.attributes) == ("", {})


def test_a_contact_put_with_typed_and_undeclared_attributes_stores_them(crm_api, ada, plan_type):
    attributes = {"plan": "gold", "seats": 4, "favourite": ["tea"]}

    response = crm_api.put("/api/v1/contacts/crm-1", {"attributes": attributes})

    assert response.status_code == 200
    assert response.json()["attributes"] == attributes


def test_a_null_removes_a_declared_attribute(crm_api, ada, plan_type):
    crm_api.put("/api/v1/contacts/crm-1", {"attributes": {"seats": 4}})

    response = crm_api.put("/api/v1/contacts/crm-1", {"attributes": {"seats": None}})

    assert response.status_code == 200
    assert response.json()["attributes"] == {}


def test_an_import_row_with_an_attribute_of_the_wrong_type_is_refused_naming_it(plan_type, admin_user):
    dataset = tablib.Dataset(headers=["external_id", "email", "attributes"])
    dataset.append(["crm-1", "ada@example.com", '{"plan": "gold", "seats": 3}'])
    dataset.append(["crm-2", "bob@example.com", '{"plan": "gold", "seats": "three"}'])

    result = ContactResource().import_data(dataset, dry_run=False, user=admin_user)

    assert result.has_validation_errors()
    [invalid] = result.invalid_rows
    assert invalid.number == 2
    assert invalid.error_dict["attributes"] == ['attributes.seats must be a number, not "three".']
    assert not Contact.objects.exists()


def test_an_import_with_typed_attributes_is_applied(plan_type, admin_user):
    dataset = tablib.Dataset(headers=["external_id", "email", "attributes"])
    dataset.append(["crm-1", "ada@example.com", '{"plan": "gold", "seats": 3, "other": "x"}'])

    result = ContactResource().import_data(dataset, dry_run=False, user=admin_user)

    assert not result.has_errors() and not result.has_validation_errors()
    assert Contact.objects.get().attributes == {"plan": "gold", "seats": 3, "other": "x"}


def contact_form(rf, admin_user, **data):
    """The Contact admin's own form, bound to `data` over a valid new contact."""
    request = rf.get("/admin/contacts/contact/add/")
    request.user = admin_user
    form_class = admin.site._registry[Contact].get_form(request)
    return form_class(data={"locale": "en", "lifecycle_stage": "subscriber", "attributes": "{}", **data})


def test_the_contact_admin_refuses_an_attribute_of_the_wrong_type_naming_it(rf, admin_user, plan_type):
    form = contact_form(rf, admin_user, attributes='{"seats": "three"}')

    assert not form.is_valid()
    assert form.errors["attributes"] == ['attributes.seats must be a number, not "three".']


def test_the_contact_admin_accepts_typed_attributes(rf, admin_user, plan_type):
    form = contact_form(rf, admin_user, attributes='{"seats": 3, "undeclared": "x"}')

    assert form.is_valid(), form.errors


def test_the_admin_pages_of_definitions_search_and_filter_by_type(admin_client, plan_type, order_types):
    attributes = admin_client.get("/admin/contacts/attributedefinition/", {"data_type__exact": "number"})
    properties = admin_client.get("/admin/contacts/eventpropertydefinition/", {"q": "amount"})

    assert attributes.status_code == properties.status_code == 200
    assert [d.name for d in attributes.context["cl"].result_list] == ["seats"]
    assert [d.name for d in properties.context["cl"].result_list] == ["amount"]


def test_a_definition_added_in_the_admin_is_audited_and_checked_at_once(admin_client, crm_api, ada):
    response = admin_client.post("/admin/contacts/attributedefinition/add/",
                                 {"name": "seats", "data_type": "number", "description": "Paid seats"})

    assert response.status_code == 302
    assert crm_api.put("/api/v1/contacts/crm-1", {"attributes": {"seats": "x"}}).status_code == 400
    from omni.models import AuditEntry
    assert AuditEntry.objects.filter(action="attribute_definition.created").exists()
