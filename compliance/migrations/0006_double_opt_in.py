"""Single-use links and forms (one-click unsubscribe, preference form, double opt-in
confirmation) remember their use; the double opt-in source also names an expiry."""
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("compliance", "0005_keyword_lists"),
    ]

    operations = [
        migrations.CreateModel(
            name="SpentLink",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("key", models.CharField(max_length=100, unique=True)),
                ("contact_id", models.BigIntegerField(blank=True, null=True)),
                ("spent_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.AlterField(
            model_name="consentchange",
            name="source",
            field=models.CharField(choices=[("form", "Signup form"), ("import", "Import"), ("api", "API"), ("keyword", "SMS/WhatsApp keyword"), ("agent", "Support agent"), ("admin", "Admin"), ("unsubscribe_link", "Unsubscribe link"), ("preference_page", "Preference page"), ("bounce", "Hard bounce"), ("complaint", "Complaint"), ("carrier", "Carrier"), ("double_opt_in", "Double opt-in")], max_length=20),
        ),
    ]
