"""The List-Unsubscribe headers marketing email carries (RFC 2369 and RFC 8058 one-click), made
by compliance from the contact and this delivery, so an opt-out is counted against it."""
from compliance.links import list_unsubscribe_headers
from omni.choices import Channel, Purpose


def with_unsubscribe_headers(delivery, content: dict) -> dict:
    """`content` with List-Unsubscribe and List-Unsubscribe-Post added for marketing email."""
    if delivery.channel != Channel.EMAIL or delivery.message.purpose != Purpose.MARKETING:
        return content
    headers = list_unsubscribe_headers(delivery.contact_id, delivery.pk, delivery.message_id)
    return {**content, "headers": {**(content.get("headers") or {}), **headers}}
