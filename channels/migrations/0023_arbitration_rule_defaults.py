"""The arbitration rules Omni ships with, one per purpose; staff tune them in the admin.

Transactional: the same intent (a receipt, a one-time code) is not said twice within ten
minutes, but once on each channel is allowed (an SMS alert with the email kept as the record).
Informational: not twice within a day. Marketing: not twice within a week. A repeated intent
is always a mistake; a collision is a choice about timing (a journey's SMS thirty minutes after
its email is meant), so the collision windows ship at zero and staff set them per purpose
(for marketing, an hour with "defer", say).
"""
from django.db import migrations

DEFAULTS = [
    # purpose, intent window, one per channel, collision window, action
    ("transactional", 10 * 60, True, 0, "defer"),
    ("informational", 24 * 3600, False, 0, "defer"),
    ("marketing", 7 * 24 * 3600, False, 0, "defer"),
]


def add_defaults(apps, schema_editor):
    ArbitrationRule = apps.get_model("channels", "ArbitrationRule")
    for purpose, intent, one_per_channel, collision, action in DEFAULTS:
        ArbitrationRule.objects.get_or_create(purpose=purpose, defaults={
            "intent_window_seconds": intent, "one_per_channel": one_per_channel,
            "collision_window_seconds": collision, "action": action})


def remove_defaults(apps, schema_editor):
    apps.get_model("channels", "ArbitrationRule").objects.filter(
        purpose__in=[purpose for purpose, *_ in DEFAULTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("channels", "0022_arbitration_rule")]
    operations = [migrations.RunPython(add_defaults, remove_defaults)]
