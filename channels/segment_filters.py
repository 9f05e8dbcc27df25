"""The engagement filter of segments: contacts who had a message delivered, opened it, clicked
it or replied on a channel within the last N days (or did not). Registered in contacts.segments
by ChannelsConfig.ready()."""
import datetime as dt

from django.db.models import Exists, OuterRef, Q

from contacts.segments import FilterKind, FormField, register
from omni.choices import Channel

from .models import DeliveryEvent, EventType, InboundMessage

ENGAGEMENTS = {
    "delivered": "had a message delivered",
    "opened": "opened a message",
    "clicked": "clicked a message",
    "replied": "replied",
}
# The provider events that count as each engagement. A read receipt (SMS, WhatsApp, RCS) is
# that channel's open.
ENGAGEMENT_EVENTS = {
    "delivered": [EventType.DELIVERED],
    "opened": [EventType.OPENED, EventType.READ],
    "clicked": [EventType.CLICKED],
}


def engagement_problems(config, path):
    problems = []
    if config.get("engagement") not in ENGAGEMENTS:
        problems.append(f"{path}.engagement must be one of {', '.join(ENGAGEMENTS)}")
    if config.get("channel") not in Channel.values:
        problems.append(f"{path}.channel must be one of {', '.join(Channel.values)}")
    days = config.get("within_days")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 36500:
        problems.append(f"{path}.within_days must be a whole number of days from 1 to 36500")
    if not isinstance(config.get("did", True), bool):
        problems.append(f"{path}.did must be true or false")
    return problems


def engagement_q(config, now):
    since = now - dt.timedelta(days=config["within_days"])
    if config["engagement"] == "replied":
        found = InboundMessage.objects.filter(contact=OuterRef("pk"), channel=config["channel"],
                                              received_at__gte=since, received_at__lte=now)
    else:
        found = DeliveryEvent.objects.filter(
            delivery__contact=OuterRef("pk"), delivery__channel=config["channel"],
            event_type__in=ENGAGEMENT_EVENTS[config["engagement"]], occurred_at__gte=since, occurred_at__lte=now)
    q = Q(Exists(found))
    return q if config.get("did", True) else ~q


def register_segment_filters():
    register(FilterKind(
        name="engagement", label="Engagement", order=50,
        fields=[
            FormField("did", "Did or did not", "select", choices=[("true", "did"), ("false", "did not")]),
            FormField("engagement", "What", "select", choices=list(ENGAGEMENTS.items())),
            FormField("channel", "Channel", "select", choices=Channel.choices),
            FormField("within_days", "In the last N days", "number"),
        ],
        validate=engagement_problems, to_q=engagement_q,
    ))
