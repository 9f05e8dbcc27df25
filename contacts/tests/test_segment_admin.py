"""The segment page: a form of filters stored as the definition, and the live count under it."""
import json

import pytest
from django.contrib.auth.models import Permission, User
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL
from django.urls import reverse

from contacts import segments
from contacts.models import AttributeDefinition, Contact, DataType, Segment
from omni.models import AuditEntry

COUNT_URL = "admin:contacts_segment_count"
CUSTOMERS = {"match": "all", "filters": [{"kind": "lifecycle_stage", "stages": ["customer"]},
                                        {"kind": "attribute", "attribute": "score", "operator": "at_least",
                                         "value": 50}]}


@pytest.fixture
def customers(db):
    AttributeDefinition.objects.create(name="score", data_type=DataType.NUMBER)
    for i in range(12):
        Contact.objects.create(first_name=f"Cust{i}", lifecycle_stage="customer", attributes={"score": 60 + i})
    Contact.objects.create(first_name="Low", lifecycle_stage="customer", attributes={"score": 10})
    Contact.objects.create(first_name="Lead", lifecycle_stage="lead", attributes={"score": 90})


def _user(*codenames):
    user = User.objects.create_user(f"user-{'-'.join(codenames) or 'none'}", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="contacts", codename__in=codenames))
    return user


def _count(client, definition):
    return client.post(reverse(COUNT_URL), json.dumps({"definition": definition}), content_type="application/json")


def test_the_segment_page_is_a_form_of_filters_not_json(admin_client, customers):
    page = admin_client.get(reverse("admin:contacts_segment_add"))

    html = page.content.decode()
    assert page.status_code == 200
    assert 'type="hidden" name="definition"' in html and "<textarea" not in html.split('name="definition"')[0][-200:]
    assert "contacts/segment_form.js" in html and "data-segment-builder" in html
    catalog = json.loads(html.split('id="id_definition-catalog" type="application/json">')[1].split("</script>")[0])
    assert {k["name"] for k in catalog["kinds"]} >= {"attribute", "lifecycle_stage", "event", "consent", "engagement"}
    assert catalog["attributes"] == {"score": "number"}


def test_saving_the_form_stores_the_definition_and_audits_it(admin_client, customers):
    response = admin_client.post(reverse("admin:contacts_segment_add"), {
        "name": "Good customers", "description": "", "definition": json.dumps(CUSTOMERS), "refresh_seconds": 60})

    assert response.status_code == 302
    segment = Segment.objects.get(name="Good customers")
    assert segment.definition == CUSTOMERS
    assert AuditEntry.objects.filter(action="segment.created", object_id=str(segment.pk)).exists()


def test_a_bad_filter_is_refused_naming_the_field_and_nothing_is_lost(admin_client, customers):
    bad = {"match": "all", "filters": [{"kind": "attribute", "attribute": "score", "operator": "at_least",
                                        "value": "lots"}]}

    response = admin_client.post(reverse("admin:contacts_segment_add"), {
        "name": "Bad", "description": "", "definition": json.dumps(bad), "refresh_seconds": 60})

    assert response.status_code == 200
    assert "filters[0].value must be a number" in response.content.decode()
    assert json.loads(response.context["adminform"].form["definition"].value()) == bad
    assert not Segment.objects.exists()


def test_the_live_count_counts_the_unsaved_definition_with_a_sample(admin_client, customers):
    answer = _count(admin_client, CUSTOMERS).json()

    assert answer["count"] == 12 and answer["problems"] == [] and not answer["too_slow"]
    assert len(answer["sample"]) == 10
    assert answer["sample"][0]["name"] == "Cust11"
    assert answer["sample"][0]["url"] == reverse("admin:contacts_contact_change",
                                                 args=[Contact.objects.get(first_name="Cust11").pk])


def test_the_live_count_names_what_is_wrong(admin_client, customers):
    answer = _count(admin_client, {"filters": [{"kind": "lifecycle_stage", "stages": []}]}).json()

    assert answer["problems"] == ["filters[0].stages must list at least one lifecycle stage"]
    assert answer["count"] is None


@pytest.fixture
def slow_kind():
    """A filter kind whose query counts to ten million before keeping anyone."""
    slow = ("EXISTS (WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 10000000) "
            "SELECT 1 FROM c WHERE n = -1)")
    segments.register(segments.FilterKind(name="slow", label="Slow", fields=[], validate=lambda config, path: [],
                                          to_q=lambda config, now: Q(RawSQL(slow, [], output_field=BooleanField()))))
    yield
    segments._KINDS.pop("slow")


def test_a_count_past_the_statement_timeout_says_too_slow(admin_client, customers, slow_kind, settings):
    settings.SEGMENT_COUNT_TIMEOUT_MS = 100

    answer = _count(admin_client, {"filters": [{"kind": "slow"}]}).json()

    assert answer["too_slow"] is True and answer["count"] is None
    # the connection is still usable at its usual settings afterwards
    assert _count(admin_client, CUSTOMERS).json()["count"] == 12


def test_counting_needs_the_view_permission_and_saving_the_change_one(client, customers):
    client.force_login(_user())
    assert _count(client, CUSTOMERS).status_code == 403

    client.force_login(_user("view_segment"))
    assert _count(client, CUSTOMERS).json()["count"] == 12
    segment = Segment.objects.create(name="Seg", definition={"filters": []})
    response = client.post(reverse("admin:contacts_segment_change", args=[segment.pk]), {
        "name": "Seg", "description": "", "definition": json.dumps(CUSTOMERS), "refresh_seconds": 60})
    assert response.status_code == 403
    assert Segment.objects.get(pk=segment.pk).definition == {"filters": []}
