"""Compliance II (issue 22) in the roles.

Compliance staff record consent on a contact's page without the right to change the contact
(compliance.add_consentchange), write the versioned consent texts, import contacts with consent
columns, preview a rule change by policy replay, and erase a contact (contacts.erase_contact).
Marketers import contacts and record the consent they come with. Administrators hold all of it."""
import copy
import importlib

from django.db import migrations

_first = importlib.import_module("omni.migrations.0002_role_groups")
_previous = importlib.import_module("omni.migrations.0019_campaign_roles")

ROLES = copy.deepcopy(_previous.ROLES)
for _role in ("Compliance", "Administrators"):
    ROLES[_role]["compliance"]["consentchange"] = ("add", "view")
    ROLES[_role]["compliance"]["consenttext"] = ("add", "view")
    ROLES[_role]["compliance"]["replayrun"] = ("add", "view")
    ROLES[_role]["contacts"]["contactimport"] = ("add", "view")
    ROLES[_role]["contacts"]["contact"] = (*ROLES[_role]["contacts"]["contact"], "erase")
ROLES["Marketers"]["compliance"]["consentchange"] = ("add", "view")
ROLES["Marketers"]["contacts"]["contactimport"] = ("add", "view")


def apply_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, ROLES)


def restore_previous_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, _previous.ROLES)


class Migration(migrations.Migration):
    dependencies = [
        ("omni", "0019_campaign_roles"),
        ("compliance", "0010_replay_runs"),
        ("contacts", "0016_contact_imports_and_erasure"),
    ]

    operations = [migrations.RunPython(apply_roles, restore_previous_roles)]
