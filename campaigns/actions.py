"""Changes to journeys that people make: activate, pause, resume, publish changes, move contacts
to the latest version, enroll by hand, pause and resume one contact's enrollment.

A journey's fields and steps are its draft. Activating it, or publishing its changes, snapshots
the draft as the next JourneyVersion; contacts run on the version they entered on until someone
moves them.
"""
from collections import Counter

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from channels.models import DefaultChannelPlan
from contacts.conditions import condition_problems
from contacts.models import AttributeDefinition, DataType, lifecycle_stage_keys
from omni import audit
from omni.choices import Purpose, Urgency
from omni.models import WebhookEndpoint
from templates.actions import latest_versions
from templates.models import TemplateVersion

from . import enrollment_state
from .models import (
    LIVE_ENROLLMENT_STATES,
    AwaitedEvent,
    Enrollment,
    EnrollmentState,
    Journey,
    JourneyStatus,
    JourneyVersion,
    StepKind,
    TriggerType,
    plan_steps,
    step_setting_problems,
)
from .step_settings import STEP_CHECKS, comparison, split_targets
from .waking import awaited_events

# The declared types a wait_date step's date may have.
DATE_TYPES = (DataType.DATE, DataType.DATETIME, DataType.TEXT)


def draft_snapshot(journey: Journey) -> dict:
    """The journey's draft (its own fields and its steps) as a version would hold it, each send
    step pinned to its template's latest published version."""
    steps = list(
        journey.steps.select_related("template", "next_step__journey", "else_step__journey").order_by("position", "pk")
    )
    published = latest_versions(step.template_id for step in steps if step.template_id)

    def key_of(target):
        if target is None:
            return None
        if target.journey_id == journey.pk:
            return target.key
        # Another journey's step: named so that no step of this journey matches and validation says so.
        return f"{target.journey.slug}:{target.key}"

    # One query, and only for a draft with a send step left to the defaults.
    defaults = DefaultChannelPlan.plans() if any(_uses_default_plan(step) for step in steps) else {}

    rows = []
    for step in steps:
        version = published.get(step.template_id)
        rows.append({
            "key": step.key,
            "kind": step.kind,
            "position": step.position,
            "config": step.config or {},
            "template": step.template_id,
            "template_key": step.template.key if step.template_id else "",
            "template_version": version.pk if version else None,
            "template_version_number": version.number if version else None,
            "purpose": step.purpose,
            "urgency": step.urgency,
            "channel_plan": step.channel_plan or (_default_plan(step, version, defaults) if version else []),
            "intent_key": step.intent_key,
            "next": key_of(step.next_step),
            "else": key_of(step.else_step),
        })
    return {
        "trigger_type": journey.trigger_type,
        "trigger_event": journey.trigger_event,
        "trigger_conditions": journey.trigger_conditions or {},
        "trigger_segment_id": journey.trigger_segment_id,
        "goal_event": journey.goal_event,
        "reentry": journey.reentry,
        "reentry_after_seconds": journey.reentry_after_seconds,
        "on_reply": journey.on_reply,
        "steps": rows,
    }


def _uses_default_plan(step) -> bool:
    return step.kind == StepKind.SEND and not step.channel_plan


def _default_plan(step, version, defaults: dict) -> list:
    """The plan a send step without its own pins at publishing: the default for its purpose and
    urgency, kept to the channels its template version has a variant for (a default names every
    channel a message of its kind may take; this template may be written for fewer). Empty when
    there is none."""
    if not _uses_default_plan(step):
        return []
    default = defaults.get((step.purpose or version.purpose, step.urgency)) or []
    plan = [dict(entry) for entry in default if entry["channel"] in version.channels()]
    if plan:
        plan[-1] = {"channel": plan[-1]["channel"]}  # nothing after it to move on to
    return plan


def _missing_plan_problem(step: dict) -> str:
    """Why a send step left to the defaults got no plan, and what to do."""
    version = TemplateVersion.objects.only("purpose", "variants").get(pk=step["template_version"])
    purpose, urgency = step["purpose"] or version.purpose, step["urgency"]
    kind = f"{Purpose(purpose).label.lower()} messages of {Urgency(urgency).label.lower()} urgency"
    default = DefaultChannelPlan.objects.filter(purpose=purpose, urgency=urgency).first()
    if default is None:
        return (f"Send step {step['key']!r} has no channel plan, and there is no default channel plan for {kind}: "
                f"add one under Default channel plans, or give the step its own plan.")
    return (f"Send step {step['key']!r} has no channel plan, and the default for {kind} "
            f"({', '.join(default.channels)}) names no channel template {step['template_key']!r} "
            f"v{step['template_version_number']} has a variant for (it has: {', '.join(sorted(version.channels()))}): "
            f"give the step its own plan, or add a variant.")


def snapshot_problems(snapshot: dict) -> list[str]:
    """What would stop a snapshot from running, each naming the step (or the trigger), in words a
    marketer can act on."""
    problems = []
    steps = snapshot["steps"]
    if not steps:
        problems.append("The journey has no steps.")
    if snapshot["trigger_type"] != TriggerType.EVENT:
        label = dict(TriggerType.choices).get(snapshot["trigger_type"], snapshot["trigger_type"])
        # Only the tick's event stage enrolls anyone so far: any other trigger would be "Active" and empty.
        problems.append(f"The trigger {label!r} enrolls nobody yet: only an event trigger is built. Choose "
                        f"{TriggerType.EVENT.label!r} and name the event.")
    elif not snapshot["trigger_event"]:
        problems.append("An event-triggered journey needs a trigger event name.")
    by_key = {step["key"]: step for step in steps}
    variant_channels = _variant_channels(steps)
    for step in steps:
        key, config = step["key"], step["config"]
        settings = step_setting_problems(step["kind"], config, step["channel_plan"],
                                         has_template=bool(step["template"]))
        problems.extend(f"Step {key!r}: {message}" for messages in settings.values() for message in messages)
        if step["kind"] == StepKind.SEND and step["template_version"] is not None and not step["channel_plan"]:
            problems.append(_missing_plan_problem(step))
        if step["kind"] == StepKind.SEND and step["template"] and step["template_version"] is None:
            problems.append(f"Send step {key!r} uses template {step['template_key']!r}, which has no published "
                            f"version: publish the template first.")
        elif step["kind"] == StepKind.SEND and step["template"] and "channel_plan" not in settings:
            have = variant_channels.get(step["template_version"], set())
            for channel in dict.fromkeys(entry["channel"] for entry in step["channel_plan"]):
                if channel not in have:
                    problems.append(
                        f"Send step {key!r} plans {channel}, but template {step['template_key']!r} "
                        f"v{step['template_version_number']} has no {channel} variant "
                        f"(it has: {', '.join(sorted(have)) or 'none'}).")
        if "config" not in settings:
            problems.extend(_target_problems(step, by_key))
        for label, target in (("next", step["next"]), ("else", step["else"])):
            if target and target not in by_key:
                problems.append(f"Step {key!r} goes {label} to {target!r}, which is not a step of this journey.")
    problems.extend(_declared_type_problems(steps))
    problems.extend(_webhook_endpoint_problems(steps))
    problems.extend(
        f"Steps {' → '.join(repr(key) for key in loop)} loop without a wait step: add a wait to the loop "
        f"or point one of them elsewhere."
        for loop in loops_without_wait(steps)
    )
    return problems


def _variant_channels(steps: list[dict]) -> dict[int, set[str]]:
    """The channels each pinned template version has a variant for, by version id."""
    ids = {step["template_version"] for step in steps if step["kind"] == StepKind.SEND and step["template_version"]}
    return {pk: {variant["channel"] for variant in variants}
            for pk, variants in TemplateVersion.objects.filter(pk__in=ids).values_list("pk", "variants")} if ids else {}


def _target_problems(step: dict, by_key: dict) -> list[str]:
    """What is wrong with a step's settings (checked by step_setting_problems) given the other
    steps: the steps a condition, a wait or a split names."""
    key, kind, config = step["key"], step["kind"], step["config"]
    label = {StepKind.CONDITION: "Condition", StepKind.WAIT_EVENT: "Wait"}.get(kind)
    if (kind == StepKind.CONDITION and config.get("check", "engaged") in STEP_CHECKS) or (
            kind == StepKind.WAIT_EVENT and "engagement" in config):
        target = config["step"]
        if target not in by_key:
            return [f"{label} step {key!r} checks step {target!r}, which is not a step of this journey."]
        if by_key[target]["kind"] != StepKind.SEND:
            return [f"{label} step {key!r} checks step {target!r}, which sends no message."]
    if kind == StepKind.CONDITION and config.get("check") == "webhook":
        if config["step"] not in by_key:
            return [f"Condition step {key!r} reads the answer of step {config['step']!r}, which is not a step of "
                    f"this journey."]
        if by_key[config["step"]]["kind"] != StepKind.WEBHOOK:
            return [f"Condition step {key!r} reads the answer of step {config['step']!r}, which calls no webhook."]
    if kind == StepKind.SPLIT:
        return [f"Split step {key!r} sends path {path['name']!r} to {target!r}, which is not a step of this journey."
                for path, target in zip(config["paths"], split_targets(config)) if target and target not in by_key]
    return []


def _declared_type_problems(steps: list[dict]) -> list[str]:
    """Update steps set values of the types their attributes are declared with, and stages that
    exist; wait_date steps read attributes declared as dates (undeclared ones pass); attribute
    branches compare with an operator and value of the attribute's type. One query."""
    updates = [s for s in steps if s["kind"] == StepKind.UPDATE and isinstance(s["config"], dict)]
    dated = [s for s in steps if s["kind"] == StepKind.WAIT_DATE and isinstance(s["config"], dict)]
    branches = [s for s in steps if s["kind"] == StepKind.CONDITION and isinstance(s["config"], dict)
                and s["config"].get("check") == "attribute" and "operator" in s["config"]]
    names = {s["config"].get("attribute") for s in updates + dated} | {s["config"].get("name") for s in branches}
    names = {name for name in names if isinstance(name, str)}
    declared = dict(AttributeDefinition.objects.filter(name__in=names).values_list("name", "data_type")) if names else {}
    problems = []
    for step in branches:
        config = step["config"]
        problems.extend(f"Condition step {step['key']!r}: {problem} (attribute {config['name']!r} is "
                        f"{declared.get(config['name'], 'undeclared: compared as text')})."
                        for problem in condition_problems(comparison(config), declared.get(config["name"]), "config"))
    for step in updates:
        config = step["config"]
        if "lifecycle_stage" in config:
            stages = lifecycle_stage_keys()
            if config["lifecycle_stage"] not in stages:
                problems.append(f"Update step {step['key']!r}: config.lifecycle_stage {config['lifecycle_stage']!r} "
                                f"is not a lifecycle stage ({', '.join(stages)}).")
        elif config.get("attribute") in declared and "value" in config:
            data_type = declared[config["attribute"]]
            if not value_has_type(config["value"], data_type):
                problems.append(f"Update step {step['key']!r}: config.value {config['value']!r} is not a "
                                f"{data_type}, the declared type of attribute {config['attribute']!r}.")
    for step in dated:
        data_type = declared.get(step["config"].get("attribute"))
        if data_type is not None and data_type not in DATE_TYPES:
            problems.append(f"Wait step {step['key']!r}: config.attribute {step['config']['attribute']!r} is "
                            f"declared a {data_type}, not a date.")
    return problems


def _webhook_endpoint_problems(steps: list[dict]) -> list[str]:
    """Webhook steps call endpoints that exist and are active. One query, only with such steps."""
    calling = [s for s in steps if s["kind"] == StepKind.WEBHOOK and isinstance(s["config"], dict)
               and isinstance(s["config"].get("endpoint"), str)]
    if not calling:
        return []
    active = dict(WebhookEndpoint.objects.filter(name__in={s["config"]["endpoint"] for s in calling})
                  .values_list("name", "active"))
    problems = []
    for step in calling:
        name = step["config"]["endpoint"]
        if name not in active:
            problems.append(f"Webhook step {step['key']!r}: config.endpoint {name!r} is not a webhook endpoint "
                            f"(add it under Webhook endpoints).")
        elif not active[name]:
            problems.append(f"Webhook step {step['key']!r}: config.endpoint {name!r} is inactive.")
    return problems


def value_has_type(value, data_type: str) -> bool:
    """Whether a JSON value is of a declared type (None, no value, fits every type)."""
    if value is None:
        return True
    if data_type == DataType.NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if data_type == DataType.BOOLEAN:
        return isinstance(value, bool)
    if data_type == DataType.LIST:
        return isinstance(value, list)
    if not isinstance(value, str):
        return False
    try:
        if data_type == DataType.DATE:
            return parse_date(value) is not None
        if data_type == DataType.DATETIME:
            moment = parse_datetime(value)
            return moment is not None and moment.tzinfo is not None
    except ValueError:
        return False
    return True


def loops_without_wait(steps: list[dict]) -> list[list[str]]:
    """Cycles the step interpreter could run round without ever waiting, as lists of step keys."""
    planned = plan_steps(steps)
    edges = {}
    for key, step in planned.items():
        config = step.config if isinstance(step.config, dict) else {}
        if step.kind in (StepKind.SEND, StepKind.UPDATE):
            edges[key] = [step.following]
        elif step.kind == StepKind.CONDITION:
            edges[key] = [step.following, step.else_key]
        elif step.kind == StepKind.SPLIT:
            edges[key] = [target or step.following for target in split_targets(config)]
        elif step.kind == StepKind.WAIT_DATE or (step.kind == StepKind.WAIT_EVENT and "engagement" in config):
            # A date already past, or an engagement that already happened, does not wait.
            edges[key] = [step.following, step.else_key or step.following]
    # A wait (for a duration, a time of day or an event) ends a tick's run of an enrollment, and an
    # exit ends the journey: neither is on a loop here.
    edges = {key: [t for t in targets if t in edges] for key, targets in edges.items()}
    loops, done, path = [], set(), []

    def visit(key):
        path.append(key)
        for target in dict.fromkeys(edges[key]):
            if target in path:
                loops.append(path[path.index(target):] + [target])
            elif target not in done:
                visit(target)
        path.pop()
        done.add(key)

    for key in edges:
        if key not in done:
            visit(key)
    return loops


def validate_journey(journey: Journey) -> list[str]:
    """Problems that would stop the journey's draft from running (empty when it can be published)."""
    return snapshot_problems(draft_snapshot(journey))


def has_unpublished_changes(journey: Journey) -> bool:
    """Whether the draft differs from the version new enrollments pin (or nothing is published yet)."""
    live = journey.live_version
    return live is None or live.snapshot() != draft_snapshot(journey)


@transaction.atomic
def publish_journey(journey: Journey, *, actor=None) -> JourneyVersion:
    """Make the journey's draft its next version, which new enrollments pin; contacts in flight
    stay on theirs. Refuses an invalid draft, with the reasons, and a draft with nothing new."""
    _lock(journey)
    snapshot = _valid_draft(journey)
    live = journey.live_version
    if live is not None and live.snapshot() == snapshot:
        raise ValidationError(f"Nothing to publish: the steps and settings are those of version {live.number}.")
    return _publish(journey, snapshot, actor)


def activate_journey(journey: Journey, actor=None) -> Journey:
    """Start running a journey on its draft, published as a new version when it changed.
    Refuses a journey that cannot run, with the reasons."""
    return _set_running(journey, "journey.activated", actor, publish_changes=True)


def resume_journey(journey: Journey, actor=None) -> Journey:
    """Run a paused journey again; enrollments carry on from where they stopped, on their versions.
    Draft changes stay unpublished until someone publishes them."""
    return _set_running(journey, "journey.resumed", actor, publish_changes=False)


@transaction.atomic
def pause_journey(journey: Journey, actor=None) -> Journey:
    """Stop running steps; enrollments stay where they are until resumed."""
    journey.status = JourneyStatus.PAUSED
    journey.save(update_fields=["status", "updated_at"])
    audit.record("journey.paused", obj=journey, actor=actor)
    return journey


@transaction.atomic
def move_to_latest_version(journey: Journey, *, actor=None) -> int:
    """Move the journey's contacts in flight onto its latest version, each at the step with the
    same key, and audit each move. Returns how many moved.

    Refuses, naming the steps, when a contact's current step is not in the latest version; then
    nobody moves.
    """
    _lock(journey)
    target = journey.live_version
    if target is None:
        raise ValidationError(f"{journey.name!r} has no published version to move contacts to.")
    in_flight = Enrollment.objects.filter(journey=journey, state__in=LIVE_ENROLLMENT_STATES).exclude(
        journey_version=target
    )
    # Locked, so a tick running some of them commits first and the steps read here are where they stand.
    locked = in_flight.select_for_update(**({"of": ("self",)} if connection.features.has_select_for_update_of else {}))
    enrollments = list(locked.select_related("journey_version").only(
        "pk", "contact_id", "current_step_key", "journey_version__number"
    ))
    missing = Counter(
        (e.current_step_key, _number(e)) for e in enrollments
        if e.current_step_key and e.current_step_key not in target.plan
    )
    if missing:
        named = "; ".join(
            f"step {key!r} ({count} contact{'' if count == 1 else 's'} on version {number})"
            for (key, number), count in sorted(missing.items(), key=lambda item: (item[0][0], item[0][1] or 0))
        )
        raise ValidationError(
            f"Nobody was moved: version {target.number} has no {named}. Publish a version that keeps these steps, "
            f"or let those contacts finish on their version."
        )
    if not enrollments:
        return 0
    in_flight.update(journey_version=target)
    moved_from = Counter(_number(e) for e in enrollments)
    audit.record_many([
        audit.build("journey.enrollment_moved", contact_id=e.contact_id, obj=e, actor=actor,
                    data={"journey": journey.pk, "from_version": _number(e), "to_version": target.number,
                          "step": e.current_step_key})
        for e in enrollments
    ])
    audit.record("journey.contacts_moved", obj=journey, actor=actor,
                 data={"to_version": target.number, "moved": len(enrollments),
                       "from_versions": {str(number): count for number, count in moved_from.items()}})
    return len(enrollments)


@transaction.atomic
def enroll_contact(journey: Journey, contact, *, actor=None, actor_label="") -> Enrollment:
    """Put one contact into a journey now (API or admin), on its latest version, refusing a second live enrollment."""
    if journey.status != JourneyStatus.ACTIVE or journey.live_version is None:
        raise ValidationError(f"Journey {journey.name!r} is not active.")
    if Enrollment.objects.filter(journey=journey, contact=contact, state__in=LIVE_ENROLLMENT_STATES).exists():
        raise ValidationError(f"{contact} is already in {journey.name!r}.")
    now = timezone.now()
    version = journey.live_version
    enrollment = Enrollment.objects.create(journey=journey, journey_version=version, contact=contact,
                                           current_step_key=version.first_step_key,
                                           state=EnrollmentState.ACTIVE, next_run_at=now, entered_at=now)
    audit.record("journey.enrolled", contact=contact, obj=enrollment, actor=actor, actor_label=actor_label,
                 reason="manual", data={"journey": journey.pk, "version": version.number})
    return enrollment


def pause_enrollment(enrollment: Enrollment, *, actor=None, actor_label="", reason: str,
                     conversation_id: int | None = None, now=None) -> Enrollment:
    """Hold one contact's enrollment at its step until someone (or, with `conversation_id`, that
    conversation's closing) resumes it. Audited. Refuses one that is not active, saying why."""
    paused, refused = pause_enrollments([enrollment.pk], actor=actor, actor_label=actor_label, reason=reason,
                                        conversation_id=conversation_id, now=now)
    if not paused:
        raise ValidationError(_refusal(refused, enrollment, "paused", "only an active enrollment can be paused"))
    _copy_state(paused[0], enrollment)
    return enrollment


def resume_enrollment(enrollment: Enrollment, *, actor=None, actor_label="", reason: str = "",
                      now=None) -> Enrollment:
    """Run a paused enrollment again from its step; a wait that ran out meanwhile runs at the next
    tick. Audited. Refuses one that is not paused, saying why."""
    resumed, refused = resume_enrollments([enrollment.pk], actor=actor, actor_label=actor_label, reason=reason,
                                          now=now)
    if not resumed:
        raise ValidationError(_refusal(refused, enrollment, "resumed", "only a paused enrollment can be resumed"))
    _copy_state(resumed[0], enrollment)
    return enrollment


def _refusal(refused: list, enrollment: Enrollment, verb: str, rule: str) -> str:
    if not refused:
        return f"Enrollment {enrollment.pk} was not {verb}: it no longer exists."
    found = refused[0]
    return (f"{found.contact} in {found.journey} was not {verb}: it is {found.get_state_display().lower()}, "
            f"and {rule}.")


@transaction.atomic
def pause_enrollments(enrollment_ids, *, actor=None, actor_label="", reason: str, conversation_id: int | None = None,
                      now=None) -> tuple[list[Enrollment], list[Enrollment]]:
    """pause_enrollment() for many at once, in a fixed number of queries: returns (paused, refused)
    (refused: not active). Every one paused shares the reason and the conversation."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Say why the enrollment is paused: the reason stays on it until it resumes.")
    now = now or timezone.now()
    return _move_enrollments(enrollment_ids, EnrollmentState.PAUSED, lambda e: enrollment_state.pause(
        e, reason=reason, now=now, conversation_id=conversation_id, actor=actor, actor_label=actor_label))


@transaction.atomic
def resume_enrollments(enrollment_ids, *, actor=None, actor_label="", reason: str = "",
                       now=None) -> tuple[list[Enrollment], list[Enrollment]]:
    """resume_enrollment() for many at once, in a fixed number of queries: returns (resumed,
    refused) (refused: not paused)."""
    now = now or timezone.now()
    reason = (reason or "").strip()
    return _move_enrollments(enrollment_ids, EnrollmentState.ACTIVE, lambda e: enrollment_state.resume(
        e, now=now, reason=reason, actor=actor, actor_label=actor_label))


def _move_enrollments(enrollment_ids, to: str, move) -> tuple[list[Enrollment], list[Enrollment]]:
    rows = Enrollment.objects.filter(pk__in=list(enrollment_ids)).select_related("contact", "journey")
    # Locked, so a worker running one of them commits first and its state is read as it left it.
    locked = rows.select_for_update(no_key=True, **({"of": ("self",)} if connection.features.has_select_for_update_of
                                                    else {}))
    enrollments = list(locked.order_by("pk"))
    moving = [e for e in enrollments if enrollment_state.can_move(e, to)]
    refused = [e for e in enrollments if not enrollment_state.can_move(e, to)]
    entries = [move(e) for e in moving]
    enrollment_state.save(moving, entries)
    return moving, refused


def _copy_state(source: Enrollment, target: Enrollment) -> None:
    for name in enrollment_state.FIELDS:
        setattr(target, name, getattr(source, name))


def _number(enrollment) -> int | None:
    return enrollment.journey_version.number if enrollment.journey_version_id else None


def _lock(journey: Journey) -> None:
    """Lock the journey's row (two publishers would pick the same number) and read it afresh."""
    # NO KEY: a tick inserting visits and enrollments takes KEY SHARE on the journey row while
    # it holds the enrollments a move waits for; FOR UPDATE would deadlock with it.
    list(Journey.objects.select_for_update(no_key=True).filter(pk=journey.pk).values_list("pk"))
    journey.refresh_from_db()


def _valid_draft(journey: Journey) -> dict:
    snapshot = draft_snapshot(journey)
    problems = snapshot_problems(snapshot)
    if problems:
        raise ValidationError(problems)
    return snapshot


def _publish(journey: Journey, snapshot: dict, actor) -> JourneyVersion:
    number = (journey.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    version = JourneyVersion.objects.create(
        journey=journey, number=number, published_by=actor if getattr(actor, "is_authenticated", False) else None,
        **snapshot,
    )
    AwaitedEvent.objects.bulk_create(AwaitedEvent(version=version, event=name)
                                     for name in sorted(awaited_events(snapshot["steps"])))
    journey.live_version = version
    journey.save(update_fields=["live_version", "updated_at"])
    audit.record("journey.published", obj=version, actor=actor,
                 data={"journey": journey.pk, "version": number, "steps": len(snapshot["steps"])})
    return version


@transaction.atomic
def _set_running(journey: Journey, action: str, actor, *, publish_changes: bool) -> Journey:
    _lock(journey)
    live = journey.live_version
    if publish_changes or live is None:
        snapshot = _valid_draft(journey)
        if live is None or live.snapshot() != snapshot:
            live = _publish(journey, snapshot, actor)
    journey.status = JourneyStatus.ACTIVE
    journey.save(update_fields=["status", "updated_at"])
    audit.record(action, obj=journey, actor=actor, data={"version": live.number})
    return journey
