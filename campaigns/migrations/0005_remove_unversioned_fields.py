"""Drop what journey versions replaced: the plain version numbers and the pointers at draft step
rows (0004 copied them into versions and step keys)."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0004_snapshot_running_journeys'),
    ]

    operations = [
        migrations.RemoveField(model_name='enrollment', name='journey_version_number'),
        migrations.RemoveField(model_name='journeystepvisit', name='journey_version_number'),
        migrations.RemoveField(model_name='enrollment', name='current_step'),
        migrations.RemoveField(model_name='journeystepvisit', name='step'),
        migrations.RemoveField(model_name='journey', name='version'),
    ]
