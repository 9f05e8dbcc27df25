"""Deliveries get their plan step as a column (filled from content["plan_step"]) and, for push,
their device; a message may carry its own content; history is protected from contact deletes."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def fill_plan_step(apps, schema_editor):
    Delivery = apps.get_model("channels", "Delivery")
    db = schema_editor.connection.alias
    for step in range(1, 10):
        Delivery.objects.using(db).filter(content__plan_step=step).update(plan_step=step)


class Migration(migrations.Migration):

    dependencies = [
        ('channels', '0001_initial'),
        ('contacts', '0001_initial'),
        ('message_templates', '0001_initial'),
        ('omni', '0005_role_groups_audit_in_omni'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='delivery',
            name='device',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='deliveries', to='contacts.device'),
        ),
        migrations.AddField(
            model_name='delivery',
            name='plan_step',
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='message',
            name='agent',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='message',
            name='api_key',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='messages', to='omni.apikey'),
        ),
        migrations.AddField(
            model_name='message',
            name='content',
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='message',
            name='conversation',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='messages', to='channels.conversation'),
        ),
        migrations.AlterField(
            model_name='conversation',
            name='contact',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='conversations', to='contacts.contact'),
        ),
        migrations.AlterField(
            model_name='delivery',
            name='contact',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='deliveries', to='contacts.contact'),
        ),
        migrations.AlterField(
            model_name='delivery',
            name='message',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='deliveries', to='channels.message'),
        ),
        migrations.AlterField(
            model_name='deliveryevent',
            name='delivery',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='events', to='channels.delivery'),
        ),
        migrations.AlterField(
            model_name='message',
            name='contact',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='messages', to='contacts.contact'),
        ),
        migrations.AlterField(
            model_name='message',
            name='template_version',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='messages', to='message_templates.templateversion'),
        ),
        migrations.AddConstraint(
            model_name='message',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('content__isnull', True), ('template_version__isnull', False)), models.Q(('content__isnull', False), ('template_version__isnull', True)), _connector='OR'), name='message_template_or_own_content'),
        ),
        migrations.RunPython(fill_plan_step, migrations.RunPython.noop),
    ]
