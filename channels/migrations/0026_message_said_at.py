# Message.said_at: when a message last went into the queue. Arbitration's windows count from it
# (channels/arbitration.py), and its index moves from created_at to it.

from django.db import migrations, models
from django.db.models import F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce

# channels.arbitration.SAID_STATUSES, as it is today.
SAID_STATUSES = ["queued", "sent", "delivered", "engaged"]


def fill_said_at(apps, schema_editor):
    """One UPDATE: a message with deliveries was last queued when its latest delivery was; a
    message said without any delivery (none in the product, some in old data) at its creation."""
    Message = apps.get_model("channels", "Message")
    Delivery = apps.get_model("channels", "Delivery")
    latest = Delivery.objects.filter(message_id=OuterRef("pk")).order_by("-queued_at").values("queued_at")[:1]
    (Message.objects.filter(Q(status__in=SAID_STATUSES) | Q(pk__in=Delivery.objects.values("message_id")))
     .update(said_at=Coalesce(Subquery(latest), F("created_at"))))


class Migration(migrations.Migration):

    dependencies = [
        ("channels", "0025_blocked_sender_address_hash"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="message",
            name="message_contact_intent",
        ),
        migrations.AddField(
            model_name="message",
            name="said_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(fill_said_at, migrations.RunPython.noop),
        # Built after the fill, so the fill does not maintain it row by row.
        migrations.AddIndex(
            model_name="message",
            index=models.Index(fields=["contact", "intent_key", "said_at"], name="message_contact_intent"),
        ),
    ]
