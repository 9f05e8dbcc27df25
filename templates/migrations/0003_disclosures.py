"""Opt-out lines per locale that marketing SMS and WhatsApp variants must carry, with English."""
from django.db import migrations, models

ENGLISH = "Reply STOP to opt out."  # templates.models.DEFAULT_OPT_OUT_LINES["en"]


def add_english(apps, schema_editor):
    apps.get_model("message_templates", "OptOutDisclosure").objects.get_or_create(locale="en",
                                                                                  defaults={"text": ENGLISH})


def remove_english(apps, schema_editor):
    apps.get_model("message_templates", "OptOutDisclosure").objects.filter(locale="en").delete()


class Migration(migrations.Migration):

    dependencies = [
        ('message_templates', '0002_templateversion_immutable'),
    ]

    operations = [
        migrations.CreateModel(
            name='OptOutDisclosure',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('locale', models.CharField(help_text='en, fr, fr-CA... A variant in fr-CA uses the fr-CA line, else the fr one.', max_length=16, unique=True)),
                ('text', models.CharField(help_text='Checked in any case, with any spacing, anywhere in the text.', max_length=200)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'ordering': ['locale'],
            },
        ),
        migrations.RunPython(add_english, remove_english),
    ]
