"""Roles for typed data (issue 19): marketers declare the types of contact attributes and event
properties and keep the lifecycle stages; compliance and support agents look at them;
administrators hold everything the others hold."""
import copy
import importlib

from django.db import migrations

_first = importlib.import_module("omni.migrations.0002_role_groups")
_previous = importlib.import_module("omni.migrations.0013_support_roles_agents")

# No role deletes anything (omni/tests/test_roles.py): a definition or stage goes out of use by
# editing; a superuser may delete one nothing uses.
EDIT = ("add", "change", "view")
TYPED_DATA = ("attributedefinition", "eventpropertydefinition", "lifecyclestage")

ROLES = copy.deepcopy(_previous.ROLES)
for model in TYPED_DATA:
    ROLES["Marketers"]["contacts"][model] = EDIT
    ROLES["Compliance"]["contacts"][model] = ("view",)
    ROLES["Support agents"]["contacts"][model] = ("view",)
    ROLES["Administrators"]["contacts"][model] = EDIT


def apply_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, ROLES)


def restore_previous_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, _previous.ROLES)


class Migration(migrations.Migration):
    dependencies = [
        ("omni", "0013_support_roles_agents"),
        ("contacts", "0012_lifecycle_stage_model"),
    ]

    operations = [migrations.RunPython(apply_roles, restore_previous_roles)]
