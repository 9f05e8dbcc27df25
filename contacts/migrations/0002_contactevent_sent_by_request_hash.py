from django.db import migrations, models
from django.db.models import Count

API_KEY_PREFIX = "apikey:"


def scope_api_events_to_the_api(apps, schema_editor):
    """Move events sent with API keys into the one "api" scope, keeping the key in sent_by.

    A key used by two API keys for different events stays in its old per-key scope: merging
    them would break the unique (source, idempotency_key), and both events are kept.
    """
    ContactEvent = apps.get_model("contacts", "ContactEvent")
    by_key = ContactEvent.objects.filter(source__startswith=API_KEY_PREFIX)
    for event in by_key.only("pk", "source").iterator():
        ContactEvent.objects.filter(pk=event.pk).update(sent_by=event.source)
    shared = by_key.values("idempotency_key").annotate(n=Count("pk")).filter(n__gt=1).values("idempotency_key")
    taken = ContactEvent.objects.filter(source="api").values("idempotency_key")
    by_key.exclude(idempotency_key__in=shared).exclude(idempotency_key__in=taken).update(source="api")


def scope_api_events_to_their_key(apps, schema_editor):
    ContactEvent = apps.get_model("contacts", "ContactEvent")
    for event in ContactEvent.objects.filter(source="api", sent_by__startswith=API_KEY_PREFIX).iterator():
        ContactEvent.objects.filter(pk=event.pk).update(source=event.sent_by)


class Migration(migrations.Migration):

    dependencies = [
        ('contacts', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='contactevent',
            name='request_hash',
            field=models.CharField(blank=True, default='', max_length=64),
        ),
        migrations.AddField(
            model_name='contactevent',
            name='sent_by',
            field=models.CharField(blank=True, default='', help_text='Which API key sent it.', max_length=100),
        ),
        migrations.AlterField(
            model_name='contactevent',
            name='source',
            field=models.CharField(default='api', help_text='Where it came from: the API, a webhook, the admin.', max_length=100),
        ),
        migrations.RunPython(scope_api_events_to_the_api, scope_api_events_to_their_key),
    ]
