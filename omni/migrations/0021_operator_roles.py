"""Administrators keep the system running: they retry rows the tick quarantined and settle
uncertain deliveries, as superusers could alone until now.

Both admin actions ask for the model's change permission (omni/lib/quarantine.py,
channels/admin.py DeliveryAdmin). These admins are read-only for everyone (ReadOnlyAdminMixin),
so the permission opens the actions and no form. Support agents and Compliance get none of it:
operating the tick and the send queues is the administrators' part of the roles table."""
import copy
import importlib

from django.db import migrations

_first = importlib.import_module("omni.migrations.0002_role_groups")
_previous = importlib.import_module("omni.migrations.0020_compliance_roles")

# Every model whose admin has the "Retry (clear the quarantine)" action (QuarantineAdminMixin);
# channels.delivery also carries the settle actions.
OPERATED = {
    "channels": ("message", "delivery", "inboundmessage"),
    "contacts": ("contactevent",),
    "campaigns": ("enrollment", "campaignrecipient"),
}

ROLES = copy.deepcopy(_previous.ROLES)
for _app_label, _models in OPERATED.items():
    for _model in _models:
        _verbs = ROLES["Administrators"][_app_label][_model]
        ROLES["Administrators"][_app_label][_model] = tuple(sorted({*_verbs, "change"}))


def apply_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, ROLES)


def restore_previous_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, _previous.ROLES)


class Migration(migrations.Migration):
    dependencies = [("omni", "0020_compliance_roles")]

    operations = [migrations.RunPython(apply_roles, restore_previous_roles)]
