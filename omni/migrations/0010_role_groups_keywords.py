"""The roles again: keyword lists and replies (compliance edits them, support agents read them)
and the opt-out lines of templates (compliance edits them, marketers read them)."""
import copy
import importlib

from django.db import migrations

_first = importlib.import_module("omni.migrations.0002_role_groups")
_previous = importlib.import_module("omni.migrations.0009_role_groups_gate")

ROLES = copy.deepcopy(_previous.ROLES)
ROLES["Compliance"]["compliance"]["keywordlist"] = _first.EDIT
ROLES["Compliance"]["message_templates"]["optoutdisclosure"] = _first.EDIT
ROLES["Marketers"]["message_templates"]["optoutdisclosure"] = _first.VIEW
ROLES["Support agents"]["compliance"]["keywordlist"] = _first.VIEW


def apply_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, ROLES)


def restore_previous_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, _previous.ROLES)


class Migration(migrations.Migration):
    dependencies = [
        ("omni", "0009_role_groups_gate"),
        ("compliance", "0005_keyword_lists"),
        ("message_templates", "0003_disclosures"),
    ]

    operations = [migrations.RunPython(apply_roles, restore_previous_roles)]
