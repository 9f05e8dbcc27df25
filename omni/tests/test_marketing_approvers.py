"""The Marketing approvers role (omni/migrations/0017_marketing_approvers.py): both approve
permissions and what they need to see what they approve; no edits, no deletes."""
import importlib
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db

approvers_roles = importlib.import_module("omni.migrations.0017_marketing_approvers")


def permissions_of(group_name: str) -> set[str]:
    group = Group.objects.get(name=group_name)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def test_marketing_approvers_approve_journeys_and_campaigns_and_see_them_but_change_and_delete_nothing(role_groups):
    permissions = permissions_of("Marketing approvers")

    assert {"campaigns.approve_journey", "campaigns.approve_campaign", "campaigns.view_journey",
            "campaigns.view_journeystep", "campaigns.view_campaign", "message_templates.view_template",
            "message_templates.view_templateversion", "contacts.view_segment"} <= permissions
    assert not [p for p in permissions if p.split(".")[1].startswith(("add_", "change_", "delete_"))]
    # Marketers, who request approval, do not give it.
    assert not {"campaigns.approve_journey", "campaigns.approve_campaign"} & permissions_of("Marketers")


def test_the_approvers_migration_goes_back_to_the_roles_before_it_and_forth_again(role_groups):
    state_apps = MigrationExecutor(connection).loader.project_state(("omni", "0017_marketing_approvers")).apps
    schema_editor = SimpleNamespace(connection=connection)
    approvers_roles.apply_roles(state_apps, schema_editor)  # the roles as that migration left them
    before = {group.name: permissions_of(group.name) for group in Group.objects.all()}

    approvers_roles.restore_previous_roles(state_apps, schema_editor)
    assert not Group.objects.filter(name="Marketing approvers").exists()

    approvers_roles.apply_roles(state_apps, schema_editor)
    assert {group.name: permissions_of(group.name) for group in Group.objects.all()} == before


def test_the_demo_has_an_approver_login_who_approved_the_marketers_welcome_journey(
    journey_approval_required, settings, tmp_path,
):
    import io
    import json

    from django.core.management import call_command

    from campaigns.models import Journey, JourneyStatus

    settings.VAR_DIR = tmp_path
    out = io.StringIO()

    call_command("seed_demo", stdout=out)

    logins = json.loads((tmp_path / "demo-logins.json").read_text())
    assert "approver" in logins and logins["approver"] in out.getvalue()
    assert "approver" in out.getvalue() and "Marketing approvers" in out.getvalue()
    welcome = Journey.objects.select_related("owner", "approved_by", "approval_requested_by").get(slug="welcome")
    assert welcome.status == JourneyStatus.ACTIVE
    assert (welcome.owner.username, welcome.approval_requested_by.username, welcome.approved_by.username) == (
        "marketer", "marketer", "approver")
    assert welcome.objective and welcome.lifecycle_stage.key == "trial" and welcome.goal_event == "activated"
