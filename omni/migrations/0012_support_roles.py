"""The roles for support (issue 18): support agents reply to conversations (a permission of its
own), write and read notes, tag, use saved replies and block senders; administrators keep the
support settings: business hours with their opening hours and holidays, service levels, queues,
agent statuses, escalation rules, automated responses and saved replies."""
import copy
import importlib

from django.db import migrations

_first = importlib.import_module("omni.migrations.0002_role_groups")
_previous = importlib.import_module("omni.migrations.0011_role_groups_administrators")

ALL = ("add", "change", "delete", "view")
SUPPORT_SETTINGS = ("businesshours", "openinghours", "holiday", "servicelevel", "supportqueue", "agentstatus",
                    "escalationrule", "autoresponse", "savedreply")

ROLES = copy.deepcopy(_previous.ROLES)
ROLES["Support agents"]["channels"].update({
    "conversation": ("change", "reply", "view"),
    "conversationnote": ("add", "view"),
    "conversationtag": ("change", "view"),
    "savedreply": ("view",),
    "blockedsender": ("add", "view"),
})
_administrators = ROLES["Administrators"]["channels"]
for model, verbs in ROLES["Support agents"]["channels"].items():
    _administrators[model] = tuple(sorted(set(_administrators.get(model, ())) | set(verbs)))
for model in SUPPORT_SETTINGS:
    _administrators[model] = ALL


def apply_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, ROLES)


def restore_previous_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, _previous.ROLES)


class Migration(migrations.Migration):
    dependencies = [
        ("omni", "0011_role_groups_administrators"),
        ("channels", "0014_reply_permission"),
    ]

    operations = [migrations.RunPython(apply_roles, restore_previous_roles)]
