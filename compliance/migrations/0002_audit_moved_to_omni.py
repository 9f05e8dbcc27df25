"""The audit log now lives in omni (see omni/migrations/0004), which copied these rows first."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('compliance', '0001_initial'),
        ('omni', '0004_audit_entries_from_compliance'),
    ]

    operations = [
        migrations.DeleteModel(
            name='AuditEntry',
        ),
    ]
