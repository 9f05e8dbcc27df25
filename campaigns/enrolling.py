"""Events in: pause, resume or end enrollments when their contacts reply, wake the enrollments
waiting for the events (campaigns/waking.py), enroll contacts in the journeys their events
trigger, and convert goals.

One tick stage (campaigns/tick.py): unprocessed events are claimed in batches; an event that
cannot be processed is quarantined and the rest of its batch goes on.

Replies reach journeys as events channels stores (channels may not import campaigns):
`inbound.replied` when a contact writes in, `conversation.closed` when their conversation
closes, each with the conversation's id. Each live enrollment of the contact then does what its
version's on_reply says (see _act_on_conversations); one a conversation paused stays paused while
any other conversation of the contact is open.
"""
from collections import Counter, defaultdict
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q

from channels import state
from channels.models import Conversation, ConversationStatus, Message, MessageStatus
from contacts.data_types import definitions
from contacts.models import Contact, ContactEvent
from omni import audit
from omni.lib.claims import claim, excluding
from omni.lib.quarantine import quarantine_failures, run_isolating_failures

from . import enrollment_state
from .admission import Wanted, enroll_many
from .date_triggers import contact_zone, moment_of
from .models import (
    LIVE_ENROLLMENT_STATES,
    AwaitedEvent,
    Enrollment,
    EnrollmentState,
    RUNNING_JOURNEY_STATUSES,
    TRIGGER_CONTEXT,
    JourneyVersion,
    OnReply,
    TriggerType,
)
from .tick_report import TickReport
from .trigger_conditions import compile_conditions, event_matches
from .waking import awaited_events, wake_for_events

# Events claimed per transaction. Large enough that a batch's fixed costs (the claim query, the
# commit) are spread thin; small enough that a batch commits in well under a second.
EVENT_BATCH = 1000

REPLIED = "inbound.replied"
CONVERSATION_CLOSED = "conversation.closed"
# Only channels' own events move enrollments: an API client sending an event of the same name
# triggers journeys like any event, and pauses or resumes nothing.
CONVERSATION_EVENT_SOURCE = "channels"
# Why a trigger enrolled nobody (journey.enrollment_refused), beside the re-entry rules' reasons.
EVENT_TOO_OLD = "event_too_old"
DATE_MISSING = "date_missing"
# What a closing does to an enrollment its conversation paused, by its version's on_reply. A
# version without a pause (after a move to another version) resumes, or exits when its replies exit.
ON_CLOSE = {OnReply.PAUSE_RESUME: "resume", OnReply.CONTINUE: "resume",
            OnReply.PAUSE_EXIT: "exit", OnReply.EXIT: "exit"}


def process_events_batch(now, report: TickReport, handled: set | None = None) -> int:
    """Claim unprocessed events: enroll contacts in journeys they trigger, convert goals. An
    event that cannot be processed is quarantined; the rest of the batch goes on."""
    with transaction.atomic():
        events = claim(
            excluding(ContactEvent.objects.filter(processed_at__isnull=True, quarantined_at__isnull=True), handled)
            .order_by("received_at", "id"),
            EVENT_BATCH,
        )
        if not events:
            return 0
        failures = run_isolating_failures(events, lambda rows: _process_events(rows, now, report))
        report.quarantined += quarantine_failures(ContactEvent, failures, now, stage="events")
        return len(events)


def _process_events(events, now, report: TickReport) -> None:
    # The request that stored an event wrote nothing else; its audit entry is written here,
    # dated when it was received, and commits with what the event caused.
    audit.record_many([
        audit.build("event.received", contact_id=e.contact_id, obj=e, actor_label=e.sent_by or e.source,
                    data={"name": e.name}, occurred_at=e.received_at)
        for e in events
    ])
    names = {e.name for e in events}
    # The live versions these events trigger, and any version, of a running journey or not,
    # whose goal they reach (enrollments keep older versions; a contact who reaches the goal
    # while their journey is paused has converted all the same) or with a step waiting for one
    # of them: one query.
    versions = list(
        JourneyVersion.objects.filter(
            Q(journey__status__in=RUNNING_JOURNEY_STATUSES, trigger_type=TriggerType.EVENT, trigger_event__in=names,
              journey__live_version=F("pk"))
            | Q(goal_event__in=names)
            | Q(Exists(AwaitedEvent.objects.filter(version=OuterRef("pk"), event__in=names)))
        ).select_related("journey")
    )
    converted = enrolled = woken = 0
    awaited = {name for version in versions for name in awaited_events(version.steps)} & names
    if awaited:
        woken = wake_for_events([e for e in events if e.name in awaited], now)
    running = [version for version in versions if version.journey.status in RUNNING_JOURNEY_STATUSES]
    if running:
        enrolled = _enroll_from_events(events, running, now)
    # After enrolling: a goal reached after the trigger, both in this batch, converts the
    # enrollment the trigger just made.
    converted = _convert_goals(events, versions, now)
    # After enrolling: a contact who writes in pauses the enrollment their sign-up in the same
    # batch just made. Only a batch holding a reply or a closing reads enrollments for them.
    by_conversations = (_act_on_conversations(events, now) if REPLIED in names or CONVERSATION_CLOSED in names
                        else Counter())
    ContactEvent.objects.filter(pk__in=[e.pk for e in events]).update(processed_at=now)
    report.converted += converted
    report.paused += by_conversations["paused"]
    report.resumed += by_conversations["resumed"]
    report.exited_on_reply += by_conversations["exited"]
    report.enrolled += enrolled
    report.woken += woken
    report.events += len(events)


def _act_on_conversations(events, now) -> Counter:
    """Act on replies and closings, in the order they happened, for every live enrollment of
    their contacts, by its version's on_reply:

    - inbound.replied: pause_resume and pause_exit pause an active enrollment for that
      conversation; exit ends a live one ("replied"); continue does nothing.
    - conversation.closed: an enrollment paused for that conversation stays paused, for another
      one, while the contact has another conversation open (opened before the closing): support
      is still talking with them. Once none is, it exits ("conversation_closed") under
      pause_exit, and resumes under pause_resume (see ON_CLOSE for a version moved to
      meanwhile). Enrollments paused by staff or by another conversation stay paused.

    The enrollments are read and locked in one query and written in one, whatever the batch;
    a batch with closings reads its contacts' open conversations in one more.
    Returns how many were paused, resumed and exited.
    """
    relevant = [e for e in events if e.name in (REPLIED, CONVERSATION_CLOSED)
                and e.source == CONVERSATION_EVENT_SOURCE]
    if not relevant:
        return Counter()
    conversations = {e.pk: _conversation_id(e) for e in relevant}
    live = _locked(Enrollment.objects.filter(
        contact_id__in={e.contact_id for e in relevant}, state__in=LIVE_ENROLLMENT_STATES,
    ).exclude(journey_version__on_reply=OnReply.CONTINUE, state=EnrollmentState.ACTIVE))
    by_contact = defaultdict(list)
    for enrollment in live.annotate(on_reply=F("journey_version__on_reply")):
        by_contact[enrollment.contact_id].append(enrollment)
    closings = [e for e in relevant if e.name == CONVERSATION_CLOSED and e.contact_id in by_contact]
    still_open = _open_conversations({e.contact_id for e in closings},
                                     closed={conversations[e.pk] for e in closings}) if closings else {}
    moved, entries, counts = {}, [], Counter()
    for event in relevant:
        conversation_id = conversations[event.pk]
        # One opened after this closing did not hold it up: its own reply pauses the contact again.
        others = [pk for pk, opened_at in still_open.get(event.contact_id, ()) if opened_at <= event.occurred_at]
        for enrollment in by_contact.get(event.contact_id, ()):
            if event.name == REPLIED:
                kind, entry = _on_reply(enrollment, conversation_id, now)
            else:
                kind, entry = _on_close(enrollment, conversation_id, others, now)
            if entry is not None:
                counts[kind] += 1
                entries.append(entry)
                moved[enrollment.pk] = enrollment
    enrollment_state.save(list(moved.values()), entries)
    cancel_unsent([e.pk for e in moved.values() if e.state == EnrollmentState.EXITED], "journey_exited", now)
    return counts


# Messages of an enrollment that has not handed them to a provider yet: still cancellable.
CANCELLABLE = (MessageStatus.PENDING, MessageStatus.DEFERRED)


def cancel_unsent(enrollment_ids: list[int], reason: str, now) -> int:
    """Cancel the messages the enrollments' steps made that wait to be routed or were deferred
    (quiet hours, a cap, a conversation): a contact who reached the goal, or whose reply ended
    the journey, is not sent what the journey still had for them. A queued message is never
    recalled. Returns how many were cancelled."""
    if not enrollment_ids:
        return 0
    return len(state.cancel_messages(
        Message.objects.filter(journey_visit__enrollment_id__in=enrollment_ids, status__in=CANCELLABLE)
        .order_by("pk").values_list("pk", "plan_step"), reason, now))


def _conversation_id(event) -> int:
    value = (event.properties or {}).get("conversation_id")
    if type(value) is not int:
        raise ValueError(f"Event {event.name} needs properties.conversation_id, the conversation's id as an "
                         f"integer, not {value!r}.")
    return value


def _on_reply(enrollment, conversation_id: int, now) -> tuple[str, object]:
    """What a reply does to one enrollment: (kind, audit entry), or ("", None) for nothing."""
    if enrollment.state not in LIVE_ENROLLMENT_STATES:
        return "", None
    if enrollment.on_reply == OnReply.EXIT:
        return "exited", enrollment_state.end(enrollment, EnrollmentState.EXITED, "replied", now,
                                              data={"conversation": conversation_id})
    pauses = enrollment.on_reply in (OnReply.PAUSE_RESUME, OnReply.PAUSE_EXIT)
    if pauses and enrollment.state == EnrollmentState.ACTIVE:
        return "paused", enrollment_state.pause(enrollment, reason=enrollment_state.CONVERSATION_OPEN, now=now,
                                                conversation_id=conversation_id)
    # Already paused (by staff, or by this or another conversation): the first pause stands.
    return "", None


def _open_conversations(contact_ids, *, closed: set[int]) -> dict[int, list[tuple[int, datetime]]]:
    """Each contact's conversations not closed, as (id, opened_at) in id order, leaving out those
    the batch's closings name (closed all the same, whatever their row says by now)."""
    found = defaultdict(list)
    for contact_id, pk, opened_at in (
            Conversation.objects.filter(contact_id__in=contact_ids).exclude(status=ConversationStatus.CLOSED)
            .exclude(pk__in=closed).order_by("pk").values_list("contact_id", "pk", "opened_at")):
        found[contact_id].append((pk, opened_at))
    return found


def _on_close(enrollment, conversation_id: int, still_open: list[int], now) -> tuple[str, object]:
    """What a closing does to one enrollment: only one that conversation paused moves, and while
    the contact has another conversation open (`still_open`) it stays paused, for that one."""
    if enrollment.state != EnrollmentState.PAUSED or enrollment.paused_for_conversation_id != conversation_id:
        return "", None
    if still_open:
        return "handed_over", enrollment_state.hand_over(enrollment, still_open[0])
    if ON_CLOSE.get(enrollment.on_reply) == "exit":
        return "exited", enrollment_state.end(enrollment, EnrollmentState.EXITED, enrollment_state.CONVERSATION_CLOSED,
                                              now, data={"conversation": conversation_id})
    return "resumed", enrollment_state.resume(enrollment, now=now, by_conversation=True)


def _convert_goals(events, versions, now) -> int:
    """End live enrollments whose own version's goal event just happened, and not before what
    enrolled them (a purchase made before the sign-up that enrolled the contact is no conversion
    of the journey)."""
    by_goal = {}
    for version in versions:
        if version.goal_event:
            by_goal.setdefault(version.goal_event, []).append(version.pk)
    pairs = [(e.contact_id, vid, e) for e in events for vid in by_goal.get(e.name, [])]
    if not pairs:
        return 0
    live = _locked(Enrollment.objects.filter(
        state__in=LIVE_ENROLLMENT_STATES,
        contact_id__in={c for c, _, _ in pairs},
        journey_version_id__in={v for _, v, _ in pairs},
    ))
    wanted = defaultdict(list)
    for contact_id, version_id, event in pairs:
        wanted[(contact_id, version_id)].append(event)
    converted, reached = [], {}
    for enrollment in live:
        event = next((e for e in wanted.get((enrollment.contact_id, enrollment.journey_version_id), ())
                      if _reached_after_trigger(e, enrollment)), None)
        if event is not None:
            converted.append(enrollment)
            reached[enrollment.pk] = event
    entries = []
    for enrollment in converted:
        event = reached[enrollment.pk]
        entries.append(enrollment_state.end(enrollment, EnrollmentState.CONVERTED, f"goal:{event.name}", now,
                                            data={"event": event.pk}))
    Enrollment.objects.bulk_update(converted, ["state", "ended_at", "end_reason", "next_run_at", "claimed_at",
                                               "waiting_for", "woken_at"])
    audit.record_many(entries)
    cancel_unsent([e.pk for e in converted], "journey_converted", now)
    return len(converted)


def _locked(enrollments):
    """`enrollments` locked until the batch commits (read in id order): a worker running one of
    them finishes first, and what it ended is no longer live when read. NO KEY: a worker
    inserting visits of other enrollments takes KEY SHARE on theirs; in id order, so two
    batches touching the same contacts queue rather than deadlock."""
    enrollments = enrollments.order_by("pk")
    if not connection.features.has_select_for_update:
        return enrollments
    return enrollments.select_for_update(no_key=True, **({"of": ("self",)} if connection.features.has_select_for_update_of
                                                         else {}))


def _reached_after_trigger(event, enrollment) -> bool:
    """Whether a goal event came after the event that enrolled the contact (both on the events'
    own clock; an enrollment no event made counts every goal event processed while it is live)."""
    if event.pk == enrollment.trigger_event_id:
        return False
    occurred_at = (enrollment.context.get(TRIGGER_CONTEXT) or {}).get("occurred_at")
    return not (enrollment.trigger_event_id and occurred_at) or event.occurred_at >= datetime.fromisoformat(occurred_at)


def _enroll_from_events(events, versions, now) -> int:
    """Enroll contacts in the journeys their events trigger, each on the journey's live version:
    an event enrolls when its properties meet the trigger's conditions and it is not older than
    the trigger's maximum age (else the refusal `event_too_old` is audited). With a date property,
    the first step is due at that date's moment on the contact's clock."""
    triggered = [
        v for v in versions
        if v.journey.live_version_id == v.pk and v.trigger_type == TriggerType.EVENT and v.trigger_event
        and v.first_step_key
    ]
    if not triggered:
        return 0
    # The conditions of each version, typed by the declared properties of its event (this
    # process's copy of the definitions, contacts.data_types).
    declared = definitions().properties
    conditions = {v.pk: compile_conditions(v.trigger_conditions, declared.get(v.trigger_event, {})) for v in triggered}
    dated = {v.trigger_event for v in triggered if v.trigger_date_property}
    zones = _zones_of({e.contact_id for e in events if e.name in dated})
    candidates, refused = {}, []
    for event in events:
        for version in triggered:
            if version.trigger_event != event.name or not event_matches(conditions[version.pk], event.properties, now):
                continue
            age = (now - event.occurred_at).total_seconds()
            if version.trigger_max_age_seconds is not None and age > version.trigger_max_age_seconds:
                refused.append(audit.build(
                    "journey.enrollment_refused", contact_id=event.contact_id, obj=version.journey,
                    reason=EVENT_TOO_OLD, data={"event": event.pk, "age_seconds": int(age),
                                                "max_age_seconds": version.trigger_max_age_seconds}))
                continue
            moment = None
            if version.trigger_date_property:
                value = (event.properties or {}).get(version.trigger_date_property)
                moment = moment_of(value, zones[event.contact_id], version.trigger_date_offset_days,
                                   version.trigger_date_time)
                if moment is None:
                    # Refused before it is a candidate: a later event of the batch with the date still enrolls.
                    refused.append(audit.build(
                        "journey.enrollment_refused", contact_id=event.contact_id, obj=version.journey,
                        reason=DATE_MISSING, data={"event": event.pk, "property": version.trigger_date_property}))
                    continue
            candidates.setdefault((version.journey_id, event.contact_id), (version, event, moment))
    wanted = []
    for (_, contact_id), (version, event, moment) in candidates.items():
        trigger = event_trigger_context(event)
        next_run_at = now
        if moment is not None:
            # Due at the moment, even one already past: the next tick runs it.
            next_run_at, trigger["moment"] = moment, moment.isoformat()
        wanted.append(Wanted(version=version, contact_id=contact_id, next_run_at=next_run_at, trigger=trigger,
                             reason=f"event:{event.pk}", data={"event": event.pk}, trigger_event_id=event.pk))
    return enroll_many(wanted, now, refused)


def event_trigger_context(event) -> dict:
    """What an event-triggered enrollment keeps of its trigger (Enrollment.context["trigger"])."""
    return {"type": TriggerType.EVENT.value, "event": event.name, "event_id": event.pk,
            "occurred_at": event.occurred_at.isoformat(), "properties": event.properties or {}}


def _zones_of(contact_ids) -> dict[int, str]:
    """Each contact's zone (campaigns.date_triggers.contact_zone), in one query."""
    if not contact_ids:
        return {}
    return {contact.pk: contact_zone(contact)
            for contact in Contact.objects.filter(pk__in=contact_ids).only("pk", "timezone", "phone")}
