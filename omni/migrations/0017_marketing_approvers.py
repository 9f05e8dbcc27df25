"""A fifth role, Marketing approvers (issue 20): the second pair of eyes on what marketers send.
They approve journeys and campaigns (never their own request: omni/lib/approval.py), and see what
they approve: journeys with their steps and versions, campaigns, the templates both send, the
segments they reach and the default channel plans a send step may take.

They do not get change_journey or change_campaign: approval goes through its own page action
(campaigns/journey_approval_admin.py), which asks only for the approve permission and the view
permission, so the person who says yes is never also the one who edits what was approved. Like
every role they delete nothing (omni/tests/test_roles.py)."""
import copy
import importlib

from django.db import migrations

_first = importlib.import_module("omni.migrations.0002_role_groups")
_previous = importlib.import_module("omni.migrations.0016_webhook_roles")

VIEW = ("view",)
MARKETING_APPROVERS = "Marketing approvers"

ROLES = copy.deepcopy(_previous.ROLES)
ROLES[MARKETING_APPROVERS] = {
    "campaigns": {"journey": ("view", "approve"), "journeystep": VIEW, "campaign": ("view", "approve"),
                  "campaignrecipient": VIEW},
    "message_templates": {"template": VIEW, "templatevariant": VIEW, "templateversion": VIEW},
    "contacts": {"segment": VIEW, "lifecyclestage": VIEW},
    "channels": {"defaultchannelplan": VIEW},
}


def apply_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, ROLES)


def restore_previous_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, _previous.ROLES)
    apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias).filter(
        name=MARKETING_APPROVERS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("omni", "0016_webhook_roles"),
        ("campaigns", "0019_journey_ownership_approval"),
    ]

    operations = [migrations.RunPython(apply_roles, restore_previous_roles)]
