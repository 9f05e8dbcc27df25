"""The role groups again, with the audit log's permissions now on omni.AuditEntry.

Each migration that changes the roles keeps its own copy of them, so replaying history on a
new database grants only permissions that exist at that point.
"""
import importlib

from django.db import migrations

VIEW = ("view",)
EDIT = ("add", "change", "view")

ROLES = {
    "Marketers": {
        "contacts": {"contact": EDIT, "segment": EDIT, "device": EDIT, "contactevent": VIEW},
        "message_templates": {"template": EDIT, "templatevariant": EDIT, "templateversion": VIEW},
        "campaigns": {"journey": EDIT, "journeystep": EDIT, "campaign": EDIT, "enrollment": VIEW},
        "channels": {"message": VIEW, "delivery": VIEW, "deliveryevent": VIEW, "outboxmessage": VIEW},
        "compliance": {"consent": VIEW, "consentchange": VIEW},
    },
    "Support agents": {
        "contacts": {"contact": VIEW, "device": VIEW, "contactevent": VIEW},
        "channels": {
            "conversation": ("change", "view"), "inboundmessage": VIEW, "message": VIEW, "delivery": VIEW,
            "deliveryevent": VIEW, "outboxmessage": VIEW,
        },
        "compliance": {"consent": VIEW, "consentchange": VIEW, "suppression": VIEW},
    },
    "Compliance": {
        "contacts": {"contact": VIEW, "device": VIEW, "contactevent": VIEW, "segment": VIEW},
        "compliance": {
            "consent": VIEW, "consentchange": VIEW, "suppression": EDIT, "quiethours": EDIT, "frequencycap": EDIT,
            "sendingpause": EDIT,
        },
        "omni": {"auditentry": ("view", "export")},
        "message_templates": {"template": VIEW, "templatevariant": VIEW, "templateversion": VIEW},
        "campaigns": {"journey": VIEW, "journeystep": VIEW, "campaign": VIEW, "enrollment": VIEW},
        "channels": {
            "message": VIEW, "delivery": VIEW, "deliveryevent": VIEW, "outboxmessage": VIEW, "inboundmessage": VIEW,
            "conversation": VIEW,
        },
    },
}

_first = importlib.import_module("omni.migrations.0002_role_groups")


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
