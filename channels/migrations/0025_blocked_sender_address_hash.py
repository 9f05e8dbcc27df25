# Blocks are looked up by the address's hash, so erasure can empty the address and keep the block.

import hashlib

from django.db import migrations, models


def hash_existing(apps, schema_editor):
    BlockedSender = apps.get_model("channels", "BlockedSender")
    blocks = list(BlockedSender.objects.exclude(address=""))
    for block in blocks:
        # omni.lib.text.hash_address, as it is today.
        block.address_hash = hashlib.sha256(block.address.strip().lower().encode()).hexdigest()
    BlockedSender.objects.bulk_update(blocks, ["address_hash"], batch_size=1000)


class Migration(migrations.Migration):

    dependencies = [
        ("channels", "0024_erasure_and_retention"),
    ]

    operations = [
        migrations.AddField(
            model_name="blockedsender",
            name="address_hash",
            field=models.CharField(default="", editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name="blockedsender",
            name="address",
            field=models.CharField(blank=True, max_length=512),
        ),
        migrations.RunPython(hash_existing, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="blockedsender",
            name="one_active_block_per_address",
        ),
        migrations.AddConstraint(
            model_name="blockedsender",
            constraint=models.UniqueConstraint(condition=models.Q(("unblocked_at__isnull", True)),
                                               fields=("channel", "address_hash"), name="one_active_block_per_address"),
        ),
    ]
