"""The index segments' event filters read: the events of one name in a time window, with their contacts."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('contacts', '0012_lifecycle_stage_model'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='contactevent',
            index=models.Index(fields=['name', 'occurred_at', 'contact'], name='event_name_time'),
        ),
    ]
