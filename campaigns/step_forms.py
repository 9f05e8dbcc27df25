"""One form per kind of journey step, with only that kind's fields, for marketers: durations as a
number and a unit, pickers for times, choices from the typed definitions, a channel plan as
rows. Each form turns its fields into the step's values (config, template, channel_plan...)
and back. step_setting_problems stays the one rule for a step's settings: its messages come
back as errors on the fields they name.
"""
import json
import re

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join

from contacts import conditions
from contacts.data_types import definitions
from contacts.models import DataType, LifecycleStage
from omni.choices import Channel, Purpose, Urgency
from omni.models import WebhookEndpoint
from templates.actions import latest_versions
from templates.models import Template

from .drafts import END
from .models import JourneyStep, StepKind, step_setting_problems
from .step_settings import CONDITION_CHECKS, ENGAGEMENT_KINDS, MAX_SPLIT_PATHS, MAX_WAIT_SECONDS, WEEKDAYS

UNITS = (("minutes", "minutes"), ("hours", "hours"), ("days", "days"))
UNIT_SECONDS = {"minutes": 60, "hours": 3600, "days": 86400}
DEFAULT_PLAN = "default"
# How a channel of a plan gives way to the next.
FAILED, NOT_DELIVERED, NOT_OPENED = "failed", "not_delivered", "not_opened"
FALLBACKS = ((FAILED, "if it fails"), (NOT_DELIVERED, "if not delivered within"),
             (NOT_OPENED, "if not opened within"))
PLAN_ROWS = len(Channel.values)
CHECK_LABELS = {"engaged": "engaged with a message", "delivered": "a message was delivered",
                "opened": "opened a message", "clicked": "clicked a message", "replied": "replied to a message",
                "attribute": "a contact attribute", "event": "the contact did an event",
                "webhook": "a webhook's answer"}
TIME_INPUT = forms.TimeInput(attrs={"type": "time"}, format="%H:%M")


class DurationWidget(forms.MultiWidget):
    template_name = "campaigns/widgets/duration.html"
    def __init__(self, attrs=None):
        super().__init__([forms.NumberInput(attrs={"min": 1, "class": "w-24", "aria-label": "how many"}),
                          forms.Select(choices=UNITS, attrs={"aria-label": "unit"})], attrs)

    def decompress(self, value):
        if not value:
            return [None, "days"]
        for unit in ("days", "hours", "minutes"):
            if value % UNIT_SECONDS[unit] == 0:
                return [value // UNIT_SECONDS[unit], unit]
        return [round(value / 60), "minutes"]


class DurationField(forms.MultiValueField):
    """A duration typed as a number and a unit, kept as seconds, at most `max_seconds` (by
    default the longest wait, ten years: a longer one is a typing slip, and one far longer
    overflows a timedelta or the database's column)."""

    widget = DurationWidget

    def __init__(self, *, max_seconds: int = MAX_WAIT_SECONDS, **kwargs):
        self.max_seconds = max_seconds
        super().__init__([forms.IntegerField(min_value=1, required=False),
                          forms.ChoiceField(choices=UNITS, required=False)], require_all_fields=False, **kwargs)

    def clean(self, value):
        seconds = super().clean(value)
        if seconds is None and self.required:
            raise ValidationError(self.error_messages["required"], code="required")
        if seconds is not None and seconds > self.max_seconds:
            raise ValidationError(f"At most {self.max_seconds // 86400} days.", code="max_value")
        return seconds

    def has_changed(self, initial, data):
        try:
            return self.clean(data) != (initial or None)
        except ValidationError:
            return True

    def compress(self, values):
        if not values or values[0] in (None, ""):
            return None
        return values[0] * UNIT_SECONDS[values[1] or "days"]


def style(form: forms.Form) -> None:
    """The admin theme's (Unfold's) look on the form's inputs."""
    from unfold.widgets import INPUT_CLASSES, SELECT_CLASSES

    for field in form.fields.values():
        widgets = getattr(field.widget, "widgets", [field.widget])
        for widget in widgets:
            if isinstance(widget, (forms.CheckboxSelectMultiple, forms.RadioSelect, forms.HiddenInput)):
                continue
            classes = SELECT_CLASSES if isinstance(widget, forms.Select) else INPUT_CLASSES
            widget.attrs["class"] = " ".join([*classes, widget.attrs.get("class", "")]).strip()


def step_choices(steps, *, end_label: str | None = "the end (the journey ends)") -> list[tuple[str, str]]:
    choices = [(END, end_label)] if end_label else []
    return choices + [(step.key, f"{step.key} ({step.get_kind_display().lower()})") for step in steps]


class DatalistInput(forms.TextInput):
    """A text box suggesting the declared names, while a name not declared yet may still be typed."""

    def __init__(self, name: str, options):
        super().__init__(attrs={"list": f"{name}-options", "autocomplete": "off"})
        self.options, self.list_id = sorted(options), f"{name}-options"

    def render(self, name, value, attrs=None, renderer=None):
        return super().render(name, value, attrs, renderer) + format_html(
            '<datalist id="{}">{}</datalist>', self.list_id,
            format_html_join("", '<option value="{}"></option>', ((option,) for option in self.options)))


def _datalist_input(name: str, options) -> DatalistInput:
    return DatalistInput(name, options)


class StepForm(forms.Form):
    """What every kind's form shares: where the step leads, for a step already in the flow.
    Subclasses say which config setting lands on which field (`config_fields`)."""

    kind: str = ""
    # config setting (as step_setting_problems names it) -> form field
    config_fields: dict[str, str] = {}
    has_else = False
    else_label = "otherwise, go to"

    def __init__(self, *args, journey, step: JourneyStep | None = None, **kwargs):
        self.journey, self.step = journey, step
        self.others = [s for s in journey.steps.order_by("position", "pk") if step is None or s.pk != step.pk]
        if step is not None and "initial" not in kwargs:
            kwargs["initial"] = self.initial_from(step)
        super().__init__(*args, **kwargs)
        if step is not None:
            self.fields["next"] = forms.ChoiceField(label="then go to", choices=step_choices(self.others))
            if self.has_else:
                self.fields["else_to"] = forms.ChoiceField(
                    label=self.else_label, required=False,
                    choices=[("", self.else_default)] + step_choices(self.others, end_label=None))

    def __iter__(self):
        style(self)  # every field is there by now, those a kind's __init__ adds too
        return super().__iter__()

    # Fields shown side by side on one line (a channel with its fallback, a split's path).
    line_prefixes: tuple[str, ...] = ()

    def lines(self) -> list[list]:
        """The fields as lines for the page: most alone, a row's fields together."""
        lines, rows = [], {}
        for field in self:
            match = re.match(r"^(.*?)_?(\d+)$", field.name)
            if match and match.group(1).rstrip("_").split("_")[0] in self.line_prefixes:
                row = rows.get(match.group(2))
                if row is None:
                    row = rows[match.group(2)] = []
                    lines.append(row)
                row.append(field)
            else:
                lines.append([field])
        return lines

    else_default = "the next step"

    def initial_from(self, step: JourneyStep) -> dict:
        initial = {"next": step.next_step.key if step.next_step_id and not step.ends else END,
                   "else_to": step.else_step.key if step.else_step_id else ""}
        return {**initial, **self.initial_config(step.config or {}, step)}

    def initial_config(self, config: dict, step: JourneyStep) -> dict:
        return {}

    def config(self) -> dict:
        return {}

    def step_values(self) -> dict:
        return {}

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        values = self.step_values()
        config = self.config()
        problems = step_setting_problems(self.kind, config, values.get("channel_plan", []),
                                         has_template=bool(values.get("template")))
        for field, messages in problems.items():
            for message in messages:
                self._add_problem(field, message)
        return cleaned

    def _add_problem(self, field: str, message: str) -> None:
        if field == "config":
            match = re.match(r"config\.(\w+)", message)
            target = self.config_fields.get(match.group(1)) if match else None
        else:
            target = {"template": "template", "channel_plan": "channel_1"}.get(field)
        target = target if target in self.fields else None
        self.add_error(target, _plain(message))

    def values(self) -> dict:
        """The step's values, for campaigns.drafts."""
        values = {"config": self.config(), **self.step_values()}
        if "next" in self.cleaned_data:
            target = self.cleaned_data["next"]
            values["next_step"] = None if target == END else self._step(target)
            values["ends"] = target == END
        if "else_to" in self.cleaned_data:
            values["else_step"] = self._step(self.cleaned_data["else_to"]) if self.cleaned_data["else_to"] else None
        return values

    def _step(self, key: str) -> JourneyStep:
        return next(step for step in self.others if step.key == key)


def _plain(message: str) -> str:
    """A settings message without the JSON it shows for those who type it."""
    return re.sub(r":? ?(a \w+ step needs|e\.g\.) \{.*$", ".", message).replace("config.", "").strip()


class _ChannelPlanForm(forms.Form):
    """A channel plan as rows: the default plan, or channels in order, each with the condition
    that moves to the next (if it fails, if not delivered or not opened within a duration).
    A journey's send step and a campaign use it; `channel_plan()` is the plan from the rows."""

    plan = forms.ChoiceField(label="channels", choices=[(DEFAULT_PLAN, "the default plan for its purpose and urgency"),
                                                        ("own", "these channels, in order")],
                             initial="own", widget=forms.RadioSelect,
                             help_text="The default channel plan for the step's purpose and urgency is pinned when "
                                       "the journey is published, kept to the channels the template has.")
    @staticmethod
    def plan_row_names() -> list[tuple[str, ...]]:
        """The rows' field names, a channel with its fallback, for a page that lays them out."""
        return [(f"channel_{row}", f"fallback_{row}", f"within_{row}") if row < PLAN_ROWS else (f"channel_{row}",)
                for row in range(1, PLAN_ROWS + 1)]

    @staticmethod
    def plan_initial(channel_plan) -> dict:
        initial = {"plan": "own" if channel_plan else DEFAULT_PLAN}
        for row, entry in enumerate(channel_plan or [], start=1):
            initial[f"channel_{row}"] = entry.get("channel")
            if "fallback_after_seconds" in entry:
                initial[f"fallback_{row}"] = NOT_OPENED if entry.get("fallback_unless") == "engaged" else NOT_DELIVERED
                initial[f"within_{row}"] = entry["fallback_after_seconds"]
        return initial

    def channel_plan(self) -> list:
        data = self.cleaned_data
        self._plan_rows = []
        if data.get("plan") == DEFAULT_PLAN:
            return []
        plan = []
        for row in range(1, PLAN_ROWS + 1):
            channel = data.get(f"channel_{row}")
            if not channel:
                continue
            entry = {"channel": channel}
            fallback, within = data.get(f"fallback_{row}"), data.get(f"within_{row}")
            if fallback in (NOT_DELIVERED, NOT_OPENED):
                entry["fallback_after_seconds"] = within
                if fallback == NOT_OPENED:
                    entry["fallback_unless"] = "engaged"
            plan.append((row, entry))
        if plan:  # nothing after the last channel to give way to
            plan[-1] = (plan[-1][0], {"channel": plan[-1][1]["channel"]})
        self._plan_rows = [row for row, _ in plan]
        return [entry for _, entry in plan]

    def check_channel_plan(self, template, *others) -> list:
        """The plan from the rows, with an error on each row that is wrong: no channel at all, a
        duration missing, a channel no latest version of `template` and `others` (a campaign's
        variants' templates: each sends on the channels it has) has a variant for."""
        plan = self.channel_plan()
        if self.cleaned_data.get("plan") != DEFAULT_PLAN and not plan:
            self.add_error("channel_1", "Choose at least one channel, or the default plan.")
        for row, entry in zip(self._plan_rows, plan):
            if "fallback_after_seconds" in entry and not entry["fallback_after_seconds"]:
                self.add_error(f"within_{row}", "Say within how long, or choose \"if it fails\".")
        templates = {each.pk: each for each in (template, *others) if each is not None}
        versions = latest_versions(list(templates))
        if not versions:
            return plan
        have = set().union(*(version.channels() for version in versions.values()))
        named = ", ".join(f"{templates[pk].key!r} v{version.number}" for pk, version in versions.items())
        for row, entry in zip(self._plan_rows, plan):
            if entry["channel"] not in have:
                label, channels = Channel(entry["channel"]).label, ", ".join(sorted(have)) or "none"
                self.add_error(f"channel_{row}", f"Template {named} has no {label} variant (it has: {channels})."
                               if len(versions) == 1 else
                               f"None of the templates {named} has a {label} variant (they have: {channels}).")
        return plan


def _plan_row_fields() -> dict:
    """A row per channel: the channel, and (but on the last row) how it gives way to the next."""
    fields = {}
    for row in range(1, PLAN_ROWS + 1):
        fields[f"channel_{row}"] = forms.ChoiceField(label=f"channel {row}", required=False,
                                                     choices=[("", "—")] + Channel.choices)
        if row < PLAN_ROWS:
            fields[f"fallback_{row}"] = forms.ChoiceField(label="then the next one", required=False,
                                                          choices=FALLBACKS, initial=FAILED)
            fields[f"within_{row}"] = DurationField(label="within", required=False)
    return fields


# Declared fields (not added in __init__), so a ModelAdmin's fieldsets may name the rows.
ChannelPlanFields = type("ChannelPlanFields", (_ChannelPlanForm,), {"__module__": __name__, **_plan_row_fields()})


class SendForm(StepForm, ChannelPlanFields):
    kind = StepKind.SEND
    line_prefixes = ("channel", "fallback", "within")
    template = forms.ModelChoiceField(queryset=Template.objects.order_by("key"), required=False,
                                      help_text="Its latest published version is pinned when the journey is.")
    purpose = forms.ChoiceField(choices=[("", "the template's")] + Purpose.choices, required=False)
    urgency = forms.ChoiceField(choices=Urgency.choices, initial=Urgency.NORMAL)
    intent_key = forms.CharField(required=False, max_length=200, help_text="Blank: the journey and the step.")
    field_order = ["template", "purpose", "urgency", "intent_key", "plan"]

    def initial_config(self, config, step):
        return {"template": step.template_id, "purpose": step.purpose, "urgency": step.urgency,
                "intent_key": step.intent_key, **self.plan_initial(step.channel_plan)}

    def step_values(self):
        data = self.cleaned_data
        return {"template": data.get("template"), "purpose": data.get("purpose") or "",
                "urgency": data.get("urgency") or Urgency.NORMAL, "intent_key": data.get("intent_key") or "",
                "channel_plan": self.channel_plan()}

    def clean(self):
        cleaned = super().clean()
        self.check_channel_plan(cleaned.get("template"))
        return cleaned

    def _add_problem(self, field, message):
        if field == "channel_plan":
            match = re.match(r"channel_plan\[(\d+)\]\.(\w+)", message)
            if match and int(match.group(1)) < len(self._plan_rows):
                row = self._plan_rows[int(match.group(1))]
                target = f"within_{row}" if match.group(2) == "fallback_after_seconds" else f"channel_{row}"
                self.add_error(target if target in self.fields else None, message)
                return
        super()._add_problem(field, message)

    def config(self):
        return {}


class WaitForm(StepForm):
    kind = StepKind.WAIT
    config_fields = {"seconds": "duration"}
    duration = DurationField(label="wait for")

    def initial_config(self, config, step):
        return {"duration": config.get("seconds")}

    def config(self):
        return {"seconds": self.cleaned_data.get("duration")}


class WaitUntilForm(StepForm):
    kind = StepKind.WAIT_UNTIL
    config_fields = {"time": "time", "days": "days"}
    time = forms.TimeField(label="until", widget=TIME_INPUT, help_text="On the contact's own clock.")
    days = forms.MultipleChoiceField(label="on", required=False, widget=forms.CheckboxSelectMultiple,
                                     choices=[(day, day.capitalize()) for day in WEEKDAYS],
                                     help_text="None ticked: any day.")

    def initial_config(self, config, step):
        return {"time": config.get("time"), "days": config.get("days") or []}

    def config(self):
        time, days = self.cleaned_data.get("time"), self.cleaned_data.get("days")
        return {"time": time.strftime("%H:%M") if time else None, **({"days": days} if days else {})}


class WaitDateForm(StepForm):
    kind = StepKind.WAIT_DATE
    config_fields = {"attribute": "attribute", "property": "property", "offset_seconds": "offset"}
    has_else = True
    else_label = "without such a date, go to"
    source = forms.ChoiceField(label="the date", choices=[("attribute", "a contact attribute"),
                                                          ("property", "a property of the trigger event")])
    attribute = forms.ChoiceField(required=False)
    property = forms.CharField(required=False, max_length=100)
    offset = DurationField(label="offset", required=False)
    direction = forms.ChoiceField(choices=[("before", "before the date"), ("after", "after the date")],
                                  required=False, initial="before")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        known = definitions()
        self.fields["attribute"].choices = [("", "—")] + [
            (name, name) for name, data_type in sorted(known.attributes.items()) if data_type in (
                DataType.DATE, DataType.DATETIME)]
        self.fields["property"].widget = _datalist_input("property", {
            name for props in known.properties.values() for name, t in props.items()
            if t in (DataType.DATE, DataType.DATETIME)})

    def initial_config(self, config, step):
        offset = config.get("offset_seconds", 0)
        return {"source": "property" if "property" in config else "attribute", "attribute": config.get("attribute"),
                "property": config.get("property"), "offset": abs(offset) or None,
                "direction": "after" if offset > 0 else "before"}

    def config(self):
        data = self.cleaned_data
        source = data.get("source") or "attribute"
        offset = (data.get("offset") or 0) * (1 if data.get("direction") == "after" else -1)
        return {source: data.get(source) or None, **({"offset_seconds": offset} if offset else {})}


class WaitEventForm(StepForm):
    kind = StepKind.WAIT_EVENT
    config_fields = {"event": "event", "engagement": "engagement", "step": "send_step",
                     "timeout_seconds": "timeout"}
    has_else = True
    else_label = "if it does not happen in time, go to"
    waits_for = forms.ChoiceField(label="wait for", choices=[("event", "an event"),
                                                             ("engagement", "engagement with a message")])
    event = forms.CharField(required=False, max_length=100)
    engagement = forms.ChoiceField(required=False, choices=[(kind, kind) for kind in ENGAGEMENT_KINDS])
    send_step = forms.ChoiceField(label="of the message sent by", required=False)
    timeout = DurationField(label="for at most")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["event"].widget = _datalist_input("event", definitions().properties)
        self.fields["send_step"].choices = [("", "—")] + [
            (s.key, s.key) for s in self.others if s.kind == StepKind.SEND]

    def initial_config(self, config, step):
        return {"waits_for": "engagement" if "engagement" in config else "event", "event": config.get("event"),
                "engagement": config.get("engagement"), "send_step": config.get("step"),
                "timeout": config.get("timeout_seconds")}

    def config(self):
        data = self.cleaned_data
        if data.get("waits_for") == "engagement":
            what = {"engagement": data.get("engagement"), "step": data.get("send_step") or None}
        else:
            what = {"event": (data.get("event") or "").strip() or None}
        return {**what, "timeout_seconds": data.get("timeout")}


class ConditionForm(StepForm):
    """A branch: yes goes to the next step, no to the else step. The comparison rows are typed
    like a segment's conditions: the attribute's declared type says which operators apply."""

    kind = StepKind.CONDITION
    config_fields = {"check": "check", "step": "checked_step", "name": "name", "operator": "operator",
                     "value": "value", "value_to": "value_to", "type": "answer_type", "within_days": "within_days",
                     "equals": "value"}
    has_else = True
    else_label = "if not, go to"
    else_default = "the end (the journey ends)"
    check = forms.ChoiceField(label="if", choices=[(check, CHECK_LABELS[check]) for check in CONDITION_CHECKS])
    checked_step = forms.ChoiceField(label="step", required=False,
                                     help_text="The send step (or for an answer, the webhook step) checked.")
    name = forms.CharField(label="attribute, event or answer key", required=False, max_length=100)
    operator = forms.ChoiceField(required=False)
    value = forms.CharField(required=False, max_length=500)
    value_to = forms.CharField(label="and", required=False, max_length=500)
    answer_type = forms.ChoiceField(label="the answer's type", required=False, choices=DataType.choices)
    within_days = forms.IntegerField(label="within the last (days)", required=False, min_value=1)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        known = definitions()
        self.fields["checked_step"].choices = [("", "—")] + [
            (s.key, s.key) for s in self.others if s.kind in (StepKind.SEND, StepKind.WEBHOOK)]
        self.fields["name"].widget = _datalist_input("name", set(known.attributes) | set(known.properties))
        labels = {}
        for ops in conditions.OPERATORS.values():
            for op in ops:
                labels.setdefault(op.name, op.label)
        self.fields["operator"].choices = [("", "—")] + list(labels.items())
        self.attribute_types = known.attributes
        self.operators_by_type = conditions.operators_by_type()
        # For the page's script: only the operators of the chosen attribute's declared type.
        self.fields["operator"].widget.attrs.update({
            "data-attribute-types": json.dumps(known.attributes),
            "data-operators-by-type": json.dumps({t: [op["name"] for op in ops]
                                                  for t, ops in self.operators_by_type.items()})})

    def initial_config(self, config, step):
        initial = {"check": config.get("check", "engaged"), "checked_step": config.get("step"),
                   "name": config.get("name"), "operator": config.get("operator"),
                   "value": _shown(config.get("value")), "value_to": _shown(config.get("value_to")),
                   "answer_type": config.get("type", DataType.TEXT), "within_days": config.get("within_days")}
        if "equals" in config:
            initial.update(operator="equals", value=_shown(config["equals"]))
        return initial

    def config(self):
        data = self.cleaned_data
        check = data.get("check")
        if check in ("engaged", "delivered", "opened", "clicked", "replied"):
            return {"check": check, "step": data.get("checked_step") or None}
        if check == "event":
            days = data.get("within_days")
            return {"check": check, "name": data.get("name") or None, **({"within_days": days} if days else {})}
        config = {"check": check, "name": data.get("name") or None}
        data_type = self.attribute_types.get(data.get("name")) if check == "attribute" else data.get("answer_type")
        if check == "webhook":
            config.update(step=data.get("checked_step") or None, type=data.get("answer_type") or DataType.TEXT)
        operator = data.get("operator") or None
        config["operator"] = operator
        takes = next((op.takes for op in conditions.operators_for(data_type or DataType.TEXT) if op.name == operator),
                     conditions.ONE_VALUE)
        if takes != conditions.NO_VALUE:
            config["value"] = _typed(data.get("value"), data_type, takes)
        if takes == conditions.TWO_VALUES:
            config["value_to"] = _typed(data.get("value_to"), data_type, takes)
        return config

    def clean(self):
        cleaned = super().clean()
        if self.errors or cleaned.get("check") != "attribute":
            return cleaned
        config = self.config()
        data_type = self.attribute_types.get(config.get("name"))
        comparison = {k: config[k] for k in ("operator", "value", "value_to") if k in config}
        for problem in conditions.condition_problems(comparison, data_type, "config"):
            self._add_problem("config", problem + (f" (the attribute is {data_type})" if data_type else "") + ".")
        return cleaned


def _shown(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _typed(text, data_type, takes):
    """A value typed in a text box, as the JSON the declared type wants."""
    text = (text or "").strip()
    if takes == conditions.DAYS or data_type == DataType.NUMBER:
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if number.is_integer() else number
    if data_type == DataType.BOOLEAN:
        return {"true": True, "yes": True, "false": False, "no": False}.get(text.lower(), text)
    if data_type == DataType.LIST:
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


class SplitForm(StepForm):
    kind = StepKind.SPLIT
    line_prefixes = ("path",)
    config_fields = {"paths": "path_name_1"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        targets = [("", "the next step")] + step_choices(self.others, end_label=None)
        for row in range(1, MAX_SPLIT_PATHS + 1):
            self.fields[f"path_name_{row}"] = forms.CharField(label=f"path {row}", required=False, max_length=20)
            self.fields[f"path_weight_{row}"] = forms.IntegerField(label="weight", required=False, min_value=1)
            self.fields[f"path_step_{row}"] = forms.ChoiceField(label="goes to", required=False, choices=targets)

    def initial_config(self, config, step):
        initial = {}
        for row, path in enumerate(config.get("paths") or [], start=1):
            initial.update({f"path_name_{row}": path.get("name"), f"path_weight_{row}": path.get("weight"),
                            f"path_step_{row}": path.get("step") or ""})
        return initial

    def _rows(self):
        data = self.cleaned_data
        return [row for row in range(1, MAX_SPLIT_PATHS + 1)
                if data.get(f"path_name_{row}") or data.get(f"path_weight_{row}") or data.get(f"path_step_{row}")]

    def config(self):
        data = self.cleaned_data
        paths = []
        for row in self._rows():
            path = {"name": data.get(f"path_name_{row}") or None, "weight": data.get(f"path_weight_{row}")}
            if data.get(f"path_step_{row}"):
                path["step"] = data[f"path_step_{row}"]
            paths.append(path)
        return {"paths": paths}

    def _add_problem(self, field, message):
        match = re.match(r"config\.paths\[(\d+)\]\.(\w+)", message)
        rows = self._rows()
        if match and int(match.group(1)) < len(rows):
            self.add_error(f"path_{match.group(2)}_{rows[int(match.group(1))]}", _plain(message))
        else:
            self.add_error("path_name_1", _plain(message))


class UpdateForm(StepForm):
    kind = StepKind.UPDATE
    config_fields = {"attribute": "attribute", "value": "value", "lifecycle_stage": "lifecycle_stage"}
    sets = forms.ChoiceField(label="set", choices=[("attribute", "a contact attribute"),
                                                   ("lifecycle_stage", "the lifecycle stage")])
    attribute = forms.CharField(required=False, max_length=100)
    value = forms.CharField(label="to", required=False, max_length=500,
                            help_text="Typed as the attribute is declared: a number, true or false, a date "
                                      "(YYYY-MM-DD), a list as a, b, c.")
    lifecycle_stage = forms.ChoiceField(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["attribute"].widget = _datalist_input("attribute", definitions().attributes)
        self.fields["lifecycle_stage"].choices = [("", "—")] + list(
            LifecycleStage.objects.order_by("order", "key").values_list("key", "name"))

    def initial_config(self, config, step):
        return {"sets": "lifecycle_stage" if "lifecycle_stage" in config else "attribute",
                "attribute": config.get("attribute"), "value": _shown(config.get("value")),
                "lifecycle_stage": config.get("lifecycle_stage")}

    def config(self):
        data = self.cleaned_data
        if data.get("sets") == "lifecycle_stage":
            return {"lifecycle_stage": data.get("lifecycle_stage") or None}
        name = (data.get("attribute") or "").strip() or None
        data_type = definitions().attributes.get(name)
        return {"attribute": name, "value": _typed(data.get("value"), data_type, conditions.ONE_VALUE)}

    def clean(self):
        from contacts.data_types import type_problem

        cleaned = super().clean()
        if self.errors:
            return cleaned
        config = self.config()
        data_type = definitions().attributes.get(config.get("attribute"))
        if data_type and "value" in config:
            problem = type_problem("value", data_type, config["value"])
            if problem:
                self.add_error("value", problem)
        return cleaned


class WebhookForm(StepForm):
    kind = StepKind.WEBHOOK
    config_fields = {"endpoint": "endpoint", "timeout_seconds": "timeout", "data": "endpoint"}
    has_else = True
    else_label = "without an answer, go to"
    endpoint = forms.ChoiceField()
    timeout = DurationField(label="wait for its answer at most")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].choices = [("", "—")] + [
            (name, name) for name in WebhookEndpoint.objects.filter(active=True).order_by("name")
            .values_list("name", flat=True)]

    def initial_config(self, config, step):
        self._data = config.get("data")
        return {"endpoint": config.get("endpoint"), "timeout": config.get("timeout_seconds")}

    def config(self):
        data = getattr(self, "_data", None)
        if data is None and self.step is not None:
            data = (self.step.config or {}).get("data")
        return {"endpoint": self.cleaned_data.get("endpoint") or None, "timeout_seconds": self.cleaned_data.get("timeout"),
                **({"data": data} if data is not None else {})}


class ExitForm(StepForm):
    kind = StepKind.EXIT


FORMS = {form.kind: form for form in (SendForm, WaitForm, WaitUntilForm, WaitDateForm, WaitEventForm, ConditionForm,
                                      SplitForm, UpdateForm, WebhookForm, ExitForm)}


def form_for(kind: str):
    try:
        return FORMS[kind]
    except KeyError:
        raise ValidationError(f"{kind!r} is not a kind of step.") from None
