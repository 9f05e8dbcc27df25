"""Indexes the workspace reads through: quarantined events (counted on the administrators'
home) and, on PostgreSQL, the lower-cased first and last names the header's contact search
matches by prefix (omni/web/search.py: LOWER(name) LIKE 'ali%' needs text_pattern_ops under a
non-C collation). SQLite reads those through its table; its search stays correct, unindexed."""
from django.db import migrations, models

NAME_INDEXES = {
    "contact_first_name_prefix": "first_name",
    "contact_last_name_prefix": "last_name",
}


def add_name_prefix_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, column in NAME_INDEXES.items():
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{name}" ON "contacts_contact" ((LOWER("{column}")) text_pattern_ops)')


def drop_name_prefix_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in NAME_INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):

    dependencies = [
        ('contacts', '0007_contact_preferred_channel'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='contactevent',
            index=models.Index(condition=models.Q(('quarantined_at__isnull', False)), fields=['quarantined_at'], name='event_quarantined'),
        ),
        migrations.RunPython(add_name_prefix_indexes, drop_name_prefix_indexes),
    ]
