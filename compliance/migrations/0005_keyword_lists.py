"""Keyword lists and replies per language, with the English defaults (staff edit them).

The words are the carriers' and Twilio's standard set; the replies follow CTIA's guidance: an
opt-out is confirmed once, and the opt-in confirmation (the START reply, also sent after an
SMS opt-in from a form) names the program, the frequency, HELP and STOP.
"""
from django.db import migrations, models

ENGLISH = {
    "stop": ("STOP, UNSUBSCRIBE, CANCEL, END, QUIT, OPTOUT, REVOKE",
             "Omni: you are unsubscribed and will get no more messages from us here. Reply START to resubscribe."),
    "stop_all": ("STOPALL",
                 "Omni: you are unsubscribed from all our messages, on every channel. Reply START to resubscribe here."),
    "start": ("START, UNSTOP, YES",
              "Omni: you are subscribed to Omni messages. Message frequency varies. Msg & data rates may apply. "
              "Reply HELP for help, STOP to opt out."),
    "help": ("HELP, INFO",
             "Omni: for help, reply to this message and a person will answer. Msg & data rates may apply. "
             "Reply STOP to opt out."),
}


def add_english(apps, schema_editor):
    KeywordList = apps.get_model("compliance", "KeywordList")
    for kind, (words, reply) in ENGLISH.items():
        KeywordList.objects.get_or_create(language="en", kind=kind, defaults={"words": words, "reply": reply})


def remove_english(apps, schema_editor):
    apps.get_model("compliance", "KeywordList").objects.filter(language="en").delete()


class Migration(migrations.Migration):

    dependencies = [
        ('compliance', '0004_quiet_hours_regions_caps_ledger'),
    ]

    operations = [
        migrations.CreateModel(
            name='KeywordList',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('language', models.CharField(help_text='Language code, e.g. en, es, fr.', max_length=16)),
                ('kind', models.CharField(choices=[('stop', 'Opt out of this channel'), ('stop_all', 'Opt out of every channel'), ('start', 'Opt back in'), ('help', 'Ask for help')], max_length=10)),
                ('words', models.TextField(help_text='One per line or separated by commas; any case. A phrase of several words matches only as a whole message.')),
                ('reply', models.TextField(blank=True, help_text='Sent once in answer (empty: no reply). Where Twilio answers keywords itself (TWILIO_OPT_OUT_HANDLING), Omni does not.')),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'ordering': ['language', 'kind'],
                'constraints': [models.UniqueConstraint(fields=('language', 'kind'), name='keywordlist_unique_language_kind')],
            },
        ),
        migrations.RunPython(add_english, remove_english),
    ]
