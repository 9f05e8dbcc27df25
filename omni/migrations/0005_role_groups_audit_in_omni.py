"""The role groups again, with the audit log's permissions now on omni.AuditEntry.

Each migration that changes the roles keeps its own copy of them, so replaying history on a
new database grants only permissions that exist at that point.
"""
import copy
import importlib

from django.db import migrations

_first = importlib.import_module("omni.migrations.0002_role_groups")

ROLES = copy.deepcopy(_first.ROLES)
del ROLES["Compliance"]["compliance"]["auditentry"]
ROLES["Compliance"]["omni"] = {"auditentry": ("view", "export")}


def apply_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, ROLES)


def restore_previous_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, _first.ROLES)


class Migration(migrations.Migration):
    dependencies = [
        ("omni", "0004_audit_entries_from_compliance"),
        ("compliance", "0002_audit_moved_to_omni"),
    ]

    operations = [migrations.RunPython(apply_roles, restore_previous_roles)]
