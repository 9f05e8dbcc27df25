"""Journey versions: a published, immutable snapshot per version that enrollments pin.

This adds the tables and columns; 0004 snapshots the running journeys into them and 0005 drops
the columns they replace.
"""
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0002_visits_and_recipients'),
        ('contacts', '0002_contactevent_sent_by_request_hash'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='JourneyVersion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('number', models.PositiveIntegerField()),
                ('trigger_type', models.CharField(choices=[('event', 'An event'), ('segment', 'Entering a segment'), ('date', 'A date attribute'), ('api', 'API call')], max_length=10)),
                ('trigger_event', models.CharField(blank=True, db_index=True, max_length=100)),
                ('trigger_conditions', models.JSONField(blank=True, default=dict)),
                ('goal_event', models.CharField(blank=True, db_index=True, max_length=100)),
                ('reentry', models.CharField(choices=[('never', 'Never'), ('after_period', 'After a period'), ('always', 'Always')], max_length=15)),
                ('reentry_after_seconds', models.PositiveIntegerField(blank=True, null=True)),
                ('steps', models.JSONField(default=list)),
                ('published_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('journey', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='versions', to='campaigns.journey')),
                ('published_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('trigger_segment', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='contacts.segment')),
            ],
            options={
                'ordering': ['journey', '-number'],
                'constraints': [models.UniqueConstraint(fields=('journey', 'number'), name='journey_version_unique_number')],
            },
        ),
        migrations.AddField(
            model_name='journey',
            name='live_version',
            field=models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='campaigns.journeyversion'),
        ),
        migrations.AddField(
            model_name='enrollment',
            name='current_step_key',
            field=models.CharField(blank=True, max_length=50),
        ),
        migrations.RenameField(model_name='enrollment', old_name='journey_version', new_name='journey_version_number'),
        migrations.RenameField(model_name='journeystepvisit', old_name='journey_version', new_name='journey_version_number'),
        migrations.AddField(
            model_name='enrollment',
            name='journey_version',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='enrollments', to='campaigns.journeyversion'),
        ),
        migrations.AddField(
            model_name='journeystepvisit',
            name='journey_version',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='visits', to='campaigns.journeyversion'),
        ),
    ]
