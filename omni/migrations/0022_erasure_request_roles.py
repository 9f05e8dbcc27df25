"""Compliance staff follow the erasures queued behind a running import (contacts.ErasureRequest,
listed in the admin, read-only for everyone: only Omni writes them). Administrators hold
everything the others hold."""
import copy
import importlib

from django.db import migrations

_first = importlib.import_module("omni.migrations.0002_role_groups")
_previous = importlib.import_module("omni.migrations.0021_operator_roles")

ROLES = copy.deepcopy(_previous.ROLES)
for _role in ("Compliance", "Administrators"):
    ROLES[_role]["contacts"]["erasurerequest"] = ("view",)


def apply_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, ROLES)


def restore_previous_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, _previous.ROLES)


class Migration(migrations.Migration):
    dependencies = [
        ("omni", "0021_operator_roles"),
        ("contacts", "0019_erasure_requests"),
    ]

    operations = [migrations.RunPython(apply_roles, restore_previous_roles)]
