"""What channels keeps of a person, emptied on erasure (contacts.hooks.erase_contact).

Messages and deliveries keep their rows, statuses and times (what was sent when, on which
channel, is history other rows point at) without what was said or where it went: variables,
own content, addresses, bodies, provider payloads, inbound bodies and media, agents' notes.
A provider's report that matched no delivery is emptied too when it names one of the
contact's addresses.
A block on one of the contact's addresses keeps only the address's hash (and stays in force).
What was still to be sent is cancelled through the state machine (channels/state.py).
"""
from django.db.models import CharField, Q
from django.db.models.functions import Cast

from omni import audit
from omni.lib.text import hash_address

from . import state
from .models import (
    BlockedSender,
    ConversationNote,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    InboundMessage,
    Message,
    MessageStatus,
    OutboxMessage,
)

UNSENT = [MessageStatus.PENDING, MessageStatus.DEFERRED, MessageStatus.QUEUED]
ERASED = "contact_erased"
# A message's own content once erased: still not NULL (the message_template_or_own_content
# constraint tells own content from a template by it), but no variant says anything.
NO_VARIANTS: list = []
# quarantine_reason: why the tick set a row aside, a failure's text that may name the person
# (the audit log keeps it as personal data); the row stays set aside.
BLANK_DELIVERY = {"to_address": "", "subject": "", "text_body": "", "html_body": "", "content": {},
                  "error_message": "", "quarantine_reason": ""}


def erase_channel_data(sender, contact, now, **kwargs) -> dict:
    cancelled, deliveries_cancelled = cancel_unsent(contact.pk, now)
    messages = Message.objects.filter(contact_id=contact.pk)
    return {
        "channels.messages_cancelled": cancelled,
        "channels.deliveries_cancelled": deliveries_cancelled,
        "channels.message_variables": messages.exclude(variables={}, quarantine_reason="").update(
            variables={}, quarantine_reason=""),
        "channels.own_content": messages.filter(content__isnull=False).update(content=NO_VARIANTS),
        "channels.deliveries": Delivery.objects.filter(contact_id=contact.pk).update(**BLANK_DELIVERY),
        # Before the events below lose the address that finds them.
        "channels.unmatched_report_entries": audit.erase_personal_data_about(
            DeliveryEvent._meta.label_lower,
            DeliveryEvent.objects.filter(unlinked_events_naming(contact)).values_list(Cast("pk", CharField())),
            now=now),
        "channels.delivery_events": DeliveryEvent.objects.filter(
            Q(delivery__contact_id=contact.pk) | unlinked_events_naming(contact)).update(
            raw={}, recipient="", detail=""),
        "channels.sandbox_outbox": OutboxMessage.objects.filter(delivery__contact_id=contact.pk).update(
            to_address="", subject="", text_body="", html_body="", content={}),
        "channels.inbound_messages": InboundMessage.objects.filter(contact_id=contact.pk).update(
            from_address="", body="", media=[], raw={}, quarantine_reason=""),
        "channels.conversation_notes": ConversationNote.objects.filter(conversation__contact_id=contact.pk).update(
            body=""),
        "channels.blocked_senders": BlockedSender.objects.filter(
            address_hash__in=[hash_address(address) for address in (contact.phone, contact.email) if address]).update(
            address="", note=""),
    }


def unlinked_events_naming(contact) -> Q:
    """The provider reports that matched no delivery (kept for reconciliation) naming one of the
    contact's addresses: they are the contact's too."""
    addresses = [address.strip() for address in (contact.email, contact.phone) if address and address.strip()]
    if not addresses:
        return Q(pk__in=[])
    named = Q()
    for address in addresses:
        named |= Q(recipient__iexact=address)
    return Q(delivery__isnull=True) & named


def cancel_unsent(contact_id: int, now) -> tuple[int, int]:
    """Cancel the contact's pending, deferred and queued messages and their queued deliveries (a
    delivery a worker is sending now is left to finish: cancelling it could not unsend it).
    Returns (messages cancelled, deliveries cancelled)."""
    # Locked in id order, before the contact (channels/state.py's lock order).
    unsent = list(Message.objects.select_for_update().filter(contact_id=contact_id, status__in=UNSENT)
                  .order_by("pk").values_list("pk", "plan_step"))
    moved = state.cancel_messages(unsent, ERASED, now)
    queued = list(Delivery.objects.filter(contact_id=contact_id, status=DeliveryStatus.QUEUED)
                  .values_list("pk", flat=True))
    deliveries = state.move_deliveries(queued, DeliveryStatus.CANCELLED, only_from=frozenset({DeliveryStatus.QUEUED}),
                                       error_code=ERASED)
    return len(moved), len(deliveries)
