"""ConsentStatus.PENDING: a marketing-email consent given but not yet confirmed (double opt-in)."""
from django.db import migrations, models

STATUSES = [("granted", "Opted in"), ("revoked", "Opted out"), ("unknown", "Unknown"),
            ("pending", "Awaiting confirmation")]


class Migration(migrations.Migration):

    dependencies = [
        ("compliance", "0006_double_opt_in"),
    ]

    operations = [
        migrations.AlterField(
            model_name="consent",
            name="status",
            field=models.CharField(choices=STATUSES, default="unknown", max_length=10),
        ),
        migrations.AlterField(
            model_name="consentchange",
            name="status",
            field=models.CharField(choices=STATUSES, max_length=10),
        ),
        migrations.AlterField(
            model_name="decision",
            name="consent_status",
            field=models.CharField(choices=STATUSES, max_length=10),
        ),
    ]
