"""The step interpreter: runs enrollments' journey steps in bulk (campaigns/step_settings.py
lists the kinds and their settings)."""
import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from channels import routing
from channels.models import ENGAGED_DELIVERY_STATUSES, Delivery, DeliveryStatus, Message, MessageSource
from compliance import gate
from contacts.actions import set_attribute_many, set_lifecycle_stage_many
from contacts import conditions
from contacts.data_types import definitions
from contacts.models import ContactEvent
from omni import audit
from omni.lib.bulk import bulk_update, insert_rows
from omni.lib.demo_time import scaled
from templates.models import TemplateVersion

from . import enrollment_state, timing, waking, webhook_calls
from .models import TRIGGER_CONTEXT, Enrollment, EnrollmentState, JourneyStepVisit, JourneyVersion, StepKind
from .step_settings import comparison

# A journey that loops without a wait must not spin inside one tick.
MAX_STEPS_PER_RUN = 25

VISIT_FIELDS = ["enrollment_id", "journey_id", "journey_version_id", "step_key", "step_kind", "visit_number",
                "message_id", "outcome", "visited_at"]
ENROLLMENT_FIELDS = ["current_step_key", "next_run_at", "steps_taken", "context", "state", "end_reason", "ended_at",
                     "claimed_at", "loop_ticks", "waiting_for", "woken_at"]
# What an enrollment exits with when its contact opted out of every channel its journey sends on.
OPTED_OUT = "opted_out"


@dataclass
class Move:
    """What one step did: the visit's outcome (None: no visit yet, the step only started
    waiting), the key of the step it goes to, when it may run that step (None: at once), and
    what it waits for when it stays at its step."""

    outcome: str | None
    next_key: str | None = None
    run_at: object = None
    waiting_for: str = ""


@dataclass
class BatchFacts:
    """What the batch's steps of each kind read or did in bulk, by enrollment id."""

    messages: dict = field(default_factory=dict)
    conditions: dict = field(default_factory=dict)
    dates: dict = field(default_factory=dict)
    engaged: set = field(default_factory=set)
    # Enrollments at an event wait whose contact did the event since reaching the step.
    happened: set = field(default_factory=set)


def run_enrollments(enrollments: list[Enrollment], versions: dict[int, JourneyVersion],
                    template_versions: dict[int, TemplateVersion], now) -> int:
    """Run enrollments' steps, each on its pinned version, until each waits or ends. Returns the
    number of steps run.

    First, enrollments whose contacts opted out of every channel their journey sends on exit.
    Then the batch moves forward one step at a time, all together: every enrollment at a send
    step sends in one bulk pass, every one at a condition is evaluated from a few queries, and so
    on for each kind, so a batch costs a fixed number of queries per step kind rather than per
    enrollment.
    """
    entries, visits, calls, ran = [], [], [], 0
    active = _exit_opted_out(enrollments, versions, template_versions, now, entries)
    for _ in range(MAX_STEPS_PER_RUN):
        if not active:
            break
        at = {e.pk: _step_of(e, versions) for e in active}
        by_kind = defaultdict(list)
        for enrollment in active:
            by_kind[_kind(at[enrollment.pk])].append(enrollment)
        facts = BatchFacts(
            messages=_send_steps(by_kind[StepKind.SEND], at, versions, template_versions, now),
            conditions=_evaluate_conditions(by_kind[StepKind.CONDITION], at, now),
            dates=_date_targets(by_kind[StepKind.WAIT_DATE], at),
            engaged=_engaged_already(by_kind[StepKind.WAIT_EVENT], at),
            happened=_events_already(by_kind[StepKind.WAIT_EVENT], at),
        )
        entries.extend(_update_contacts(by_kind[StepKind.UPDATE], at, versions, now))
        still_running = []
        for enrollment in active:
            step = at[enrollment.pk]
            if step is None:
                entries.append(_end(enrollment, *_why_no_step(enrollment, versions), now))
                continue
            move = _transition(enrollment, step, facts, now)
            if move.outcome is not None:
                ran += 1
                enrollment.steps_taken += 1
                message = facts.messages.get(enrollment.pk) if step.kind == StepKind.SEND else None
                visits.append((enrollment.pk, enrollment.journey_id, enrollment.journey_version_id, step.key,
                               step.kind, enrollment.steps_taken, message.pk if message else None,
                               move.outcome[:100], now))
            if step.kind == StepKind.EXIT:
                entries.append(_end(enrollment, EnrollmentState.EXITED, f"exit:{step.key}", now))
                continue
            if move.waiting_for:
                # It stays at its step until woken (campaigns/waking.py) or until its timeout.
                enrollment.waiting_for, enrollment.woken_at, enrollment.next_run_at = move.waiting_for, None, move.run_at
                if step.kind == StepKind.WEBHOOK:
                    journey = versions[enrollment.journey_version_id].journey
                    calls.append((enrollment.pk, move.waiting_for, step.key, step.config["endpoint"],
                                   webhook_calls.payload(enrollment, journey, step, enrollment.steps_taken + 1)))
                continue
            enrollment.current_step_key = move.next_key or ""
            enrollment.waiting_for, enrollment.woken_at = "", None
            if move.run_at is not None and move.run_at > now:
                enrollment.next_run_at = move.run_at
                continue
            still_running.append(enrollment)
        active = still_running
    looping = {e.pk for e in active}
    for enrollment in enrollments:
        # Count the consecutive ticks it ends still running steps (quarantine_looping).
        enrollment.loop_ticks = enrollment.loop_ticks + 1 if enrollment.pk in looping else 0
    for enrollment in active:
        # Too many steps without a wait: look again next tick rather than spin (run_stage does
        # not claim it again in this one).
        enrollment.next_run_at = now
    for enrollment in enrollments:
        enrollment.claimed_at = None
    bulk_update(enrollments, ENROLLMENT_FIELDS)
    insert_rows(JourneyStepVisit, VISIT_FIELDS, visits)
    audit.record_many(entries)
    if calls:
        # No HTTP while the batch's rows are held: the calls go to the outbound workers once it
        # commits (a batch rolled back, and run again, drops its own).
        transaction.on_commit(lambda: webhook_calls.enqueue(calls), robust=True)
    return ran


def _kind(step):
    return step.kind if step is not None else None


def _step_of(enrollment, versions):
    version = versions.get(enrollment.journey_version_id)
    return version.plan.get(enrollment.current_step_key) if version is not None else None


def _why_no_step(enrollment, versions) -> tuple[str, str]:
    """How an enrollment with no step to run ends: (state, reason)."""
    if enrollment.journey_version_id not in versions:
        return EnrollmentState.FAILED, "no_journey_version"
    if enrollment.current_step_key:
        # Only a hand-made change can leave it at a step its version does not have.
        return EnrollmentState.FAILED, f"missing_step:{enrollment.current_step_key}"
    return EnrollmentState.COMPLETED, "end_of_journey"


def _transition(enrollment, step, facts: BatchFacts, now) -> Move:
    """What one step does for one enrollment, from what its kind's bulk pass found."""
    kind, config = step.kind, step.config
    if kind == StepKind.SEND:
        return Move(facts.messages[enrollment.pk].status, step.following)
    if kind == StepKind.WAIT:
        return Move(f"wait:{config['seconds']}s", step.following, now + scaled(int(config["seconds"])))
    if kind == StepKind.WAIT_UNTIL:
        until = timing.next_local_time(now, timing.contact_zone(enrollment.contact),
                                       timing.parse_time_of_day(config["time"]), config.get("days"))
        return Move(f"until:{until.isoformat()}", step.following, until)
    if kind == StepKind.WAIT_DATE:
        target = facts.dates.get(enrollment.pk)
        if target is None:
            return Move("date:missing", step.else_key or step.following)
        return Move("date:past" if target <= now else f"date:{target.isoformat()}", step.following, target)
    if kind == StepKind.WAIT_EVENT:
        return _wait_for_event(enrollment, step, facts, now)
    if kind == StepKind.CONDITION:
        if facts.conditions[enrollment.pk]:
            return Move("true", step.following)
        return Move("false", step.else_key)
    if kind == StepKind.SPLIT:
        paths = config["paths"]
        drawn = paths[split_path(enrollment.pk, enrollment.steps_taken + 1, step.key, [p["weight"] for p in paths])]
        return Move(f"split:{drawn['name']}", drawn.get("step") or step.following)
    if kind == StepKind.UPDATE:
        return Move("updated", step.following)
    if kind == StepKind.WEBHOOK:
        return _webhook(enrollment, step, now)
    return Move("exit")


def _webhook(enrollment, step, now) -> Move:
    """Start waiting for the answer (the call goes out once the batch commits), or go on: next
    on a 2xx answer, else (next without one) on a failed call or the timeout."""
    otherwise = step.else_key or step.following
    if not enrollment.waiting_for:
        return Move(None, waiting_for=waking.webhook_key(enrollment.pk, enrollment.steps_taken + 1),
                    run_at=now + scaled(int(step.config["timeout_seconds"])))
    answer = enrollment.context.get("webhooks", {}).get(step.key) or {}
    if enrollment.woken_at is None:
        return Move("timeout", otherwise)
    if answer.get("ok"):
        return Move(f"webhook:{answer.get('status')}", step.following)
    return Move("webhook:failed", otherwise)


def _wait_for_event(enrollment, step, facts: BatchFacts, now) -> Move:
    """Start waiting (no visit yet), or end the wait: woken (next step) or timed out (else step,
    or next without one). An event or engagement that already happened, or a message never sent, does not
    wait at all."""
    config = step.config
    timeout_branch = step.else_key or step.following
    if enrollment.pk in facts.happened:
        # The event came before the wait began, or while it was starting: its wake missed it.
        return Move(waking.event_key(config["event"]), step.following)
    if enrollment.waiting_for:
        if enrollment.woken_at is not None:
            return Move(waking.outcome_of(enrollment.waiting_for), step.following)
        if enrollment.pk in facts.engaged:
            # The engagement came while the wait was starting, and its wake missed it.
            return Move(f"engagement:{config['engagement']}", step.following)
        return Move("timeout", timeout_branch)
    timeout = now + scaled(int(config["timeout_seconds"]))
    if "event" in config:
        return Move(None, waiting_for=waking.event_key(config["event"]), run_at=timeout)
    message_id = _message_of(enrollment, config["step"])
    if message_id is None:
        return Move("no_message", timeout_branch)
    if enrollment.pk in facts.engaged:
        return Move(f"engagement:{config['engagement']}", step.following)
    return Move(None, waiting_for=waking.engagement_key(message_id, config["engagement"]), run_at=timeout)


def split_path(enrollment_id: int, visit_number: int, step_key: str, weights: list[int]) -> int:
    """The index of the path a split draws for one visit. A hash, not a random number: a batch
    that run_isolating_failures runs again draws the same path for the same visit."""
    digest = hashlib.sha256(f"{enrollment_id}:{visit_number}:{step_key}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % sum(weights)
    for index, weight in enumerate(weights):
        if point < weight:
            return index
        point -= weight
    raise AssertionError("the point lies below the total weight")  # pragma: no cover


def _message_of(enrollment, step_key: str) -> int | None:
    return enrollment.context.get("messages", {}).get(step_key)


# --- exits on opt-out ----------------------------------------------------------------------------

def _exit_opted_out(enrollments, versions, template_versions, now, entries) -> list:
    """End the enrollments whose contact opted out of every channel their journey's send steps
    use (for those steps' purposes); returns the others. One reachability read for every purpose."""
    scopes = {pk: _send_scopes(version, template_versions) for pk, version in versions.items()}
    wanted = defaultdict(lambda: (set(), {}))
    for enrollment in enrollments:
        for channel, purpose in scopes.get(enrollment.journey_version_id, ()):
            channels, contacts = wanted[purpose]
            channels.add(channel)
            contacts[enrollment.contact_id] = enrollment.contact
    verdicts = gate.reachability_by_purpose(
        {purpose: (contacts.values(), channels) for purpose, (channels, contacts) in wanted.items()}, now)
    staying = []
    for enrollment in enrollments:
        used = scopes.get(enrollment.journey_version_id)
        if used and all(gate.opted_out(verdicts[purpose][enrollment.contact_id][channel])
                        for channel, purpose in used):
            entries.append(_end(enrollment, EnrollmentState.EXITED, OPTED_OUT, now))
        else:
            staying.append(enrollment)
    return staying


def _send_scopes(version, template_versions) -> frozenset:
    """The (channel, purpose) pairs a version's send steps send on."""
    scopes = set()
    for step in version.plan.values():
        if step.kind == StepKind.SEND and step.template_version_id in template_versions:
            purpose = step.purpose or template_versions[step.template_version_id].purpose
            scopes.update((entry["channel"], purpose) for entry in step.channel_plan)
    return frozenset(scopes)


# --- send ----------------------------------------------------------------------------------------

def _send_steps(enrollments, at, versions, template_versions, now) -> dict[int, Message]:
    """Create and dispatch the messages of every enrollment at a send step, in bulk, each with
    the template version its journey version pinned."""
    if not enrollments:
        return {}
    unsaved = []
    for enrollment in enrollments:
        step = at[enrollment.pk]
        # The journey comes with its version, loaded once per batch, not joined to every enrollment.
        journey = versions[enrollment.journey_version_id].journey
        version = template_versions[step.template_version_id]
        unsaved.append(Message(
            contact=enrollment.contact,
            template_version=version,
            channel_plan=step.channel_plan,
            source=MessageSource.JOURNEY,
            purpose=step.purpose or version.purpose,
            urgency=step.urgency,
            # What enrolled the contact, for {{ trigger.<property> }} (campaigns/admission.py).
            variables={"journey": journey.name,
                       "trigger": (enrollment.context.get(TRIGGER_CONTEXT) or {}).get("properties") or {}},
            intent_key=step.intent_key or f"journey:{journey.slug}:{step.key}",
            # The same enrollment reaching the same step on the same visit is the same message.
            idempotency_key=f"enrollment:{enrollment.pk}:{enrollment.steps_taken + 1}:{step.key}",
        ))
    messages, _ = routing.create_and_dispatch(unsaved, now=now)
    for enrollment, message in zip(enrollments, messages):
        enrollment.context.setdefault("messages", {})[at[enrollment.pk].key] = message.pk
    return {enrollment.pk: message for enrollment, message in zip(enrollments, messages)}


# --- waits ---------------------------------------------------------------------------------------

def _date_targets(enrollments, at) -> dict:
    """When each wait_date step waits until (its date plus offset), None for a contact without
    the date. Trigger properties come from the trigger events, in one query, or, for an
    enrollment no event made (an API request's), from what it was enrolled with."""
    if not enrollments:
        return {}
    event_ids = {e.trigger_event_id for e in enrollments if "property" in at[e.pk].config and e.trigger_event_id}
    properties = dict(ContactEvent.objects.filter(pk__in=event_ids).values_list("pk", "properties")) if event_ids else {}
    targets = {}
    for enrollment in enrollments:
        config = at[enrollment.pk].config
        if "attribute" in config:
            value = (enrollment.contact.attributes or {}).get(config["attribute"])
        else:
            trigger = (properties.get(enrollment.trigger_event_id) if enrollment.trigger_event_id
                       else (enrollment.context.get(TRIGGER_CONTEXT) or {}).get("properties"))
            value = (trigger or {}).get(config["property"])
        moment = timing.date_value(value, timing.contact_zone(enrollment.contact))
        targets[enrollment.pk] = (moment + scaled(config.get("offset_seconds", 0))
                                  if moment is not None else None)
    return targets


def _engaged_already(enrollments, at) -> set[int]:
    """The enrollments starting an engagement wait, or at its timeout, whose message is engaged
    as the wait asks: from channels' message events, in one query. (At the timeout: an event
    stored while the wait started, and processed before the wait committed, woke nothing.)"""
    starting = [e for e in enrollments if e.woken_at is None and "engagement" in at[e.pk].config
                and _message_of(e, at[e.pk].config["step"]) is not None]
    if not starting:
        return set()
    proven = _engagement_events({e.contact_id for e in starting},
                                {at[e.pk].config["engagement"] for e in starting})
    return {e.pk for e in starting
            if (_message_of(e, at[e.pk].config["step"]), at[e.pk].config["engagement"]) in proven}


def _events_already(enrollments, at) -> set[int]:
    """The enrollments starting an event wait, or at its timeout, whose contact did the event
    since reaching the step: in one query for the events and at most one for the triggers.
    A wake only finds enrollments already waiting, so an event processed first woke none: one in
    the very batch whose trigger enrolled the contact, or one stored while the wait was starting."""
    starting = [e for e in enrollments if e.woken_at is None and "event" in at[e.pk].config]
    if not starting:
        return set()
    reached = _reached_step(starting, at)
    done = defaultdict(list)
    for contact_id, name, received_at, pk in ContactEvent.objects.filter(
            contact_id__in={e.contact_id for e in starting}, name__in={at[e.pk].config["event"] for e in starting},
            received_at__gte=min(moment for moment, _ in reached.values())).values_list(
            "contact_id", "name", "received_at", "pk"):
        done[contact_id, name].append((received_at, pk))
    return {e.pk for e in starting
            if any(seen > reached[e.pk] for seen in done[e.contact_id, at[e.pk].config["event"]])}


def _reached_step(enrollments, at) -> dict[int, tuple]:
    """When each enrollment reached its event wait, as (moment, event id) to compare with an
    event's (received_at, id): at its first step, after the event that triggered it (that event
    and those stored before it do not count); else when the step came due, which a started wait
    keeps as its timeout less the wait's length."""
    first = [e for e in enrollments if e.steps_taken == 0 and e.trigger_event_id is not None]
    triggers = dict(ContactEvent.objects.filter(pk__in={e.trigger_event_id for e in first})
                    .values_list("pk", "received_at")) if first else {}
    reached = {}
    for enrollment in enrollments:
        if enrollment.trigger_event_id in triggers and enrollment.steps_taken == 0:
            reached[enrollment.pk] = (triggers[enrollment.trigger_event_id], enrollment.trigger_event_id)
        elif enrollment.waiting_for:
            length = scaled(int(at[enrollment.pk].config["timeout_seconds"]))
            reached[enrollment.pk] = (enrollment.next_run_at - length, 0)
        else:
            reached[enrollment.pk] = (enrollment.next_run_at or enrollment.entered_at, 0)
    return reached


def _engagement_events(contact_ids, kinds) -> set[tuple[int, str]]:
    """(message id, engagement kind) pairs channels' message events prove for these contacts."""
    names = {name for kind in kinds for name in waking.events_proving(kind)}
    proven = set()
    for name, properties in ContactEvent.objects.filter(
            contact_id__in=contact_ids, name__in=names, source=waking.CHANNELS_EVENT_SOURCE,
    ).values_list("name", "properties"):
        message_id = (properties or {}).get("message_id")
        proven.update((message_id, kind) for kind in waking.SATISFIES[name])
    return proven


# --- conditions ----------------------------------------------------------------------------------

def _evaluate_conditions(enrollments, at, now) -> dict[int, bool]:
    """Each condition's result, from at most one query per kind of check in the batch."""
    if not enrollments:
        return {}
    checks = defaultdict(list)
    for enrollment in enrollments:
        checks[at[enrollment.pk].config.get("check", "engaged")].append(enrollment)
    statuses = _delivery_statuses(checks["engaged"] + checks["delivered"], at)
    engagement_checks = checks["opened"] + checks["clicked"] + checks["replied"]
    proven = _engagement_events({e.contact_id for e in engagement_checks},
                                {at[e.pk].config["check"] for e in engagement_checks}) if engagement_checks else set()
    last_events = _last_events(checks["event"], at)
    types = definitions().attributes if checks["attribute"] else {}
    results = {}
    for enrollment in enrollments:
        config = at[enrollment.pk].config
        check = config.get("check", "engaged")
        if check in ("opened", "clicked", "replied"):
            results[enrollment.pk] = (_message_of(enrollment, config["step"]), check) in proven
        elif check == "event":
            last = last_events.get((enrollment.contact_id, config["name"]))
            since = (now - timezone.timedelta(days=config["within_days"]) if "within_days" in config
                     else enrollment.entered_at)
            results[enrollment.pk] = last is not None and last >= since
        else:
            results[enrollment.pk] = evaluate_condition(enrollment, config, statuses, types, now)
    return results


def _delivery_statuses(enrollments, at) -> dict[int, set]:
    message_ids = {_message_of(e, at[e.pk].config.get("step")) for e in enrollments} - {None}
    statuses = {}
    if message_ids:
        for message_id, status in Delivery.objects.filter(message_id__in=message_ids).values_list("message_id", "status"):
            statuses.setdefault(message_id, set()).add(status)
    return statuses


def _last_events(enrollments, at) -> dict[tuple[int, str], object]:
    """When each contact last did each event an event branch asks about: one grouped query."""
    if not enrollments:
        return {}
    return {(contact_id, name): last for contact_id, name, last in ContactEvent.objects.filter(
        contact_id__in={e.contact_id for e in enrollments}, name__in={at[e.pk].config["name"] for e in enrollments},
    ).values("contact_id", "name").order_by().annotate(last=Max("occurred_at")).values_list("contact_id", "name", "last")}


def evaluate_condition(enrollment, config: dict, delivery_statuses: dict[int, set], types: dict | None = None,
                       now=None) -> bool:
    """One condition read from the enrollment itself (its contact, its context) or, for
    engaged and delivered, the delivery statuses of its messages by message id. `types`: the
    declared types of the attributes compared (contacts.conditions; undeclared ones as text)."""
    check = config.get("check", "engaged")
    if check in ("engaged", "delivered"):
        message_id = _message_of(enrollment, config.get("step"))
        wanted = set(ENGAGED_DELIVERY_STATUSES)
        if check == "delivered":
            wanted.add(DeliveryStatus.DELIVERED)
        return bool(delivery_statuses.get(message_id, set()) & wanted)
    if check == "attribute":
        value = (enrollment.contact.attributes or {}).get(config["name"])
        if "equals" in config:
            return value == config["equals"]
        return conditions.matches(conditions.parse_condition(comparison(config), (types or {}).get(config["name"]),
                                                             "config"), value, now)
    if check == "webhook":
        value = enrollment.context.get("webhooks", {}).get(config["step"], {}).get("answer")
        for key in config["name"].split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if "equals" in config:
            return value == config["equals"]
        return conditions.matches(conditions.parse_condition(comparison(config), config.get("type"), "config"),
                                  value, now)
    raise ValueError(f"Unknown condition {check!r}.")


# --- updates -------------------------------------------------------------------------------------

def _update_contacts(enrollments, at, versions, now) -> list:
    """Set the attribute or lifecycle stage each update step names: one UPDATE per field and
    value in the batch, whatever the number of contacts. Returns the audit entries."""
    if not enrollments:
        return []
    groups = defaultdict(list)
    for enrollment in enrollments:
        config = at[enrollment.pk].config
        if "lifecycle_stage" in config:
            groups[("lifecycle_stage", config["lifecycle_stage"])].append(enrollment)
        else:
            groups[("attribute", config["attribute"], _frozen(config["value"]))].append(enrollment)
    entries = []
    for target, members in groups.items():
        contact_ids = list(dict.fromkeys(e.contact_id for e in members))
        config = at[members[0].pk].config
        if target[0] == "lifecycle_stage":
            set_lifecycle_stage_many(contact_ids, config["lifecycle_stage"], now=now)
            changed = "lifecycle_stage"
        else:
            set_attribute_many(contact_ids, config["attribute"], config["value"], now=now)
            changed = f"attributes.{config['attribute']}"
        for enrollment in members:
            # Later steps of this run (a branch on it) read the contact as it now is.
            if target[0] == "lifecycle_stage":
                enrollment.contact.lifecycle_stage = config["lifecycle_stage"]
            else:
                enrollment.contact.attributes = {**(enrollment.contact.attributes or {}),
                                                 config["attribute"]: config["value"]}
            journey = versions[enrollment.journey_version_id].journey
            entries.append(audit.build(
                "contact.updated", contact_id=enrollment.contact_id, object_ref=("contacts.contact", str(enrollment.contact_id)),
                actor_label=f"journey:{journey.slug}", reason="journey_step",
                data={"fields": [changed], "journey": journey.pk, "step": at[enrollment.pk].key,
                      "enrollment": enrollment.pk},
            ))
    return entries


def _frozen(value):
    """A JSON value as a dict key (lists and objects by their JSON text)."""
    return json.dumps(value, sort_keys=True)


def _end(enrollment, state, reason, now):
    """End the enrollment in memory; returns the audit entry saying so."""
    return enrollment_state.end(enrollment, state, reason, now)
