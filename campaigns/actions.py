"""Changes to journeys that people make: activate, pause, resume, publish changes, move contacts
to the latest version, enroll by hand, pause and resume one contact's enrollment.

A journey's fields and steps are its draft. Activating it, or publishing its changes, snapshots
the draft as the next JourneyVersion; contacts run on the version they entered on until someone
moves them.
"""
import re
from collections import Counter
from contextlib import contextmanager

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from channels.models import DefaultChannelPlan
from contacts import conditions
from contacts.data_types import type_problem
from contacts.models import AttributeDefinition, DataType, lifecycle_stage_keys
from omni import audit
from omni.choices import Purpose, Urgency
from omni.lib import approval
from omni.lib.sql import lock_until_commit
from omni.models import WebhookEndpoint
from templates.actions import latest_versions
from templates.models import Template, TemplateVersion

from . import enrollment_state
from .admission import ALREADY_ENROLLED, REENTRY_NEVER, reentry_refusal
from .models import (
    LIVE_ENROLLMENT_STATES,
    RUNNING_JOURNEY_STATUSES,
    SEGMENT_TRIGGERS,
    TRIGGER_CONTEXT,
    AwaitedEvent,
    Enrollment,
    EnrollmentState,
    Journey,
    JourneyStatus,
    JourneyStep,
    JourneyVersion,
    StepKind,
    TriggerType,
    plan_steps,
    step_setting_problems,
)
from .step_settings import STEP_CHECKS, comparison, split_targets
from .trigger_conditions import condition_problems
from .waking import awaited_events

# The declared types a wait_date step's date may have.
WAIT_DATE_TYPES = (DataType.DATE, DataType.DATETIME, DataType.TEXT)


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
            **({"end": True} if step.ends and step.next_step_id is None else {}),
        })
    return {
        "trigger_type": journey.trigger_type,
        "trigger_event": journey.trigger_event,
        "trigger_conditions": journey.trigger_conditions or {},
        "trigger_segment_id": journey.trigger_segment_id,
        "trigger_max_age_seconds": journey.trigger_max_age_seconds,
        "trigger_date_attribute": journey.trigger_date_attribute,
        "trigger_date_property": journey.trigger_date_property,
        "trigger_date_offset_days": journey.trigger_date_offset_days,
        "trigger_date_time": journey.trigger_date_time,
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


class Problem(str):
    """One problem of a draft: its message (it is the string, for those that read strings), and
    the step key and the field at fault when it concerns one ("" otherwise), so the builder can
    link to the step's form."""

    step: str
    field: str

    def __new__(cls, message: str, *, step: str = "", field: str = ""):
        problem = super().__new__(cls, message)
        problem.step, problem.field = step, field
        return problem


def _field_of(message: str) -> str:
    """The step setting a message names: config.seconds -> seconds, channel_plan[0]... -> channel_plan."""
    match = re.search(r"\b(config\.\w+|channel_plan|template)\b", message)
    return match.group(1).removeprefix("config.") if match else ""


def snapshot_problems(snapshot: dict) -> list[str]:
    """What would stop a snapshot from running, each naming the step (or the trigger), in words a
    marketer can act on. Each is a Problem: the step and field it concerns ride along."""
    problems = []
    for problem in _snapshot_problems(snapshot):
        if isinstance(problem, Problem):
            problems.append(problem)
            continue
        match = re.search(r"[Ss]teps? '([\w-]+)'", problem)
        step = match.group(1) if match else ""
        field = _field_of(problem) if step else ""
        if step and not field and " plans " in problem:
            field = "channel_plan"
        if step and not field and "channel plan" in problem:
            field = "channel_plan"
        if step and not field and "template" in problem:
            field = "template"
        problems.append(Problem(problem, step=step, field=field))
    return problems


def _snapshot_problems(snapshot: dict) -> list[str]:
    problems = []
    steps = snapshot["steps"]
    if not steps:
        problems.append("The journey has no steps.")
    problems.extend(trigger_problems(snapshot))
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


# Ten years either way: further than any reminder reaches, and well inside the dates Python adds.
MAX_DATE_OFFSET_DAYS = 3660
DATE_TYPES = (DataType.DATE, DataType.DATETIME)


def trigger_problems(snapshot: dict) -> list[str]:
    """What is wrong with a snapshot's trigger settings, each naming the setting."""
    problems = []
    trigger = snapshot["trigger_type"]
    label = dict(TriggerType.choices).get(trigger, trigger)
    if trigger == TriggerType.EVENT:
        if not snapshot["trigger_event"]:
            problems.append("An event-triggered journey needs a trigger event name.")
        problems.extend(condition_problems(snapshot["trigger_conditions"], snapshot["trigger_event"]))
    elif trigger == TriggerType.DATE_ATTRIBUTE:
        if not snapshot["trigger_date_attribute"]:
            problems.append(f"The trigger {label!r} needs the date attribute: the contact attribute holding the date.")
        if snapshot["trigger_date_property"]:
            problems.append(f"The date property of the event is for an event trigger; the trigger {label!r} reads "
                            f"the date attribute. Empty the date property.")
    elif trigger in SEGMENT_TRIGGERS:
        if not snapshot["trigger_segment_id"]:
            problems.append(f"The trigger {label!r} needs a segment: choose the trigger segment.")
    elif trigger != TriggerType.API:
        problems.append(f"The trigger {label!r} is not one Omni knows. Choose {TriggerType.EVENT.label!r}, "
                        f"{TriggerType.DATE_ATTRIBUTE.label!r}, a segment or {TriggerType.API.label!r}.")
    dated = (trigger == TriggerType.DATE_ATTRIBUTE
             or (trigger == TriggerType.EVENT and snapshot["trigger_date_property"]))
    if not dated and (snapshot["trigger_date_offset_days"] or snapshot["trigger_date_time"] is not None):
        problems.append("Days from the date and the local time apply to a date: name the date property of the "
                        "event, or choose the trigger \"A date attribute\".")
    if abs(snapshot["trigger_date_offset_days"] or 0) > MAX_DATE_OFFSET_DAYS:
        problems.append(f"Days from the date must be between -{MAX_DATE_OFFSET_DAYS} and {MAX_DATE_OFFSET_DAYS}, "
                        f"not {snapshot['trigger_date_offset_days']}.")
    if snapshot["trigger_max_age_seconds"] is not None and trigger != TriggerType.EVENT:
        problems.append(f"The maximum event age applies to an event trigger, not to {label!r}: empty it.")
    if trigger == TriggerType.DATE_ATTRIBUTE and snapshot["trigger_date_attribute"]:
        declared = AttributeDefinition.objects.filter(name=snapshot["trigger_date_attribute"]).first()
        if declared is not None and declared.data_type not in DATE_TYPES:
            problems.append(f"The date attribute {declared.name!r} is declared as {declared.get_data_type_display()}, "
                            f"not a date: choose a date or date-and-time attribute.")
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
                        for problem in conditions.condition_problems(comparison(config), declared.get(config["name"]),
                                                                     "config"))
    for step in updates:
        config = step["config"]
        if "lifecycle_stage" in config:
            stages = lifecycle_stage_keys()
            if config["lifecycle_stage"] not in stages:
                problems.append(f"Update step {step['key']!r}: config.lifecycle_stage {config['lifecycle_stage']!r} "
                                f"is not a lifecycle stage ({', '.join(stages)}).")
        elif config.get("attribute") in declared and "value" in config:
            problem = type_problem("config.value", declared[config["attribute"]], config["value"])
            if problem:
                problems.append(f"Update step {step['key']!r} sets attribute {config['attribute']!r}: {problem}")
    for step in dated:
        data_type = declared.get(step["config"].get("attribute"))
        if data_type is not None and data_type not in WAIT_DATE_TYPES:
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


def has_unpublished_changes(journey: Journey, draft: dict | None = None) -> bool:
    """Whether the draft (its snapshot, when the caller has it) differs from the version new
    enrollments pin, or nothing is published yet."""
    live = journey.live_version
    return live is None or live.snapshot() != (draft_snapshot(journey) if draft is None else draft)


def publish_journey(journey: Journey, *, actor=None) -> JourneyVersion:
    """Make the journey's draft its next version, which new enrollments pin; contacts in flight
    stay on theirs. Refuses an invalid draft, with the reasons, and a draft with nothing new; for
    a running (or paused) journey, also a draft that needs approval and lacks it (audited)."""
    with _refusal_audited(journey, actor, "publish"):
        return _publish_draft(journey, actor)


@transaction.atomic
def _publish_draft(journey: Journey, actor) -> JourneyVersion:
    _lock(journey)
    snapshot = _valid_draft(journey)
    live = journey.live_version
    if live is not None and live.snapshot() == snapshot:
        raise ValidationError(f"Nothing to publish: the steps and settings are those of version {live.number}.")
    if journey.status in (JourneyStatus.ACTIVE, JourneyStatus.PAUSED):
        # What real contacts will run: the same approval as activating it.
        _refuse_unapproved(journey, snapshot)
    return _publish(journey, snapshot, actor)


def activate_journey(journey: Journey, actor=None) -> Journey:
    """Start running a journey on its draft, published as a new version when it changed.
    Refuses a journey that cannot run, with the reasons: its problems, a missing owner,
    objective, lifecycle stage or goal, a missing approval. A refusal is audited."""
    with _refusal_audited(journey, actor, "activate"):
        return _set_running(journey, "journey.activated", actor, publish_changes=True)


def ownership_problems(journey: Journey) -> list[str]:
    """What a journey must say about itself before it is activated, each one missing named."""
    missing = [(journey.owner_id is None, "an owner (who answers for it)"),
               (not journey.objective.strip(), "an objective (what it is for)"),
               (journey.lifecycle_stage_id is None, "a lifecycle stage (whom it is for)"),
               (not journey.goal_event.strip(), "a goal event (its success metric)")]
    return [f"The journey needs {what} before it is activated." for absent, what in missing if absent]


def marketing_send_keys(snapshot: dict) -> list[str]:
    """The send steps of a snapshot whose purpose, or else their template's, is marketing. At most
    two queries (the purposes of the template versions the steps leave it to, and of templates not
    yet published), none when every send step names its purpose."""
    sends = [step for step in snapshot["steps"] if step["kind"] == StepKind.SEND]
    versions = {step["template_version"] for step in sends if not step["purpose"] and step["template_version"]}
    unpublished = {step["template"] for step in sends if not step["purpose"] and step["template"]
                   and not step["template_version"]}
    purposes = {}
    if versions:
        purposes = {("version", pk): purpose for pk, purpose in
                    TemplateVersion.objects.filter(pk__in=versions).values_list("pk", "purpose")}
    if unpublished:
        purposes.update({("template", pk): purpose for pk, purpose in
                         Template.objects.filter(pk__in=unpublished).values_list("pk", "purpose")})

    def purpose_of(step):
        return step["purpose"] or purposes.get(("version", step["template_version"])) or purposes.get(
            ("template", step["template"]))

    return [step["key"] for step in sends if purpose_of(step) == Purpose.MARKETING]


def journey_needs_approval(snapshot: dict) -> bool:
    """Whether running this snapshot needs a marketing approver's yes: with the setting on, when it
    sends marketing."""
    return settings.OMNI_JOURNEY_APPROVAL_REQUIRED and bool(marketing_send_keys(snapshot))


def journey_digest(snapshot: dict) -> str:
    """What an approval of a journey is an approval of: its draft as it would run."""
    return approval.digest_of(snapshot)


def _refuse_unapproved(journey: Journey, snapshot: dict) -> None:
    if not journey_needs_approval(snapshot):
        return
    refused = approval.refusal(journey, digest=journey_digest(snapshot))
    if refused is not None:
        raise refused


@contextmanager
def _refusal_audited(journey: Journey, actor, step: str):
    """Audit a refused activation or publishing once its transaction has rolled back, so the
    entry stays: an approval refusal as journey.approval_refused, any other as
    journey.activation_refused (or publish_refused) with the reasons."""
    try:
        yield
    except approval.ApprovalRefused as refused:
        approval.audit_refusal(journey, refused, actor=actor, step=step)
        raise
    except ValidationError as refused:
        action = "journey.activation_refused" if step == "activate" else "journey.publish_refused"
        audit.record(action, obj=journey, actor=actor, data={"problems": refused.messages})
        raise


def start_testing_journey(journey: Journey, *, actor=None) -> Journey:
    """Test a journey not yet active: publish its draft as activation does (refusing an invalid
    one, with the reasons; no approval needed, since only test contacts enter) and set it testing,
    in which its version enrolls only test contacts, by every trigger. Run again while testing,
    it publishes the draft's changes. Activating it later is the normal activation."""
    return _set_running(journey, "journey.testing_started", actor, publish_changes=True,
                        status=JourneyStatus.TESTING)


def resume_journey(journey: Journey, actor=None) -> Journey:
    """Run a paused journey again; enrollments carry on from where they stopped, on their versions.
    Draft changes stay unpublished until someone publishes them."""
    return _set_running(journey, "journey.resumed", actor, publish_changes=False)


@transaction.atomic
def pause_journey(journey: Journey, actor=None, *, reason: str = "", action: str = "journey.paused",
                  data: dict | None = None) -> Journey:
    """Stop running steps; enrollments stay where they are until resumed, and its deferred messages
    and fallback timers wait (campaigns/message_timers.py). A journey in testing goes back to
    draft instead: it has never been active, so resuming may not make it live; testing it again
    carries its test contacts on. `reason` is kept in paused_reason (auto-pause
    gives it, with action journey.auto_paused); resuming clears it."""
    if journey.status == JourneyStatus.TESTING:
        journey.status = JourneyStatus.DRAFT
        journey.save(update_fields=["status", "updated_at"])
        audit.record("journey.testing_stopped", obj=journey, actor=actor)
        return journey
    journey.status = JourneyStatus.PAUSED
    journey.paused_reason = reason[:500]
    journey.save(update_fields=["status", "paused_reason", "updated_at"])
    audit.record(action, obj=journey, actor=actor, data=data)
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


class EnrollmentRefused(ValidationError):
    """enroll_contact() refused the contact; `reason` says why: journey_not_active, not_a_test_contact
    (a journey in testing), or a re-entry
    rule's (already_enrolled, reentry_never, reentry_too_soon)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message, code=reason)
        self.reason = reason


class IdempotencyKeyReused(Exception):
    """The idempotency key already enrolled a contact by a different request; `enrollment` is that one."""

    def __init__(self, enrollment: Enrollment):
        super().__init__(f"This idempotency key already enrolled a contact by a different request "
                         f"(enrollment {enrollment.pk}).")
        self.enrollment = enrollment


JOURNEY_NOT_ACTIVE = "journey_not_active"
NOT_A_TEST_CONTACT = "not_a_test_contact"
# The statuses a journey may be put into testing from: never active (or testing already).
TESTABLE_STATUSES = (JourneyStatus.DRAFT, JourneyStatus.TESTING)
MANUAL_TRIGGER = "manual"


def enroll_contact(journey: Journey, contact, *, actor=None, actor_label="", trigger: dict | None = None,
                   trigger_key: str = "", now=None) -> Enrollment:
    """Put one contact into a journey now (API or admin), on its live version, by its re-entry rules.

    `trigger` is kept as the enrollment's context["trigger"] (by default a manual one without
    properties); `trigger_key`, unique in the journey, makes a second enrollment with it fail.
    Refuses with EnrollmentRefused (its reason audited as journey.enrollment_refused) a journey
    that is not active and a contact the re-entry rules keep out.
    """
    now = now or timezone.now()
    trigger = trigger if trigger is not None else {"type": MANUAL_TRIGGER, "properties": {}}
    version = journey.live_version
    if journey.status not in RUNNING_JOURNEY_STATUSES or version is None:
        _refuse(journey, contact, JOURNEY_NOT_ACTIVE, f"Journey {journey.name!r} is not active (it is "
                f"{journey.get_status_display().lower()}): activate it before enrolling contacts.", actor, actor_label)
    if journey.status == JourneyStatus.TESTING and not contact.is_test:
        _refuse(journey, contact, NOT_A_TEST_CONTACT, f"Journey {journey.name!r} is being tested: it enrolls only "
                f"test contacts, and {contact.external_id or contact} is not one.", actor, actor_label)
    past = list(Enrollment.objects.filter(journey=journey, contact=contact).values_list("state", "entered_at"))
    reason = reentry_refusal(version, past, now)
    if reason:
        _refuse(journey, contact, reason, _reentry_message(reason, journey, contact, version), actor, actor_label)
    try:
        with transaction.atomic():
            enrollment = Enrollment.objects.create(
                journey=journey, journey_version=version, contact=contact, current_step_key=version.first_step_key,
                state=EnrollmentState.ACTIVE, next_run_at=now, entered_at=now, trigger_key=trigger_key,
                context={TRIGGER_CONTEXT: trigger})
            audit.record("journey.enrolled", contact=contact, obj=enrollment, actor=actor, actor_label=actor_label,
                         reason=trigger.get("type") or MANUAL_TRIGGER,
                         data={"journey": journey.pk, "version": version.number})
    except IntegrityError:
        # Another request enrolled them in the meantime: by the same key, or into a live enrollment.
        if trigger_key and Enrollment.objects.filter(journey=journey, trigger_key=trigger_key).exists():
            raise
        _refuse(journey, contact, ALREADY_ENROLLED,
                _reentry_message(ALREADY_ENROLLED, journey, contact, version), actor, actor_label)
    return enrollment


def same_json(a, b) -> bool:
    """Whether two JSON values are the same: Python's == but true is not 1 nor false 0 (a retry
    of {"vip": true} is not one of {"vip": 1}); 3 and 3.0 are one number, as in JSON."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return a == b


def enroll_contact_once(journey: Journey, contact, *, idempotency_key: str, properties: dict, actor=None,
                        actor_label="") -> tuple[Enrollment, bool]:
    """enroll_contact() for an API request carrying an idempotency key: (enrollment, created).

    A retry (the same key, contact and properties) gets the enrollment the first request made,
    whatever happened since; the same key with another contact or other properties raises
    IdempotencyKeyReused. Keys are per journey.
    """
    trigger_key = f"api:{idempotency_key}"
    trigger = {"type": TriggerType.API.value, "properties": properties}
    with transaction.atomic():
        # Copies of one request arriving at once run one after the other: the later ones find the
        # enrollment the first made (rather than being refused as already enrolled).
        lock_until_commit(f"journey:{journey.pk}:{trigger_key}")
        existing = Enrollment.objects.filter(journey=journey, trigger_key=trigger_key).select_related("journey_version").first()
        if existing is not None:
            same = (existing.contact_id == contact.pk
                    and same_json((existing.context or {}).get(TRIGGER_CONTEXT, {}).get("properties"), properties))
            if not same:
                raise IdempotencyKeyReused(existing)
            return existing, False
        try:
            return enroll_contact(journey, contact, actor=actor, actor_label=actor_label, trigger=trigger,
                                  trigger_key=trigger_key), True
        except EnrollmentRefused as refused:
            refusal = refused  # raised once the block commits: the refusal's audit entry stays
    raise refusal


def _refuse(journey, contact, reason: str, message: str, actor, actor_label) -> None:
    audit.record("journey.enrollment_refused", contact=contact, obj=journey, actor=actor, actor_label=actor_label,
                 reason=reason, data={"journey": journey.pk})
    raise EnrollmentRefused(reason, message)


def _reentry_message(reason: str, journey, contact, version) -> str:
    # The caller knows the contact by its external id (the API's); a contact without one by its profile.
    contact = contact.external_id or contact
    if reason == ALREADY_ENROLLED:
        return f"{contact} is already in {journey.name!r}."
    if reason == REENTRY_NEVER:
        return f"{contact} was in {journey.name!r} before, and the journey lets nobody enter twice."
    return (f"{contact} entered {journey.name!r} less than {version.reentry_after_seconds} seconds ago; the "
            f"journey lets them in again after that.")


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


def _valid_draft(journey: Journey, also=()) -> dict:
    snapshot = draft_snapshot(journey)
    problems = [*also, *snapshot_problems(snapshot)]
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
def _set_running(journey: Journey, action: str, actor, *, publish_changes: bool,
                 status: str = JourneyStatus.ACTIVE) -> Journey:
    _lock(journey)
    if status == JourneyStatus.TESTING and journey.status not in TESTABLE_STATUSES:
        raise ValidationError(
            f"{journey.name!r} is {journey.get_status_display().lower()}: only a journey not yet active can be "
            f"tested. Clone it to try its draft with test contacts.", code="not_testable")
    live = journey.live_version
    if publish_changes or live is None:
        # Only going live asks for an owner and an approval: a test reaches test contacts only.
        going_live = publish_changes and status == JourneyStatus.ACTIVE
        snapshot = _valid_draft(journey, also=ownership_problems(journey) if going_live else ())
        if going_live:
            _refuse_unapproved(journey, snapshot)
        if live is None or live.snapshot() != snapshot:
            live = _publish(journey, snapshot, actor)
    now = timezone.now()
    data = {"version": live.number}
    if journey.status != status:
        # A date trigger fires for the moments that come from now on: none that passed while the
        # journey was not running (or ran for test contacts only).
        journey.date_trigger_checked_until = now
    if journey.status == JourneyStatus.PAUSED:
        # Auto-pause judges only the sends made from now on: the ones it paused for were looked into.
        journey.watched_since = now
        data["watched_since"] = now.isoformat()
    journey.status = status
    journey.paused_reason = ""
    journey.save(update_fields=["status", "date_trigger_checked_until", "paused_reason", "watched_since",
                                "updated_at"])
    audit.record(action, obj=journey, actor=actor, data=data)
    return journey


def journey_steps_setting_stage(key: str, **kwargs) -> str | None:
    """How many journeys have an update step setting the lifecycle stage `key` (contacts asks
    before deleting it)."""
    count = (JourneyStep.objects.filter(kind=StepKind.UPDATE, config__lifecycle_stage=key)
             .values("journey_id").distinct().count())
    if count:
        return f"{count} journe{'ys' if count != 1 else 'y'}"
    return None


def journeys_for_stage(key: str, **kwargs) -> str | None:
    """How many journeys are for the lifecycle stage `key` (their lifecycle_stage, PROTECTed):
    contacts asks before deleting it, so the refusal says so in words."""
    count = Journey.objects.filter(lifecycle_stage__key=key).count()
    if count:
        return f"{count} journe{'ys' if count != 1 else 'y'} for that stage"
    return None
