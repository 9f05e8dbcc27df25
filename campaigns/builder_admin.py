"""The journey builder in the admin: add, change, move and remove draft steps through a form per
kind (campaigns.step_forms) and campaigns.drafts, and the journey form without JSON (typed
trigger condition rows, durations, a time picker) that refuses a stale page too.
"""
import json

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from contacts import conditions
from contacts.data_types import definitions
from omni.lib.admin import RefusesStalePage, save_edited_fields

from . import drafts
from .models import Journey, JourneyStep, StepKind
from .step_forms import TIME_INPUT, DurationField, form_for, style
from .trigger_conditions import condition_problems, read_conditions

CONDITION_ROWS = 5
# The journey's own fields a version holds: changing one is a draft edit.
DRAFT_FIELDS = ("trigger_type", "trigger_event", "trigger_conditions", "trigger_segment_id", "trigger_max_age_seconds",
                "trigger_date_attribute", "trigger_date_property", "trigger_date_offset_days", "trigger_date_time",
                "goal_event", "reentry", "reentry_after_seconds", "on_reply")


class ConditionRowsWidget(forms.Widget):
    """Trigger conditions as rows of property, operator and value(s), kept as the JSON list."""

    template_name = "campaigns/journey/condition_rows.html"

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        try:
            rows = read_conditions(json.loads(value) if isinstance(value, str) else value)
        except ValueError:
            rows = []
        rows = [row for row in rows if isinstance(row, dict)]
        rows += [{}] * max(CONDITION_ROWS - len(rows), 1)
        labels = {}
        for ops in conditions.OPERATORS.values():
            for op in ops:
                labels.setdefault(op.name, op.label)
        properties = sorted({name for props in definitions().properties.values() for name in props})
        context["rows"] = [{
            "index": index, "property": row.get("property", ""), "operator": row.get("operator", ""),
            "value": _shown(row.get("value")), "value_to": _shown(row.get("value_to")),
        } for index, row in enumerate(rows)]
        context["operators"] = list(labels.items())
        context["properties"] = properties
        return context

    def value_from_datadict(self, data, files, name):
        if f"{name}-0-property" not in data:
            return data.get(name)
        rows = []
        declared = definitions().properties
        index = 0
        while f"{name}-{index}-property" in data:
            prop = (data.get(f"{name}-{index}-property") or "").strip()
            operator = data.get(f"{name}-{index}-operator") or ""
            if prop or operator:
                data_type = next((props[prop] for props in declared.values() if prop in props), None)
                takes = next((op.takes for op in conditions.operators_for(data_type or "text") if op.name == operator),
                             conditions.ONE_VALUE)
                row = {"property": prop, "operator": operator}
                if takes != conditions.NO_VALUE:
                    row["value"] = _typed(data.get(f"{name}-{index}-value"), data_type, takes)
                if takes == conditions.TWO_VALUES:
                    row["value_to"] = _typed(data.get(f"{name}-{index}-value_to"), data_type, takes)
                rows.append(row)
            index += 1
        return json.dumps(rows)


def _shown(value):
    from .step_forms import _shown as shown
    return shown(value)


def _typed(text, data_type, takes):
    from .step_forms import _typed as typed
    return typed(text, data_type, takes)


class JourneyForm(RefusesStalePage, forms.ModelForm):
    """The journey's own fields, with no JSON, refusing a page older than the draft."""

    revision_field = "draft_revision_seen"
    draft_revision_seen = forms.IntegerField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = Journey
        fields = "__all__"
        widgets = {"trigger_conditions": ConditionRowsWidget, "trigger_date_time": TIME_INPUT}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("trigger_max_age_seconds", "reentry_after_seconds"):
            if name in self.fields:
                old = self.fields[name]
                self.fields[name] = DurationField(label=old.label.replace(" (seconds)", ""), required=False,
                                                  help_text=old.help_text)
        if "trigger_conditions" in self.fields:
            self.fields["trigger_conditions"].help_text = (
                "Conditions on the trigger event's properties, all of which must hold: a property, an operator "
                "(those of the property's declared type) and the value. Leave a row empty to ignore it.")
        if "reentry_after_seconds" in self.fields:
            self.fields["reentry_after_seconds"].label = "re-entry after"
        style(self)

    def revision(self, row) -> int:
        return row.draft_revision

    def stale_words(self, row, seen) -> str:
        return ("This page is out of date: the journey was changed (by you in another tab, or by someone else) "
                "since you opened it. Nothing was saved, and what you typed is still below: open the page again "
                "to see the journey as it is now, then make your change again.")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("trigger_type") == "event" and "trigger_conditions" in cleaned:
            for problem in condition_problems(cleaned["trigger_conditions"] or [], cleaned.get("trigger_event") or ""):
                self.add_error("trigger_conditions", problem)
        return cleaned


class JourneyBuilderMixin:
    """JourneyAdmin's builder pages and its journey form."""

    form = JourneyForm

    class Media:
        js = ["campaigns/journey_form.js"]

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:object_id>/steps/add/", wrap(self.step_add_view), name="campaigns_journey_step_add"),
            path("<int:object_id>/steps/<int:step_id>/", wrap(self.step_change_view),
                 name="campaigns_journey_step_change"),
            path("<int:object_id>/steps/<int:step_id>/move/", wrap(self.step_move_view),
                 name="campaigns_journey_step_move"),
            path("<int:object_id>/steps/<int:step_id>/remove/", wrap(self.step_remove_view),
                 name="campaigns_journey_step_remove"),
        ] + super().get_urls()

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        edited = [field.attname for field in Journey._meta.concrete_fields if field.name in form.fields]
        before = Journey.objects.filter(pk=obj.pk).values(*dict.fromkeys([*DRAFT_FIELDS, *edited])).first()
        save_edited_fields(obj, form)  # not the status, pause, live version or approval, as read
        # What the draft holds, compared as saved (a form's "changed" fields count a re-typed equal value).
        changed = [name for name in DRAFT_FIELDS if before is not None and before[name] != getattr(obj, name)]
        if changed:
            drafts.bump_revision(obj, actor=request.user, change="journey", data={"fields": changed})
        elif before is not None and any(before[name] != getattr(obj, name) for name in edited):
            # Not what a version holds (a name, an objective), but the form writes every field it
            # shows: a page read before this save would write it back, so it is refused as stale.
            drafts.advance_revision(obj)

    def _journey(self, request, object_id) -> Journey:
        journey = get_object_or_404(Journey, pk=object_id)
        if not self.has_change_permission(request, journey):
            raise PermissionDenied
        return journey

    def _back(self, journey, anchor="journey-builder"):
        return redirect(reverse("admin:campaigns_journey_change", args=[journey.pk]) + f"#{anchor}")

    def step_add_view(self, request, object_id):
        journey = self._journey(request, object_id)
        after, branch = request.GET.get("after") or None, request.GET.get("branch") or None
        kind = request.POST.get("kind") or request.GET.get("kind")
        if kind not in StepKind.values:
            return self._render(request, journey, "Add a step: choose its kind", kinds=[
                (value, label, _query(after, branch, value)) for value, label in StepKind.choices], after=after,
                branch=branch)
        form_class = form_for(kind)
        form = form_class(request.POST or None, journey=journey)
        if request.method == "POST" and form.is_valid():
            try:
                step = drafts.add_step(journey, revision=request.POST.get("revision"), kind=kind,
                                       values=form.values(), after=after, branch=branch, actor=request.user)
            except drafts.StaleDraft as stale:
                messages.error(request, stale.messages[0])
                return self._back(journey)
            except ValidationError as refused:
                form.add_error(None, refused)
            else:
                messages.success(request, f"Step {step.key!r} added.")
                return self._back(journey)
        return self._render(request, journey, f"Add a step: {StepKind(kind).label.lower()}", form=form, kind=kind,
                            after=after, branch=branch)

    def step_change_view(self, request, object_id, step_id):
        journey = self._journey(request, object_id)
        step = get_object_or_404(JourneyStep.objects.select_related("next_step", "else_step"), pk=step_id,
                                 journey=journey)
        form = form_for(step.kind)(request.POST or None, journey=journey, step=step)
        if request.method == "POST" and form.is_valid():
            try:
                drafts.change_step(journey, step, revision=request.POST.get("revision"), values=form.values(),
                                   actor=request.user)
            except drafts.StaleDraft as stale:
                messages.error(request, stale.messages[0])
                return self._back(journey)
            except ValidationError as refused:
                form.add_error(None, refused)
            else:
                messages.success(request, f"Step {step.key!r} saved.")
                return self._back(journey)
        return self._render(request, journey, f"Step {step.key}: {step.get_kind_display().lower()}", form=form,
                            step=step, kind=step.kind)

    def step_move_view(self, request, object_id, step_id):
        return self._edit(request, object_id, step_id, lambda journey, step, revision: drafts.move_step(
            journey, step, revision=revision, direction=request.POST.get("direction"), actor=request.user),
            "moved")

    def step_remove_view(self, request, object_id, step_id):
        return self._edit(request, object_id, step_id, lambda journey, step, revision: drafts.remove_step(
            journey, step, revision=revision, actor=request.user), "removed")

    def _edit(self, request, object_id, step_id, edit, done):
        journey = self._journey(request, object_id)
        if request.method != "POST":
            return self._back(journey)
        step = get_object_or_404(JourneyStep, pk=step_id, journey=journey)
        try:
            edit(journey, step, request.POST.get("revision"))
        except ValidationError as refused:
            messages.error(request, " ".join(refused.messages))
        else:
            messages.success(request, f"Step {step.key!r} {done}.")
        return self._back(journey)

    def _render(self, request, journey, title, **context):
        journey.refresh_from_db(fields=["draft_revision"])
        context = {**self.admin_site.each_context(request), "title": title, "journey": journey,
                   "opts": self.model._meta, "original": journey, "revision": journey.draft_revision,
                   "back_url": reverse("admin:campaigns_journey_change", args=[journey.pk]), **context}
        form = context.get("form")
        if form is not None and not form.is_bound and context.get("step") is not None:
            _flag_problems(form, journey, context["step"])
        return TemplateResponse(request, "campaigns/journey/step_form.html", context)


def _query(after, branch, kind) -> str:
    from urllib.parse import urlencode
    return "?" + urlencode({k: v for k, v in (("after", after), ("branch", branch), ("kind", kind)) if v})


def _flag_problems(form, journey, step) -> None:
    """Show the draft's problems with this step on the form (as a page opened from the problems list)."""
    from .actions import validate_journey

    form.flags = [problem for problem in validate_journey(journey) if getattr(problem, "step", "") == step.key]

