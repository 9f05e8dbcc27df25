"""On PostgreSQL, full-text indexes for the inbox's search (omni/web/inbox.py): what customers
wrote (inbound bodies) and what was replied (a message's own text), only for rows in a
conversation. Each is built on the same expression the search compiles to, with the "simple"
configuration. SQLite searches with a case-insensitive match through its tables, unindexed."""
from django.db import migrations

SEARCH_INDEXES = {
    "inbound_body_search": (
        "channels_inboundmessage", """to_tsvector('simple'::regconfig, COALESCE("body", ''))"""),
    "message_reply_search": (
        "channels_message", """to_tsvector('simple'::regconfig, COALESCE(("content" #>> '{0,text_body}'), ''))"""),
}


def add_search_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, (table, expression) in SEARCH_INDEXES.items():
        schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" USING gin (({expression})) '
                              f'WHERE "conversation_id" IS NOT NULL')


def drop_search_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in SEARCH_INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):

    dependencies = [
        ('channels', '0016_inbound_reply_applied'),
    ]

    operations = [
        migrations.RunPython(add_search_indexes, drop_search_indexes),
    ]
