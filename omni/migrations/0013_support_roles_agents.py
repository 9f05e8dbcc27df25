"""Roles, continued (issue 18): support agents unblock senders, mark themselves available and see
the queues; marketers, support agents and administrators pause and resume one contact's
enrollment (campaigns.pause_enrollment)."""
import copy
import importlib

from django.db import migrations

_first = importlib.import_module("omni.migrations.0002_role_groups")
_previous = importlib.import_module("omni.migrations.0012_support_roles")

ROLES = copy.deepcopy(_previous.ROLES)
ROLES["Support agents"]["channels"].update({
    "blockedsender": ("add", "change", "view"),
    "agentstatus": ("add", "change", "view"),
    "supportqueue": ("view",),
})
_administrators = ROLES["Administrators"]["channels"]
for model, verbs in ROLES["Support agents"]["channels"].items():
    _administrators[model] = tuple(sorted(set(_administrators.get(model, ())) | set(verbs)))
for role in ("Marketers", "Support agents", "Administrators"):
    campaigns = ROLES[role].setdefault("campaigns", {})
    campaigns["enrollment"] = tuple(sorted(set(campaigns.get("enrollment", ())) | {"pause", "view"}))


def apply_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, ROLES)


def restore_previous_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, _previous.ROLES)


class Migration(migrations.Migration):
    dependencies = [
        ("omni", "0012_support_roles"),
        ("campaigns", "0013_reply_handoff"),
    ]

    operations = [migrations.RunPython(apply_roles, restore_previous_roles)]
