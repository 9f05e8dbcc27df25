"""The staff roles: groups made by omni/migrations/0002_role_groups.py (as 0012 last set them) and what each may do."""
import importlib
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db

ROLE_NAMES = {"Marketers", "Support agents", "Compliance"}
role_groups = importlib.import_module("omni.migrations.0002_role_groups")
# The latest migration that sets the roles.
current_roles = importlib.import_module("omni.migrations.0012_support_roles")
later_roles = importlib.import_module("omni.migrations.0016_webhook_roles")
compliance_roles = importlib.import_module("omni.migrations.0020_compliance_roles")
# The last migration that sets the roles: what the tests that go back and forth end on.
operator_roles = importlib.import_module("omni.migrations.0021_operator_roles")
latest_roles = importlib.import_module("omni.migrations.0022_erasure_request_roles")
LATEST = ("omni", "0022_erasure_request_roles")


def permissions_of(group_name: str) -> set[str]:
    group = Group.objects.get(name=group_name)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


@pytest.fixture
def user_in(django_user_model):
    """Makes a staff user who belongs to one role group."""

    def make(group_name: str):
        user = django_user_model.objects.create_user(
            username=group_name.lower().replace(" ", "-"), password="not-used", is_staff=True
        )
        user.groups.add(Group.objects.get(name=group_name))
        return user

    return make


def test_the_migration_creates_the_three_role_groups():
    assert ROLE_NAMES <= set(Group.objects.values_list("name", flat=True))


def test_marketers_build_contacts_templates_and_journeys_but_cannot_approve_campaigns():
    permissions = permissions_of("Marketers")

    assert {
        "contacts.add_contact", "contacts.change_contact", "contacts.change_segment", "contacts.change_device",
        "message_templates.add_template", "message_templates.change_templatevariant",
        "campaigns.add_journey", "campaigns.change_journey", "campaigns.change_journeystep", "campaigns.add_campaign",
        "campaigns.view_enrollment", "channels.view_message", "channels.view_outboxmessage",
        "compliance.view_consent", "compliance.view_consentchange",
    } <= permissions
    assert "campaigns.approve_campaign" not in permissions
    assert not {p for p in permissions if p.startswith("compliance.")
                and not p.startswith("compliance.view_consent") and p != "compliance.add_consentchange"}


def test_support_agents_work_conversations_but_cannot_export_audits():
    permissions = permissions_of("Support agents")

    assert {
        "contacts.view_contact", "contacts.view_device", "contacts.view_contactevent",
        "channels.view_conversation", "channels.change_conversation", "channels.view_inboundmessage",
        "channels.view_message", "channels.view_delivery", "channels.view_deliveryevent",
        "channels.view_outboxmessage", "compliance.view_consent", "compliance.view_consentchange",
        "compliance.view_suppression",
    } <= permissions
    assert "omni.export_auditentry" not in permissions
    assert "omni.view_auditentry" not in permissions
    assert "contacts.change_contact" not in permissions


def test_compliance_staff_manage_rules_and_export_audits_but_cannot_edit_journeys():
    permissions = permissions_of("Compliance")

    assert {
        "compliance.add_suppression", "compliance.change_suppression", "compliance.add_quiethours",
        "compliance.change_frequencycap", "compliance.add_sendingpause", "compliance.view_sendledger",
        "omni.view_auditentry",
        "omni.export_auditentry", "contacts.view_contact", "campaigns.view_journey",
        "campaigns.view_campaign", "message_templates.view_template", "channels.view_message",
        "channels.view_delivery",
    } <= permissions
    assert not {
        "campaigns.add_journey", "campaigns.change_journey", "campaigns.change_journeystep",
        "campaigns.change_campaign", "campaigns.approve_campaign", "message_templates.change_template",
        "contacts.change_contact", "compliance.add_sendledger", "compliance.change_sendledger",
    } & permissions


# The one delete a role holds: a campaign's variant is a row of the draft marketers edit (a
# variant recipients were sent keeps its row: they protect it).
ROLE_DELETES = {"campaigns.delete_campaignvariant"}


def test_no_role_may_write_or_delete_audit_entries_or_delete_anything():
    for group_name in ROLE_NAMES:
        permissions = permissions_of(group_name)

        assert not {"omni.add_auditentry", "omni.change_auditentry", "compliance.view_auditentry"} & permissions
        assert not [p for p in permissions - ROLE_DELETES if p.split(".")[1].startswith("delete_")]


def test_a_user_gets_the_permissions_of_their_group(user_in):
    compliance = user_in("Compliance")
    support = user_in("Support agents")
    marketer = user_in("Marketers")

    assert compliance.has_perm("omni.export_auditentry")
    assert not compliance.has_perm("campaigns.change_journey")
    assert not support.has_perm("omni.export_auditentry")
    assert support.has_perm("channels.change_conversation")
    assert marketer.has_perm("campaigns.change_journey")
    assert not marketer.has_perm("campaigns.approve_campaign")


def test_reversing_the_migration_removes_the_groups_and_reapplying_restores_them():
    # given the app registry as the migration sees it
    state_apps = MigrationExecutor(connection).loader.project_state(LATEST).apps
    schema_editor = SimpleNamespace(connection=connection)  # the functions only read its connection
    before = {name: permissions_of(name) for name in ROLE_NAMES}

    # when
    role_groups.remove_role_groups(state_apps, schema_editor)

    # then
    assert not Group.objects.filter(name__in=ROLE_NAMES).exists()

    # when applied again
    role_groups.create_role_groups(state_apps, schema_editor)
    latest_roles.apply_roles(state_apps, schema_editor)

    # then
    assert {name: permissions_of(name) for name in ROLE_NAMES} == before


def test_compliance_staff_edit_keyword_lists_and_opt_out_lines_support_reads_keywords_marketers_read_lines():
    compliance, support, marketers = (permissions_of(name) for name in ("Compliance", "Support agents", "Marketers"))

    assert {"compliance.add_keywordlist", "compliance.change_keywordlist", "compliance.view_keywordlist",
            "message_templates.add_optoutdisclosure", "message_templates.change_optoutdisclosure"} <= compliance
    assert "compliance.view_keywordlist" in support
    assert "compliance.change_keywordlist" not in support
    assert "message_templates.view_optoutdisclosure" in marketers
    assert "message_templates.change_optoutdisclosure" not in marketers


def test_support_agents_reply_note_tag_use_saved_replies_and_block_senders_administrators_keep_support_settings(
    user_in,
):
    support, administrators = permissions_of("Support agents"), permissions_of("Administrators")

    assert {"channels.reply_conversation", "channels.change_conversation", "channels.add_conversationnote",
            "channels.view_conversationnote", "channels.change_conversationtag", "channels.view_savedreply",
            "channels.add_blockedsender", "channels.view_blockedsender"} <= support
    assert not {"channels.change_savedreply", "channels.change_servicelevel", "channels.change_businesshours",
                "channels.change_escalationrule"} & support
    # They unblock senders (audited), mark themselves available and pause one contact's enrollment.
    assert {"channels.change_blockedsender", "channels.change_agentstatus", "campaigns.pause_enrollment"} <= support
    assert support <= administrators
    for model in ("businesshours", "openinghours", "holiday", "servicelevel", "supportqueue", "agentstatus",
                  "escalationrule", "autoresponse", "savedreply"):
        assert {f"channels.{verb}_{model}" for verb in ("add", "change", "delete", "view")} <= administrators, model
    assert not ({"channels.reply_conversation", "channels.view_savedreply"}
                & (permissions_of("Marketers") | permissions_of("Compliance")))
    assert user_in("Support agents").has_perm("channels.reply_conversation")


def test_the_support_roles_migration_goes_back_to_the_roles_before_it_and_forth_again():
    state_apps = MigrationExecutor(connection).loader.project_state(LATEST).apps
    schema_editor = SimpleNamespace(connection=connection)
    after = {name: permissions_of(name) for name in (*ROLE_NAMES, "Administrators")}

    current_roles.restore_previous_roles(state_apps, schema_editor)
    assert "channels.reply_conversation" not in permissions_of("Support agents")
    assert "channels.change_servicelevel" not in permissions_of("Administrators")

    current_roles.apply_roles(state_apps, schema_editor)
    assert "campaigns.pause_enrollment" not in permissions_of("Marketers")
    latest_roles.apply_roles(state_apps, schema_editor)
    assert {name: permissions_of(name) for name in (*ROLE_NAMES, "Administrators")} == after


def test_administrators_manage_webhook_endpoints_and_default_plans_marketers_see_endpoints_compliance_reads_calls():
    administrators, marketers, compliance, support = (
        permissions_of(name) for name in ("Administrators", "Marketers", "Compliance", "Support agents"))

    assert {"omni.add_webhookendpoint", "omni.change_webhookendpoint", "omni.view_webhookcall",
            "channels.change_defaultchannelplan"} <= administrators
    assert {"omni.view_webhookendpoint", "channels.view_defaultchannelplan"} <= marketers
    assert not {"omni.change_webhookendpoint", "omni.view_webhookcall", "channels.change_defaultchannelplan"} & marketers
    assert {"omni.view_webhookcall", "channels.view_defaultchannelplan"} <= compliance
    assert "omni.view_webhookendpoint" not in compliance
    assert not {p for p in support if "webhook" in p or "defaultchannelplan" in p}


def test_the_webhook_roles_migration_goes_back_to_the_roles_before_it_and_forth_again():
    state_apps = MigrationExecutor(connection).loader.project_state(LATEST).apps
    schema_editor = SimpleNamespace(connection=connection)
    after = {name: permissions_of(name) for name in (*ROLE_NAMES, "Administrators")}

    later_roles.restore_previous_roles(state_apps, schema_editor)
    assert "omni.view_webhookendpoint" not in permissions_of("Marketers")
    assert "omni.change_webhookendpoint" not in permissions_of("Administrators")

    later_roles.apply_roles(state_apps, schema_editor)
    latest_roles.apply_roles(state_apps, schema_editor)
    assert {name: permissions_of(name) for name in (*ROLE_NAMES, "Administrators")} == after


def test_marketers_and_administrators_mark_test_contacts_and_no_role_deletes_contacts():
    marketers, administrators = permissions_of("Marketers"), permissions_of("Administrators")

    assert "contacts.mark_test_contact" in marketers
    assert "contacts.mark_test_contact" in administrators
    assert not {"contacts.mark_test_contact"} & (permissions_of("Support agents") | permissions_of("Compliance"))
    assert not {p for p in marketers | administrators if p == "contacts.delete_contact"}


def test_the_test_contact_migration_goes_back_to_the_roles_before_it_and_forth_again():
    state_apps = MigrationExecutor(connection).loader.project_state(LATEST).apps
    schema_editor = SimpleNamespace(connection=connection)
    after = {name: permissions_of(name) for name in (*ROLE_NAMES, "Administrators")}
    test_contacts = importlib.import_module("omni.migrations.0018_test_contact_permission")

    test_contacts.restore_previous_roles(state_apps, schema_editor)
    assert "contacts.mark_test_contact" not in permissions_of("Marketers")

    test_contacts.apply_roles(state_apps, schema_editor)
    latest_roles.apply_roles(state_apps, schema_editor)
    assert {name: permissions_of(name) for name in (*ROLE_NAMES, "Administrators")} == after


def test_marketers_build_campaign_variants_and_see_arbitration_rules_administrators_set_them():
    marketers, administrators, compliance, approvers = (
        permissions_of(name) for name in ("Marketers", "Administrators", "Compliance", "Marketing approvers"))
    variant = {f"campaigns.{verb}_campaignvariant" for verb in ("add", "change", "delete", "view")}
    rule = {f"channels.{verb}_arbitrationrule" for verb in ("add", "change", "delete", "view")}

    assert variant <= marketers
    assert "channels.view_arbitrationrule" in marketers
    assert not (rule - {"channels.view_arbitrationrule"}) & marketers
    assert variant | rule <= administrators
    assert {"campaigns.view_campaignvariant", "channels.view_arbitrationrule"} <= compliance
    assert not (variant | rule) - {"campaigns.view_campaignvariant", "channels.view_arbitrationrule"} & compliance
    assert "campaigns.view_campaignvariant" in approvers
    assert not (variant - {"campaigns.view_campaignvariant"}) & approvers
    assert not (variant | rule) & permissions_of("Support agents")


def test_compliance_staff_record_consent_import_replay_and_erase_without_changing_contacts():
    compliance = permissions_of("Compliance")
    marketers = permissions_of("Marketers")

    assert {"compliance.add_consentchange", "compliance.add_consenttext", "compliance.add_replayrun",
            "contacts.add_contactimport", "contacts.erase_contact"} <= compliance
    assert "contacts.change_contact" not in compliance
    assert {"compliance.add_consentchange", "contacts.add_contactimport"} <= marketers
    assert not {"contacts.erase_contact", "compliance.add_replayrun", "compliance.add_consenttext"} & marketers
    assert "contacts.erase_contact" in permissions_of("Administrators")
    assert "contacts.erase_contact" not in permissions_of("Support agents")


def test_the_compliance_roles_migration_goes_back_to_the_roles_before_it_and_forth_again():
    state_apps = MigrationExecutor(connection).loader.project_state(LATEST).apps
    schema_editor = SimpleNamespace(connection=connection)
    names = (*ROLE_NAMES, "Administrators", "Marketing approvers")
    after = {name: permissions_of(name) for name in names}

    compliance_roles.restore_previous_roles(state_apps, schema_editor)
    assert "contacts.erase_contact" not in permissions_of("Compliance")
    assert "compliance.add_consentchange" not in permissions_of("Marketers")

    compliance_roles.apply_roles(state_apps, schema_editor)
    latest_roles.apply_roles(state_apps, schema_editor)
    assert {name: permissions_of(name) for name in names} == after


# The models whose admins retry quarantined rows (and, for deliveries, settle uncertain ones):
# both actions ask for the change permission of a read-only admin.
OPERATED = {"channels.change_message", "channels.change_delivery", "channels.change_inboundmessage",
            "contacts.change_contactevent", "campaigns.change_enrollment", "campaigns.change_campaignrecipient"}


def test_administrators_retry_quarantined_rows_and_settle_deliveries_and_no_other_role_does():
    assert OPERATED <= permissions_of("Administrators")
    for group_name in (*ROLE_NAMES, "Marketing approvers"):
        assert not OPERATED & permissions_of(group_name), group_name


def test_the_operator_roles_migration_goes_back_to_the_roles_before_it_and_forth_again():
    state_apps = MigrationExecutor(connection).loader.project_state(LATEST).apps
    schema_editor = SimpleNamespace(connection=connection)
    names = (*ROLE_NAMES, "Administrators", "Marketing approvers")
    after = {name: permissions_of(name) for name in names}

    operator_roles.restore_previous_roles(state_apps, schema_editor)
    assert not OPERATED & permissions_of("Administrators")
    assert "channels.view_delivery" in permissions_of("Administrators")

    operator_roles.apply_roles(state_apps, schema_editor)
    latest_roles.apply_roles(state_apps, schema_editor)
    assert {name: permissions_of(name) for name in names} == after


def test_compliance_staff_and_administrators_see_the_queued_erasures_and_nobody_changes_them():
    for group_name in ("Compliance", "Administrators"):
        assert "contacts.view_erasurerequest" in permissions_of(group_name), group_name
    for group_name in ("Marketers", "Support agents", "Marketing approvers"):
        assert "contacts.view_erasurerequest" not in permissions_of(group_name), group_name
    for group_name in (*ROLE_NAMES, "Administrators", "Marketing approvers"):
        assert not {"contacts.add_erasurerequest", "contacts.change_erasurerequest",
                    "contacts.delete_erasurerequest"} & permissions_of(group_name), group_name


def test_the_erasure_request_roles_migration_goes_back_to_the_roles_before_it_and_forth_again():
    state_apps = MigrationExecutor(connection).loader.project_state(LATEST).apps
    schema_editor = SimpleNamespace(connection=connection)
    names = (*ROLE_NAMES, "Administrators", "Marketing approvers")
    after = {name: permissions_of(name) for name in names}

    latest_roles.restore_previous_roles(state_apps, schema_editor)
    assert "contacts.view_erasurerequest" not in permissions_of("Compliance")

    latest_roles.apply_roles(state_apps, schema_editor)
    assert {name: permissions_of(name) for name in names} == after
