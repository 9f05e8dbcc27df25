"""Audit entries: a keyed hash of their personal data (each personal data row gets its own key),
the time each was written, and triggers refusing DELETE and TRUNCATE, and any UPDATE but the
sealer's. Entries written before keep verifying: an empty keyed hash is left out of the hashed
content, and existing personal data rows have no key to check. Existing rows are taken as
written now (the column's database default)."""

import django.db.models.functions.datetime
import django.utils.timezone
import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('omni', '0007_lean_indexes'),
    ]

    operations = [
        pgtrigger.migrations.RemoveTrigger(
            model_name='auditentry',
            name='protect_sealed_delete',
        ),
        migrations.AddField(
            model_name='auditentry',
            name='personal_hmac',
            field=models.CharField(blank=True, default='', editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name='auditentry',
            name='written_at',
            field=models.DateTimeField(db_default=django.db.models.functions.datetime.Now(), default=django.utils.timezone.now, editable=False),
        ),
        migrations.AddField(
            model_name='auditpersonaldata',
            name='key',
            field=models.CharField(blank=True, default='', editable=False, max_length=64),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name='auditentry',
            trigger=pgtrigger.compiler.Trigger(name='protect_unsealed_update', sql=pgtrigger.compiler.UpsertTriggerSql(condition='WHEN (OLD."action" IS DISTINCT FROM (NEW."action") OR OLD."actor_id" IS DISTINCT FROM (NEW."actor_id") OR OLD."actor_label" IS DISTINCT FROM (NEW."actor_label") OR OLD."channel" IS DISTINCT FROM (NEW."channel") OR OLD."contact_id" IS DISTINCT FROM (NEW."contact_id") OR OLD."data" IS DISTINCT FROM (NEW."data") OR OLD."id" IS DISTINCT FROM (NEW."id") OR OLD."object_id" IS DISTINCT FROM (NEW."object_id") OR OLD."object_type" IS DISTINCT FROM (NEW."object_type") OR OLD."occurred_at" IS DISTINCT FROM (NEW."occurred_at") OR OLD."personal_hmac" IS DISTINCT FROM (NEW."personal_hmac") OR OLD."reason" IS DISTINCT FROM (NEW."reason") OR OLD."written_at" IS DISTINCT FROM (NEW."written_at"))', func="RAISE EXCEPTION 'pgtrigger: Cannot update rows from % table', TG_TABLE_NAME;", hash='f5262d1ad8d5a7a058a4b69bc89240aab98c5ce5', operation='UPDATE', pgid='pgtrigger_protect_unsealed_update_6d72b', table='omni_auditentry', when='BEFORE')),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name='auditentry',
            trigger=pgtrigger.compiler.Trigger(name='protect_delete', sql=pgtrigger.compiler.UpsertTriggerSql(func="RAISE EXCEPTION 'pgtrigger: Cannot delete rows from % table', TG_TABLE_NAME;", hash='88a3b1b1b57b84f10640396e7199f52287910ed7', operation='DELETE', pgid='pgtrigger_protect_delete_4f52f', table='omni_auditentry', when='BEFORE')),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name='auditentry',
            trigger=pgtrigger.compiler.Trigger(name='protect_truncate', sql=pgtrigger.compiler.UpsertTriggerSql(func="RAISE EXCEPTION 'pgtrigger: Cannot truncate % table', TG_TABLE_NAME;", hash='76964368c6b10115ce93ed2d1d8fc5a4df627688', level='STATEMENT', operation='TRUNCATE', pgid='pgtrigger_protect_truncate_9baef', table='omni_auditentry', when='BEFORE')),
        ),
    ]
