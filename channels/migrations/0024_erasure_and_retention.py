# Retention blanks delivery bodies oldest first: an index of the deliveries still holding one.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('channels', '0023_arbitration_rule_defaults'),
        ('contacts', '0016_contact_imports_and_erasure'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='delivery',
            index=models.Index(condition=models.Q(('html_body', ''), ('subject', ''), ('text_body', ''), _negated=True), fields=['queued_at'], name='delivery_body_kept'),
        ),
    ]
