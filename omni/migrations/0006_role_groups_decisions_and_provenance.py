"""The roles again: decision rows for those who read consent, visits and campaign recipients
for those who read journeys and campaigns."""
import copy
import importlib

from django.db import migrations

_first = importlib.import_module("omni.migrations.0002_role_groups")
_previous = importlib.import_module("omni.migrations.0005_role_groups_audit_in_omni")

ROLES = copy.deepcopy(_previous.ROLES)
ROLES["Marketers"]["campaigns"].update({"journeystepvisit": ("view",), "campaignrecipient": ("view",)})
ROLES["Support agents"]["compliance"]["decision"] = ("view",)
ROLES["Support agents"]["campaigns"] = {"journeystepvisit": ("view",), "campaignrecipient": ("view",)}
ROLES["Compliance"]["compliance"]["decision"] = ("view",)
ROLES["Compliance"]["campaigns"].update({"journeystepvisit": ("view",), "campaignrecipient": ("view",)})


def apply_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, ROLES)


def restore_previous_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, _previous.ROLES)


class Migration(migrations.Migration):
    dependencies = [
        ("omni", "0005_role_groups_audit_in_omni"),
        ("compliance", "0003_decisions_and_protected_history"),
        ("campaigns", "0002_visits_and_recipients"),
    ]

    operations = [migrations.RunPython(apply_roles, restore_previous_roles)]
