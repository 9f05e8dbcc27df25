"""Lifecycle stages are rows marketers keep: seeded with five, checked wherever a contact's stage
is set, and never deleted while a contact uses one."""
import pytest
import tablib
from django.contrib.auth.models import Group

from contacts.actions import upsert_contact
from contacts.models import Contact, LifecycleStage, LifecycleStageInUse, lifecycle_stage_keys
from contacts.resources import ContactResource

pytestmark = pytest.mark.django_db


def test_the_migration_seeds_the_five_stages_in_their_order():
    assert lifecycle_stage_keys() == ["subscriber", "lead", "trial", "customer", "churned"]
    assert list(LifecycleStage.objects.values_list("name", flat=True)) == [
        "Subscriber", "Lead", "Trial", "Customer", "Churned"]
    assert Contact().lifecycle_stage == "subscriber"


def test_a_new_stage_takes_its_place_by_order_and_contacts_may_hold_it(crm_api):
    LifecycleStage.objects.create(key="onboarding", name="Onboarding", order=25)

    response = crm_api.put("/api/v1/contacts/crm-1", {"lifecycle_stage": "onboarding"})

    assert response.status_code == 201
    assert lifecycle_stage_keys() == ["subscriber", "lead", "onboarding", "trial", "customer", "churned"]


def test_a_stage_added_by_another_process_is_accepted_at_once(crm_api):
    # given this process's copy of the stages
    crm_api.put("/api/v1/contacts/crm-1", {"lifecycle_stage": "lead"})

    # when another process adds one (no signal reaches this process)
    LifecycleStage.objects.bulk_create([LifecycleStage(key="vip", name="VIP", order=60)])

    # then a key this process does not know is looked up before it is refused
    assert crm_api.put("/api/v1/contacts/crm-1", {"lifecycle_stage": "vip"}).status_code == 200


def test_an_unknown_stage_is_refused_naming_the_field(crm_api):
    response = crm_api.put("/api/v1/contacts/crm-1", {"lifecycle_stage": "king"})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "lifecycle_stage"
    assert "subscriber, lead, trial, customer, churned" in response.json()["error"]["message"]


def test_an_import_row_with_an_unknown_stage_is_refused_naming_the_column(admin_user):
    dataset = tablib.Dataset(headers=["external_id", "lifecycle_stage"])
    dataset.append(["crm-1", "trial"])
    dataset.append(["crm-2", "king"])

    result = ContactResource().import_data(dataset, dry_run=False, user=admin_user)

    [invalid] = result.invalid_rows
    assert "'king' is not a lifecycle stage" in invalid.error_dict["lifecycle_stage"][0]
    assert not Contact.objects.exists()


def test_deleting_a_stage_in_use_is_refused_with_the_count_of_its_contacts():
    # given two trial contacts
    for external_id in ("crm-1", "crm-2"):
        upsert_contact(external_id, {"lifecycle_stage": "trial"}, actor_label="test")
    trial = LifecycleStage.objects.get(key="trial")

    # when it is deleted
    with pytest.raises(LifecycleStageInUse) as refused:
        trial.delete()

    # then it is kept, and the refusal says how many use it
    assert "used by 2 contacts" in refused.value.messages[0]
    assert LifecycleStage.objects.filter(key="trial").exists()


def test_a_bulk_delete_of_stages_is_refused_when_one_is_in_use():
    upsert_contact("crm-1", {"lifecycle_stage": "customer"}, actor_label="test")

    with pytest.raises(LifecycleStageInUse, match="used by 1 contact;"):
        LifecycleStage.objects.filter(key__in=["churned", "customer"]).delete()

    assert LifecycleStage.objects.filter(key__in=["churned", "customer"]).count() == 2


def test_a_stage_no_one_uses_is_deleted():
    upsert_contact("crm-1", {"lifecycle_stage": "trial"}, actor_label="test")

    LifecycleStage.objects.get(key="churned").delete()

    assert "churned" not in lifecycle_stage_keys()


def test_the_admin_refuses_to_delete_a_stage_in_use_saying_how_many_contacts_use_it(admin_client):
    upsert_contact("crm-1", {"lifecycle_stage": "lead"}, actor_label="test")
    lead = LifecycleStage.objects.get(key="lead")
    url = f"/admin/contacts/lifecyclestage/{lead.pk}/delete/"

    page = admin_client.get(url)
    admin_client.post(url, {"post": "yes"})
    admin_client.post("/admin/contacts/lifecyclestage/",
                      {"action": "delete_selected", "_selected_action": [lead.pk], "post": "yes"})

    assert "Lead: used by 1 contact; move them to another stage first" in page.content.decode()
    assert LifecycleStage.objects.filter(key="lead").exists()


def test_the_admin_deletes_an_unused_stage_and_audits_it(admin_client):
    from omni.models import AuditEntry

    churned = LifecycleStage.objects.get(key="churned")

    admin_client.post(f"/admin/contacts/lifecyclestage/{churned.pk}/delete/", {"post": "yes"})

    assert not LifecycleStage.objects.filter(key="churned").exists()
    assert AuditEntry.objects.filter(action="lifecycle_stage.deleted").exists()


def test_the_admin_lists_stages_by_order_and_offers_them_on_the_contact_page(admin_client):
    LifecycleStage.objects.create(key="onboarding", name="Onboarding", order=25)

    listing = admin_client.get("/admin/contacts/lifecyclestage/")
    contact_page = admin_client.get("/admin/contacts/contact/add/")
    stage_page = admin_client.get(f"/admin/contacts/lifecyclestage/{LifecycleStage.objects.get(key='lead').pk}/change/")

    assert [s.key for s in listing.context["cl"].result_list] == [
        "subscriber", "lead", "onboarding", "trial", "customer", "churned"]
    assert 'value="onboarding"' in contact_page.content.decode()
    assert stage_page.status_code == 200 and 'name="key"' not in stage_page.content.decode()  # the key stays


# No role deletes (omni/tests/test_roles.py); a superuser deletes a stage nobody uses.
@pytest.mark.parametrize("group, verbs", [
    ("Marketers", {"add", "change", "view"}),
    ("Administrators", {"add", "change", "view"}),
    ("Compliance", {"view"}),
    ("Support agents", {"view"}),
])
def test_each_role_holds_its_permissions_on_typed_data(role_groups, group, verbs):
    held = set(Group.objects.get(name=group).permissions.filter(content_type__app_label="contacts")
               .values_list("codename", flat=True))

    for model in ("attributedefinition", "eventpropertydefinition", "lifecyclestage"):
        assert {verb for verb in ("add", "change", "delete", "view") if f"{verb}_{model}" in held} == verbs


def test_a_stage_a_segment_or_a_journey_s_update_step_names_is_not_deleted():
    from campaigns.models import Journey, JourneyStep
    from contacts.models import LifecycleStage, LifecycleStageInUse, Segment

    LifecycleStage.objects.create(key="vip", name="VIP", order=60)
    LifecycleStage.objects.create(key="lapsed", name="Lapsed", order=70)
    Segment.objects.create(name="VIPs", definition={"match": "all", "filters": [
        {"match": "any", "filters": [{"kind": "lifecycle_stage", "stages": ["vip"]}]}]})
    journey = Journey.objects.create(name="Win back", slug="win-back", trigger_event="lapsed")
    JourneyStep.objects.create(journey=journey, key="mark", position=1, kind="update",
                               config={"lifecycle_stage": "lapsed"})

    with pytest.raises(LifecycleStageInUse, match="used by 1 segment"):
        LifecycleStage.objects.get(key="vip").delete()
    with pytest.raises(LifecycleStageInUse, match="used by 1 journey"):
        LifecycleStage.objects.get(key="lapsed").delete()
