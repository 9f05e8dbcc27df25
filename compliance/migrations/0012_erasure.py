# Erasure suppresses an erased contact's addresses by hash, under a reason of its own.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('compliance', '0010_replay_runs'),
    ]

    operations = [
        migrations.AlterField(
            model_name='suppression',
            name='reason',
            field=models.CharField(choices=[('hard_bounce', 'Hard bounce'), ('soft_bounces', 'Repeated soft bounces'), ('complaint', 'Complaint'), ('stop', 'STOP keyword'), ('unsubscribe', 'Unsubscribed'), ('manual', 'Added by staff'), ('invalid_address', 'Invalid address'), ('carrier_deactivated', 'Number deactivated by carrier'), ('erasure', 'Erased on request')], max_length=20),
        ),
    ]
