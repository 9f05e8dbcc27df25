"""SES event records for tests, from the documented samples in payloads/ (see its README)."""
import copy
import json
from datetime import UTC, datetime
from pathlib import Path

PAYLOADS = Path(__file__).parent / "payloads"
DETAIL_KEYS = {"Rendering Failure": "failure", "DeliveryDelay": "deliveryDelay"}


def ses_event(name: str, message_id: str, recipient: str = "alice@example.com", *, delivery_id=None,
              timestamp: str | None = None, **details) -> dict:
    """The sample record `payloads/ses_<name>.json` about our message and recipient.

    `details` override fields of the event's own object (e.g. bounceType="Transient").
    """
    event = copy.deepcopy(json.loads((PAYLOADS / f"ses_{name}.json").read_text()))
    event_type = event.get("eventType") or event["notificationType"]
    timestamp = timestamp or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    mail = event["mail"]
    mail.update(messageId=message_id, destination=[recipient], timestamp=timestamp)
    if delivery_id is not None:
        mail.setdefault("tags", {})["omni_delivery"] = [str(delivery_id)]
    body = event.setdefault(DETAIL_KEYS.get(event_type, event_type[:1].lower() + event_type[1:]), {})
    body.update(timestamp=timestamp, **details)
    for key in ("bouncedRecipients", "complainedRecipients"):
        if key in body:
            body[key][0]["emailAddress"] = recipient
    if "recipients" in body:
        body["recipients"] = [recipient]
    return event


def renamed(event: dict, event_type: str) -> dict:
    """A copy of an event record whose eventType is something Omni does not know."""
    return {**copy.deepcopy(event), "eventType": event_type}
