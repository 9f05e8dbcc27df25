"""The kinds of journey step and what each takes in its config.

Until "Journeys II" brings a form per kind, a step's settings are JSON in the step inline, so
each is checked here where it is written (the step form and publishing both ask
step_setting_problems) and every message names the setting at fault: `config.<name>`.

    send        template, purpose, urgency, channel_plan, intent_key (no config)
    wait        {"seconds": 3600}
    wait_until  {"time": "09:00", "days": ["mon", "tue"]}: the next 09:00 on the contact's clock
                (days optional)
    wait_date   {"attribute": "appointment_at", "offset_seconds": -86400} or {"property": ...} of
                the trigger event (or of the API request that enrolled the contact): until that
                date plus the offset; at once if it has passed;
                the else step when the contact has no such date
    wait_event  {"event": "purchased", "timeout_seconds": 86400} or {"engagement": "opened",
                "step": "<send step>", "timeout_seconds": 86400}: next when it happens, else
                (the timeout branch; next without one) when the timeout ends first
    condition   {"check": ..., ...}: next when true, else when false (CONDITION_CHECKS); attribute
                and webhook branches compare with contacts.conditions' typed operators
    split       {"paths": [{"name": "A", "weight": 50, "step": "<key>"}, ...]}
    update      {"attribute": "plan", "value": "pro"} or {"lifecycle_stage": "customer"}
    webhook     {"endpoint": "<omni.WebhookEndpoint name>", "timeout_seconds": 600, "data": {...}}: calls
                the endpoint from a worker (campaigns.tasks.call_webhook_task) and waits for the
                answer, kept in Enrollment.context["webhooks"][<step key>] for branches; next once
                answered (2xx), else (next without one) on a failed call or the timeout
    exit        no config
"""
import re

from django.db import models

from channels.plans import channel_plan_problems, whole_seconds
from contacts.conditions import OPERATORS as TYPED_OPERATORS
from contacts.conditions import condition_problems
from contacts.models import DataType


class StepKind(models.TextChoices):
    SEND = "send", "Send a message"
    WAIT = "wait", "Wait"
    WAIT_UNTIL = "wait_until", "Wait until a time of day"
    WAIT_DATE = "wait_date", "Wait relative to a date"
    WAIT_EVENT = "wait_event", "Wait for an event or engagement"
    CONDITION = "condition", "Branch on a condition"
    SPLIT = "split", "Random split"
    UPDATE = "update", "Update the contact"
    WEBHOOK = "webhook", "Call a webhook"
    EXIT = "exit", "Exit"


# What each kind of step takes in its config.
STEP_CONFIG_SETTINGS = {
    StepKind.SEND: (),
    StepKind.WAIT: ("seconds",),
    StepKind.WAIT_UNTIL: ("time", "days"),
    StepKind.WAIT_DATE: ("attribute", "property", "offset_seconds"),
    StepKind.WAIT_EVENT: ("event", "engagement", "step", "timeout_seconds"),
    StepKind.CONDITION: ("check", "step", "name", "equals", "operator", "value", "value_to", "type", "within_days"),
    StepKind.SPLIT: ("paths",),
    StepKind.UPDATE: ("attribute", "value", "lifecycle_stage"),
    StepKind.WEBHOOK: ("endpoint", "timeout_seconds", "data"),
    StepKind.EXIT: (),
}
# Engagement with a message an earlier send step made, as channels reports it (contact events
# named message.<kind>); "engaged" is any of opened, clicked, read or replied.
ENGAGEMENT_KINDS = ("delivered", "opened", "clicked", "replied", "engaged")
# Condition checks: "engaged" and "delivered" read the deliveries' statuses (as they always
# have); opened, clicked and replied read the engagement events; "attribute" a contact
# attribute; "event" whether the contact did an event; "webhook" a webhook step's answer.
CONDITION_CHECKS = ("engaged", "delivered", "opened", "clicked", "replied", "attribute", "event", "webhook")
STEP_CHECKS = ("engaged", "delivered", "opened", "clicked", "replied")
# A branch on an attribute or a webhook's answer compares with contacts.conditions' typed
# operators: {"operator": "at_least", "value": 10}, typed by the attribute's declaration
# (checked at publishing) or the answer's config.type (text when not given). config.equals
# (exact equality of any JSON value) is the older shorthand, kept for journeys that use it.
ALL_OPERATORS = tuple(dict.fromkeys(o.name for ops in TYPED_OPERATORS.values() for o in ops))
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TIME_OF_DAY = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
# Ten years: longer than any journey waits, and far below what a datetime can add.
MAX_WAIT_SECONDS = 10 * 366 * 24 * 3600
MAX_SPLIT_PATHS = 10
NAME_LIMIT = 100


def step_setting_problems(kind: str, config, channel_plan, *, has_template: bool) -> dict[str, list[str]]:
    """What is wrong with one step's own settings, by the field at fault ("config", "channel_plan",
    "template"), each message naming the setting. The step form and publishing both ask this;
    what depends on other steps (targets, loops) or on declared types is checked at publishing
    (campaigns.actions)."""
    problems: dict[str, list[str]] = {}

    def refuse(field: str, message: str) -> None:
        problems.setdefault(field, []).append(message)

    if kind == StepKind.SEND:
        if not has_template:
            refuse("template", "A send step needs a template.")
        # Blank: the default plan for the step's purpose and urgency, pinned when the journey is published.
        for problem in channel_plan_problems(channel_plan) if channel_plan not in (None, [], "") else ():
            refuse("channel_plan", problem)
    if not isinstance(config, dict):
        refuse("config", 'config must be a JSON object, e.g. {"seconds": 3600}.')
        return problems
    allowed = STEP_CONFIG_SETTINGS.get(kind, ())
    for name in config:
        if name not in allowed:
            takes = f"takes {', '.join(allowed)}" if allowed else "takes no settings"
            refuse("config", f"config.{name} is not a setting; a {kind} step {takes}.")
    check = KIND_CHECKS.get(kind)
    if check is not None:
        for message in check(config):
            refuse("config", message)
    return problems


def _wait(config) -> list[str]:
    if not whole_seconds(config.get("seconds"), MAX_WAIT_SECONDS):
        return [f'config.seconds must be a whole number of seconds from 1 to {MAX_WAIT_SECONDS}, '
                f'not {config.get("seconds")!r}: a wait step needs {{"seconds": N}}.']
    return []


def _wait_until(config) -> list[str]:
    problems = []
    if not (isinstance(config.get("time"), str) and TIME_OF_DAY.match(config["time"])):
        problems.append(f'config.time must be a time of day as "HH:MM" (24 h), not {config.get("time")!r}: '
                        f'a wait_until step needs {{"time": "09:00"}}.')
    if "days" in config:
        days = config["days"]
        if not (isinstance(days, list) and days and all(day in WEEKDAYS for day in days)):
            problems.append(f"config.days must be a list of days among {', '.join(WEEKDAYS)}, not {days!r}.")
    return problems


def _wait_date(config) -> list[str]:
    problems = []
    given = [name for name in ("attribute", "property") if name in config]
    if len(given) != 1:
        problems.append('config.attribute or config.property (one of them) must name the date: '
                        '{"attribute": "appointment_at", "offset_seconds": -86400}.')
    else:
        problems.extend(_name_problem(config, given[0], "the date"))
    offset = config.get("offset_seconds", 0)
    if not (isinstance(offset, int) and not isinstance(offset, bool) and abs(offset) <= MAX_WAIT_SECONDS):
        problems.append(f"config.offset_seconds must be a whole number of seconds (negative: before the date), "
                        f"at most {MAX_WAIT_SECONDS} either way, not {offset!r}.")
    return problems


def _wait_event(config) -> list[str]:
    problems = []
    given = [name for name in ("event", "engagement") if name in config]
    if len(given) != 1:
        problems.append('config.event or config.engagement (one of them) must say what to wait for: '
                        '{"event": "purchased", "timeout_seconds": 86400} or {"engagement": "opened", '
                        '"step": "<send step key>", "timeout_seconds": 86400}.')
    elif given == ["event"]:
        problems.extend(_name_problem(config, "event", "the event"))
        if "step" in config:
            problems.append("config.step is for an engagement wait; an event wait names only config.event.")
    else:
        if config["engagement"] not in ENGAGEMENT_KINDS:
            problems.append(f"config.engagement must be one of {', '.join(ENGAGEMENT_KINDS)}, "
                            f"not {config['engagement']!r}.")
        problems.extend(_name_problem(config, "step", "the send step whose message it waits on"))
    if not whole_seconds(config.get("timeout_seconds"), MAX_WAIT_SECONDS):
        problems.append(f"config.timeout_seconds must be a whole number of seconds from 1 to {MAX_WAIT_SECONDS}, "
                        f"not {config.get('timeout_seconds')!r}: how long to wait before the timeout branch.")
    return problems


def _condition(config) -> list[str]:
    check = config.get("check", "engaged")
    if check not in CONDITION_CHECKS:
        return [f"config.check must be one of {', '.join(CONDITION_CHECKS)}, not {check!r}."]
    if check in STEP_CHECKS:
        if not (isinstance(config.get("step"), str) and config["step"]):
            return [f'config.step must name the send step to check: {{"check": "{check}", '
                    f'"step": "<send step key>"}}.']
        return []
    if check == "event":
        problems = _name_problem(config, "name", "the event")
        if "within_days" in config and not whole_seconds(config["within_days"], 3660):
            problems.append(f"config.within_days must be a whole number of days from 1 to 3660, "
                            f"not {config['within_days']!r}; without it, since the contact entered the journey.")
        return problems
    if check == "attribute" and not (isinstance(config.get("name"), str) and config["name"]):
        return ['config.name must name the attribute to check: {"check": "attribute", "name": "plan", '
                '"operator": "equals", "value": "pro"}.']
    problems = []
    if check == "attribute" and "type" in config:
        problems.append("config.type is for a webhook's answer; an attribute has the type it is declared with.")
    if check == "webhook":
        problems.extend(_name_problem(config, "step", "the webhook step whose answer it reads"))
        problems.extend(_name_problem(config, "name", 'the key of the answer, e.g. "decision" or "order.status"'))
        if config.get("type", DataType.TEXT) not in DataType.values:
            problems.append(f"config.type must be one of {', '.join(DataType.values)}, not {config['type']!r}.")
            return problems
    return problems + _comparison_problems(config, check)


def _comparison_problems(config, check: str) -> list[str]:
    if "equals" in config:
        if any(name in config for name in ("operator", "value", "value_to")):
            return ["config.equals is the older shorthand for exact equality: give config.equals, or "
                    "config.operator and config.value."]
        return []
    if config.get("operator") not in ALL_OPERATORS:
        return [f"config.operator must be one of {', '.join(ALL_OPERATORS)}, not {config.get('operator')!r} "
                f"(or give config.equals)."]
    if check == "webhook":
        return [f"{problem}." for problem in condition_problems(comparison(config), config.get("type"), "config")]
    return []  # against the attribute's declared type at publishing (campaigns.actions)


def comparison(config: dict) -> dict:
    """The contacts.conditions condition a branch's config holds."""
    return {name: config[name] for name in ("operator", "value", "value_to") if name in config}


def _split(config) -> list[str]:
    paths = config.get("paths")
    example = '{"paths": [{"name": "A", "weight": 50, "step": "<key>"}, {"name": "B", "weight": 50}]}'
    if not (isinstance(paths, list) and 2 <= len(paths) <= MAX_SPLIT_PATHS):
        return [f"config.paths must be a list of 2 to {MAX_SPLIT_PATHS} paths, e.g. {example}."]
    problems, names = [], set()
    for index, path in enumerate(paths):
        where = f"config.paths[{index}]"
        if not isinstance(path, dict):
            problems.append(f'{where} must be an object such as {{"name": "A", "weight": 50, "step": "<key>"}}.')
            continue
        for name in path:
            if name not in ("name", "weight", "step"):
                problems.append(f"{where}.{name} is not a setting; a path takes name, weight, step.")
        name = path.get("name")
        if not (isinstance(name, str) and 1 <= len(name) <= 20):
            problems.append(f"{where}.name must be a name of 1 to 20 characters, not {name!r}.")
        elif name in names:
            problems.append(f"{where}.name {name!r} names two paths.")
        names.add(name)
        if not whole_seconds(path.get("weight"), 1_000_000):
            problems.append(f"{where}.weight must be a whole number from 1 to 1000000, not {path.get('weight')!r}.")
        if path.get("step") is not None and not (isinstance(path["step"], str) and path["step"]):
            problems.append(f"{where}.step must be a step key, or left out for the next step.")
    return problems


def _update(config) -> list[str]:
    if ("attribute" in config) == ("lifecycle_stage" in config):
        return ['config.attribute (with config.value) or config.lifecycle_stage (one of them) must say what to '
                'set: {"attribute": "plan", "value": "pro"} or {"lifecycle_stage": "customer"}.']
    if "lifecycle_stage" in config:
        stage = config["lifecycle_stage"]
        problems = [] if isinstance(stage, str) and stage else [
            f"config.lifecycle_stage must be a stage's key, not {stage!r}."]
        return problems + (["config.value is for an attribute; a stage is named by config.lifecycle_stage."]
                           if "value" in config else [])
    problems = _name_problem(config, "attribute", "the attribute")
    if "value" not in config:
        problems.append('config.value must give the value to set (null removes nothing: it sets null).')
    return problems


def _webhook(config) -> list[str]:
    problems = _name_problem(config, "endpoint", "the webhook endpoint to call (its name)")
    if not whole_seconds(config.get("timeout_seconds"), MAX_WAIT_SECONDS):
        problems.append(f"config.timeout_seconds must be a whole number of seconds from 1 to {MAX_WAIT_SECONDS}, "
                        f"not {config.get('timeout_seconds')!r}: how long to wait for the answer.")
    if "data" in config and not isinstance(config["data"], dict):
        problems.append("config.data must be a JSON object, sent as the call's data.")
    return problems


def _name_problem(config, name: str, what: str) -> list[str]:
    value = config.get(name)
    if not (isinstance(value, str) and value.strip() and len(value) <= NAME_LIMIT):
        return [f"config.{name} must name {what} (1 to {NAME_LIMIT} characters), not {value!r}."]
    return []


KIND_CHECKS = {
    StepKind.WAIT: _wait,
    StepKind.WAIT_UNTIL: _wait_until,
    StepKind.WAIT_DATE: _wait_date,
    StepKind.WAIT_EVENT: _wait_event,
    StepKind.CONDITION: _condition,
    StepKind.SPLIT: _split,
    StepKind.UPDATE: _update,
    StepKind.WEBHOOK: _webhook,
}


def split_targets(config: dict) -> list[str | None]:
    """The step keys a split's paths lead to (None: the next step)."""
    return [path.get("step") for path in config.get("paths") or [] if isinstance(path, dict)]
