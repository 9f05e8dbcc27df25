"""Segment triggers: "Leaving a segment" (a trigger type too long for the old 10 characters), and
a journey's trigger segment protected from deletion instead of silently emptied."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0013_reply_handoff'),
        ('contacts', '0011_typed_data_and_segments'),
    ]

    operations = [
        migrations.AlterField(
            model_name='journey',
            name='trigger_segment',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='contacts.segment'),
        ),
        migrations.AlterField(
            model_name='journey',
            name='trigger_type',
            field=models.CharField(choices=[('event', 'An event'), ('segment', 'Entering a segment'), ('segment_exit', 'Leaving a segment'), ('date', 'A date attribute'), ('api', 'API call')], default='event', max_length=20),
        ),
        migrations.AlterField(
            model_name='journeyversion',
            name='trigger_type',
            field=models.CharField(choices=[('event', 'An event'), ('segment', 'Entering a segment'), ('segment_exit', 'Leaving a segment'), ('date', 'A date attribute'), ('api', 'API call')], max_length=20),
        ),
    ]
