"""What channels keeps of a person, emptied on erasure (contacts.hooks.erase_contact).

Messages and deliveries keep their rows, statuses and times (what was sent when, on which
channel, is history other rows point at) without what was said or where it went: variables,
own content, addresses, bodies, provider payloads, inbound bodies and media, agents' notes.
A block on one of the contact's addresses keeps only the address's hash (and stays in force).
What was still to be sent is cancelled through the state machine (channels/state.py).
"""
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
BLANK_DELIVERY = {"to_address": "", "subject": "", "text_body": "", "html_body": "", "content": {},
                  "error_message": ""}


def erase_channel_data(sender, contact, now, **kwargs) -> dict:
    cancelled, deliveries_cancelled = cancel_unsent(contact.pk, now)
    messages = Message.objects.filter(contact_id=contact.pk)
    return {
        "channels.messages_cancelled": cancelled,
        "channels.deliveries_cancelled": deliveries_cancelled,
        "channels.message_variables": messages.exclude(variables={}).update(variables={}),
        "channels.own_content": messages.filter(content__isnull=False).update(content=NO_VARIANTS),
        "channels.deliveries": Delivery.objects.filter(contact_id=contact.pk).update(**BLANK_DELIVERY),
        "channels.delivery_events": DeliveryEvent.objects.filter(delivery__contact_id=contact.pk).update(
            raw={}, recipient="", detail=""),
        "channels.sandbox_outbox": OutboxMessage.objects.filter(delivery__contact_id=contact.pk).update(
            to_address="", subject="", text_body="", html_body="", content={}),
        "channels.inbound_messages": InboundMessage.objects.filter(contact_id=contact.pk).update(
            from_address="", body="", media=[], raw={}),
        "channels.conversation_notes": ConversationNote.objects.filter(conversation__contact_id=contact.pk).update(
            body=""),
        "channels.blocked_senders": BlockedSender.objects.filter(
            address_hash__in=[hash_address(address) for address in (contact.phone, contact.email) if address]).update(
            address="", note=""),
    }


def cancel_unsent(contact_id: int, now) -> tuple[int, int]:
    """Cancel the contact's pending, deferred and queued messages and their queued deliveries (a
    delivery a worker is sending now is left to finish: cancelling it could not unsend it).
    Returns (messages cancelled, deliveries cancelled)."""
    # Locked in id order, before the contact (channels/state.py's lock order).
    unsent = list(Message.objects.select_for_update().filter(contact_id=contact_id, status__in=UNSENT)
                  .order_by("pk").values_list("pk", "plan_step"))
    moved = state.move_messages([state.MessageMove(pk, MessageStatus.CANCELLED, plan_step, {"status_reason": ERASED})
                                 for pk, plan_step in unsent], now)
    queued = list(Delivery.objects.filter(contact_id=contact_id, status=DeliveryStatus.QUEUED)
                  .values_list("pk", flat=True))
    deliveries = state.move_deliveries(queued, DeliveryStatus.CANCELLED, only_from=frozenset({DeliveryStatus.QUEUED}),
                                       error_code=ERASED)
    return len(moved), len(deliveries)
