"""Marking test contacts (issue 20): marketers and administrators may mark a contact as a test
contact (contacts.mark_test_contact), the only kind a journey in testing enrolls."""
import copy
import importlib

from django.db import migrations

_first = importlib.import_module("omni.migrations.0002_role_groups")
_previous = importlib.import_module("omni.migrations.0017_marketing_approvers")

ROLES = copy.deepcopy(_previous.ROLES)
for _role in ("Marketers", "Administrators"):
    ROLES[_role]["contacts"]["contact"] = (*ROLES[_role]["contacts"]["contact"], "mark_test")


def apply_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, ROLES)


def restore_previous_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, _previous.ROLES)


class Migration(migrations.Migration):
    dependencies = [
        ("omni", "0017_marketing_approvers"),
        ("contacts", "0015_contact_is_test"),
    ]

    operations = [migrations.RunPython(apply_roles, restore_previous_roles)]
