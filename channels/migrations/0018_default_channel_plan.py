"""Default channel plans by purpose and urgency (issue 19), seeded for every pair: journey send
steps without a plan of their own pin one when their journey is published. A message keeps the
contact's preferred channel when creating it put that channel first in its plan."""
from django.db import migrations, models


def _then(channel, seconds, unless="delivered"):
    return {"channel": channel, "fallback_after_seconds": seconds, "fallback_unless": unless}


# Urgent sends start where the contact reads soonest (a text, a push) and fall back quickly to
# email; marketing stays on email and push, which need no per-message fee.
SEEDED = {
    ("transactional", "low"): [{"channel": "email"}],
    ("transactional", "normal"): [_then("email", 3600), {"channel": "sms"}],
    ("transactional", "high"): [_then("sms", 300), {"channel": "email"}],
    ("transactional", "critical"): [_then("sms", 120), {"channel": "email"}],
    ("informational", "low"): [{"channel": "email"}],
    ("informational", "normal"): [_then("push", 3600), {"channel": "email"}],
    ("informational", "high"): [_then("push", 600), _then("sms", 600), {"channel": "email"}],
    ("informational", "critical"): [_then("sms", 300), {"channel": "email"}],
    ("marketing", "low"): [{"channel": "email"}],
    ("marketing", "normal"): [{"channel": "email"}],
    ("marketing", "high"): [_then("push", 3600, "engaged"), {"channel": "email"}],
    ("marketing", "critical"): [_then("push", 3600, "engaged"), {"channel": "email"}],
}


def seed(apps, schema_editor):
    DefaultChannelPlan = apps.get_model("channels", "DefaultChannelPlan")
    db = schema_editor.connection.alias
    for (purpose, urgency), plan in SEEDED.items():
        DefaultChannelPlan.objects.using(db).get_or_create(purpose=purpose, urgency=urgency,
                                                          defaults={"channel_plan": plan})


def unseed(apps, schema_editor):
    apps.get_model("channels", "DefaultChannelPlan").objects.using(schema_editor.connection.alias).all().delete()


class Migration(migrations.Migration):

    dependencies = [
        ('channels', '0017_inbox_search'),
    ]

    operations = [
        migrations.CreateModel(
            name='DefaultChannelPlan',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('purpose', models.CharField(choices=[('transactional', 'Transactional'), ('informational', 'Informational'), ('marketing', 'Marketing')], max_length=15)),
                ('urgency', models.CharField(choices=[('low', 'Low'), ('normal', 'Normal'), ('high', 'High'), ('critical', 'Critical')], max_length=10)),
                ('channel_plan', models.JSONField(default=list)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'verbose_name': 'default channel plan',
                'ordering': ['purpose', 'urgency'],
                'constraints': [models.UniqueConstraint(fields=('purpose', 'urgency'), name='default_plan_unique')],
            },
        ),
        migrations.RunPython(seed, unseed),
        migrations.AddField(
            model_name='message',
            name='preferred_channel_first',
            field=models.CharField(blank=True, choices=[('email', 'Email'), ('sms', 'SMS'), ('whatsapp', 'WhatsApp'), ('rcs', 'RCS'), ('push', 'Mobile push')], default='', max_length=10),
        ),
    ]
