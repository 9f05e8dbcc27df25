"""Waiting enrollments, and waking them when what they wait for happens.

A step that waits for something (wait_event; the webhook step's answer) keeps its enrollment at
the step with `Enrollment.waiting_for` set to a key, and its timeout in next_run_at. The tick's
event stage (campaigns/enrolling.py) wakes the enrollments of each event's contact that wait for
a key the event satisfies, in two queries per batch of events, through the enrollment_waiting
index: nothing polls them. Waking sets woken_at and makes the step due now; a paused enrollment
is woken too, and runs its step once resumed.

Keys:
    event:<name>                         any event of that name
    engagement:<message id>:<kind>       channels' message.<kind> event about that message
                                         (step_settings.ENGAGEMENT_KINDS)
"""
from django.db import connection
from django.db.models import Q

from channels.conversations import EVENT_SOURCE as CHANNELS_EVENT_SOURCE
from channels.provider_reports import MESSAGE_CONTACT_EVENTS

from .models import LIVE_ENROLLMENT_STATES, Enrollment
from .step_settings import StepKind

_OPENED, _READ, _CLICKED, _REPLIED, _DELIVERED = (
    MESSAGE_CONTACT_EVENTS[kind] for kind in ("opened", "read", "clicked", "replied", "delivered"))
# The engagement kinds each of channels' message events proves. Engagement proves delivery.
SATISFIES = {
    _DELIVERED: ("delivered",),
    _OPENED: ("opened", "engaged", "delivered"),
    _READ: ("opened", "engaged", "delivered"),
    _CLICKED: ("clicked", "engaged", "delivered"),
    _REPLIED: ("replied", "engaged", "delivered"),
}


def events_proving(kind: str) -> tuple[str, ...]:
    """The contact event names that prove engagement of `kind` with a message."""
    return tuple(name for name, kinds in SATISFIES.items() if kind in kinds)


def event_key(name: str) -> str:
    return f"event:{name}"


def engagement_key(message_id: int, kind: str) -> str:
    return f"engagement:{message_id}:{kind}"


def webhook_key(enrollment_id: int, visit_number: int) -> str:
    return f"webhook:{enrollment_id}:{visit_number}"


def outcome_of(waiting_for: str) -> str:
    """A woken wait's visit outcome: "event:<name>" or "engagement:<kind>"."""
    kind, _, rest = waiting_for.partition(":")
    if kind == "engagement":
        return f"engagement:{rest.rpartition(':')[2]}"
    return waiting_for


def awaited_events(steps: list[dict]) -> set[str]:
    """The event names a version's steps wait for (kept as AwaitedEvent rows when published)."""
    names = set()
    for step in steps:
        config = step.get("config") or {}
        if step["kind"] != StepKind.WAIT_EVENT:
            continue
        if config.get("event"):
            names.add(config["event"])
        elif config.get("engagement"):
            names.update(events_proving(config["engagement"]))
    return names


def keys_satisfied(event) -> list[str]:
    """The waiting_for keys one contact event satisfies."""
    keys = [event_key(event.name)]
    if event.source == CHANNELS_EVENT_SOURCE and event.name in SATISFIES:
        message_id = (event.properties or {}).get("message_id")
        if type(message_id) is int:
            keys += [engagement_key(message_id, kind) for kind in SATISFIES[event.name]]
    return keys


def wake_for_events(events, now) -> int:
    """Wake the live enrollments that wait for what these events are, each only for its own
    contact's events: one locking read and one UPDATE, whatever the batch. Returns how many."""
    wanted = {(event.contact_id, key) for event in events for key in keys_satisfied(event)}
    if not wanted:
        return 0
    waiting = Enrollment.objects.filter(
        ~Q(waiting_for=""), contact_id__in={contact for contact, _ in wanted},
        waiting_for__in={key for _, key in wanted}, state__in=LIVE_ENROLLMENT_STATES,
    )
    # NO KEY and in id order, like the reply stage: a worker running one of them commits first,
    # and the wait is judged where it left it (still waiting, or moved on).
    if connection.features.has_select_for_update:
        waiting = waiting.select_for_update(no_key=True, **({"of": ("self",)} if connection.features.has_select_for_update_of
                                                            else {}))
    woken = [pk for pk, contact_id, key in waiting.order_by("pk").values_list("pk", "contact_id", "waiting_for")
             if (contact_id, key) in wanted]
    if woken:
        Enrollment.objects.filter(pk__in=woken).update(woken_at=now, next_run_at=now)
    return len(woken)
