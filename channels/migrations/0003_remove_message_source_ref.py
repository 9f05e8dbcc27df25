"""Message.source_ref is gone: campaigns/migrations/0002 turned each journey reference into a visit row."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("channels", "0002_provenance_and_own_content"),
        ("campaigns", "0002_visits_and_recipients"),
    ]

    operations = [migrations.RemoveField(model_name="message", name="source_ref")]
