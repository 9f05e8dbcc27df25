from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("channels", "0007_delivery_to_address_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="next_attempt_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="delivery",
            name="unresolved_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
