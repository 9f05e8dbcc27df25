"""Message.current_step is Message.plan_step: one name for a place in a channel plan, as on
Delivery ("step" alone is a journey step)."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("channels", "0008_delivery_retry_schedule"),
    ]

    operations = [
        migrations.RenameField(model_name="message", old_name="current_step", new_name="plan_step"),
    ]
