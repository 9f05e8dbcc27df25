"""The fourth role: Administrators. They see every page the other three roles see, with the same
rights, and alone keep the settings: API keys, periodic tasks and their schedules, users and
groups (omni/web/navigation.py shows the Settings group to them and to superusers only)."""
import copy
import importlib

from django.db import migrations

_first = importlib.import_module("omni.migrations.0002_role_groups")
_previous = importlib.import_module("omni.migrations.0010_role_groups_keywords")

ALL = ("add", "change", "delete", "view")
ADMINISTRATORS = "Administrators"


def _union(roles):
    merged = {}
    for grants in roles.values():
        for app_label, models in grants.items():
            for model, verbs in models.items():
                have = merged.setdefault(app_label, {}).setdefault(model, ())
                merged[app_label][model] = tuple(sorted(set(have) | set(verbs)))
    return merged


ROLES = copy.deepcopy(_previous.ROLES)
ROLES[ADMINISTRATORS] = _union(_previous.ROLES)
ROLES[ADMINISTRATORS]["omni"]["apikey"] = _first.EDIT
ROLES[ADMINISTRATORS]["django_celery_beat"] = {
    model: ALL for model in ("periodictask", "intervalschedule", "crontabschedule", "solarschedule", "clockedschedule")
}
ROLES[ADMINISTRATORS]["auth"] = {"user": _first.EDIT, "group": _first.EDIT}


def apply_roles(apps, schema_editor):
    _first.apply_roles(apps, schema_editor, ROLES)


def remove_administrators(apps, schema_editor):
    apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias).filter(name=ADMINISTRATORS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("omni", "0010_role_groups_keywords"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(apply_roles, remove_administrators)]
