"""The roles again: compliance staff read the send ledger frequency caps count (they already
edit quiet hours and frequency caps)."""
import copy
import importlib

from django.db import migrations

_first = importlib.import_module("omni.migrations.0002_role_groups")
_previous = importlib.import_module("omni.migrations.0006_role_groups_decisions_and_provenance")

ROLES = copy.deepcopy(_previous.ROLES)
ROLES["Compliance"]["compliance"]["sendledger"] = ("view",)


def apply_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, ROLES)


def restore_previous_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, _previous.ROLES)


class Migration(migrations.Migration):
    dependencies = [
        ("omni", "0008_audit_checkpoints_and_keyed_hashes"),
        ("compliance", "0004_quiet_hours_regions_caps_ledger"),
    ]

    operations = [migrations.RunPython(apply_roles, restore_previous_roles)]
