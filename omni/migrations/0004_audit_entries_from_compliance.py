"""Move the audit log from compliance into omni's base, where every layer writes it.

Existing entries keep their ids and content (foreign keys become plain ids) and are left
unsealed: the sealer chains them first, in id order. 0005 moves the Compliance role's
permissions on the log along.
"""
from django.db import migrations

COPY_BATCH = 2000


def copy_entries(apps, schema_editor):
    db = schema_editor.connection.alias
    Old = apps.get_model("compliance", "AuditEntry")
    New = apps.get_model("omni", "AuditEntry")
    last_id = 0
    while True:
        batch = list(Old.objects.using(db).filter(pk__gt=last_id).order_by("pk")[:COPY_BATCH])
        if not batch:
            break
        New.objects.using(db).bulk_create([
            New(id=old.pk, occurred_at=old.occurred_at, actor_id=old.actor_id, actor_label=old.actor_label,
                action=old.action, contact_id=old.contact_id, object_type=old.object_type, object_id=old.object_id,
                channel=old.channel, reason=old.reason, data=old.data)
            for old in batch
        ])
        last_id = batch[-1].pk
    if last_id and schema_editor.connection.vendor == "postgresql":
        # Rows were inserted with explicit ids: move the id sequence past them.
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT setval(pg_get_serial_sequence('omni_auditentry', 'id'), %s)", [last_id])


class Migration(migrations.Migration):
    dependencies = [
        ("omni", "0003_audit_chain"),
        ("omni", "0002_role_groups"),
        ("compliance", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(copy_entries, migrations.RunPython.noop),
    ]
