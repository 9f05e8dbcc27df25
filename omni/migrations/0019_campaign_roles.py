"""Campaign variants and arbitration rules (issue 21) in the roles.

Marketers build a campaign's variants as rows of its page, so they add, change and delete them:
the one delete a role holds, for a row that is part of a draft they edit (a variant recipients
were sent is protected by their rows). They see the arbitration rules that decide which of their
messages give way; Administrators set them. Compliance sees both; Marketing approvers see the
variants of what they approve."""
import copy
import importlib

from django.db import migrations

_first = importlib.import_module("omni.migrations.0002_role_groups")
_administrators = importlib.import_module("omni.migrations.0011_role_groups_administrators")
_previous = importlib.import_module("omni.migrations.0018_test_contact_permission")

VIEW = ("view",)

ROLES = copy.deepcopy(_previous.ROLES)
ROLES["Marketers"]["campaigns"]["campaignvariant"] = _administrators.ALL
ROLES["Marketers"]["channels"]["arbitrationrule"] = VIEW
ROLES["Administrators"]["campaigns"]["campaignvariant"] = _administrators.ALL
ROLES["Administrators"]["channels"]["arbitrationrule"] = _administrators.ALL
ROLES["Compliance"]["campaigns"]["campaignvariant"] = VIEW
ROLES["Compliance"]["channels"]["arbitrationrule"] = VIEW
ROLES["Marketing approvers"]["campaigns"]["campaignvariant"] = VIEW


def apply_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, ROLES)


def restore_previous_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, _previous.ROLES)


class Migration(migrations.Migration):
    dependencies = [
        ("omni", "0018_test_contact_permission"),
        ("campaigns", "0021_campaign_sending"),
        ("channels", "0023_arbitration_rule_defaults"),
    ]

    operations = [migrations.RunPython(apply_roles, restore_previous_roles)]
