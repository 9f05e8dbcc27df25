"""The WhatsApp customer-service window, for the adapter, routing and pages alike.

WhatsApp allows free-form messages only within 24 hours of the contact's last message to us;
outside that window only an approved content template goes through (Twilio error 63016).
"""
from datetime import datetime, timedelta

from django.db.models import Max
from django.utils import timezone

from omni.choices import Channel
from omni.lib.bulk import filter_in

from .models import InboundMessage

SESSION_WINDOW = timedelta(hours=24)


def session_ends(contact_ids, now: datetime | None = None) -> dict[int, datetime]:
    """When each contact's open WhatsApp session ends, for those with one open now; one query
    whatever their number."""
    now = now or timezone.now()
    ids = set(contact_ids)
    if not ids:
        return {}
    latest = (filter_in(InboundMessage.objects.filter(channel=Channel.WHATSAPP, received_at__gte=now - SESSION_WINDOW),
                        "contact_id", ids)
              .values_list("contact_id").annotate(last=Max("received_at")))
    return {contact_id: last + SESSION_WINDOW for contact_id, last in latest}


def in_whatsapp_session(contact_id: int, now: datetime | None = None) -> bool:
    return contact_id in session_ends([contact_id], now)
