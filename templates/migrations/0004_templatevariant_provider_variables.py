"""What fills an approved WhatsApp/RCS content template's numbered variables, one line each."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('message_templates', '0003_disclosures'),
    ]

    operations = [
        migrations.AddField(
            model_name='templatevariant',
            name='provider_variables',
            field=models.TextField(blank=True, default='', db_default='', help_text="The approved template's variables, one per line: line 1 fills {{1}}, line 2 fills {{2}}... Each line is written like the text body, e.g. {{ first_name }} or order {{ order_id }}, and must not come out empty."),
        ),
        migrations.AlterField(
            model_name='templatevariant',
            name='provider_template_id',
            field=models.CharField(blank=True, help_text="WhatsApp and RCS: the Twilio Content SID (HX...) of the approved template, sent instead of the text body (on WhatsApp, only outside the contact's 24-hour session).", max_length=100),
        ),
    ]
