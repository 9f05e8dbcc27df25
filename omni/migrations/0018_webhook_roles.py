"""Roles for outbound webhooks and default channel plans (issue 19): administrators manage webhook
endpoints and default channel plans and read the call log; marketers see endpoints (not their
secrets) and the default plans their send steps get; compliance staff read the call log and the
default plans."""
import copy
import importlib

from django.db import migrations

_first = importlib.import_module("omni.migrations.0002_role_groups")
_previous = importlib.import_module("omni.migrations.0013_support_roles_agents")

VIEW = ("view",)

ROLES = copy.deepcopy(_previous.ROLES)
ROLES["Administrators"]["omni"].update({"webhookendpoint": _first.EDIT, "webhookcall": VIEW})
ROLES["Administrators"]["channels"]["defaultchannelplan"] = _first.EDIT
ROLES["Marketers"].setdefault("omni", {})["webhookendpoint"] = VIEW
ROLES["Marketers"]["channels"]["defaultchannelplan"] = VIEW
ROLES["Compliance"].setdefault("omni", {})["webhookcall"] = VIEW
ROLES["Compliance"]["channels"]["defaultchannelplan"] = VIEW


def apply_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, ROLES)


def restore_previous_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, _previous.ROLES)


class Migration(migrations.Migration):
    dependencies = [
        ("omni", "0017_webhooks"),
        ("channels", "0018_default_channel_plan"),
    ]

    operations = [migrations.RunPython(apply_roles, restore_previous_roles)]
