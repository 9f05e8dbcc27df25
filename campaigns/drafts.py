"""Edits to a journey's draft steps, as the builder makes them: add, change, move, remove.

Each edit is one transaction holding the journey's row, refused when the page it came from read
an older `Journey.draft_revision`, audited as journey.draft_changed, and ended by
journey_approval.draft_edited. Keys are made once from the kind or template and never change;
positions follow the flow and are never typed.

Every step the builder touches has an explicit next step: another step, or the end
(`JourneyStep.ends`). Steps written before (next empty: the next position) are made explicit
the first time the builder edits their journey, leading exactly where they led.
"""
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils.text import slugify

from omni import audit

from . import journey_approval
from .models import Journey, JourneyStep, StepKind

END = "end"
ELSE = "else"
PATH = "path:"
# What a step form may set on a step; the key, position and journey are the builder's.
STEP_VALUES = ("config", "template", "purpose", "urgency", "channel_plan", "intent_key",
               "next_step", "ends", "else_step")
# Kinds whose empty else goes on to the next step (a timeout, a missing date, a failed call);
# a condition's empty else ends the journey.
ELSE_FOLLOWS = (StepKind.WAIT_EVENT, StepKind.WAIT_DATE, StepKind.WEBHOOK)
STALE = ("This page is out of date: the journey's steps were changed (by you in another tab, or by "
         "someone else) since it was loaded. It has been reloaded; make your change again.")


class StaleDraft(ValidationError):
    def __init__(self):
        super().__init__(STALE, code="stale")


def add_step(journey: Journey, *, revision: int, kind: str, values: dict, after: str | None = None,
             branch: str | None = None, actor=None) -> JourneyStep:
    """Add a step after the step keyed `after` (on its else branch, or on a split's path
    "path:<name>"), or first when `after` is None, linked in between that step and where it led."""
    with transaction.atomic():
        journey, steps = _begin(journey, revision)
        by_key = {step.key: step for step in steps}
        step = JourneyStep(journey=journey, kind=kind, key=_new_key(kind, values, by_key))
        _apply(step, values)
        if after is None:
            _lead_to(step, steps[0] if steps else None)
            index = 0
        else:
            source = by_key.get(after)
            if source is None:
                raise ValidationError(f"There is no step {after!r} in this journey to add a step after.")
            index = steps.index(source) + 1
            _insert_on(source, branch, step, by_key)
        step.position = index
        step.save()
        steps.insert(index, step)
        _renumber(steps)
        _finish(journey, actor, "added", step, {"after": after or "", "branch": branch or ""})
    return step


def change_step(journey: Journey, step: JourneyStep, *, revision: int, values: dict, actor=None) -> JourneyStep:
    """Save a step form's values (settings and where the step leads) on the step."""
    with transaction.atomic():
        journey, steps = _begin(journey, revision)
        step = _find(steps, step)
        _apply(step, values)
        step.save()
        _finish(journey, actor, "changed", step, {"settings": sorted(values)})
    return step


def move_step(journey: Journey, step: JourneyStep, *, revision: int, direction: str, actor=None) -> JourneyStep:
    """Swap a step with the one before it ("up") or after it ("down") in the flow: what led to
    the first now leads to the second, which leads to the first, which leads where the second did."""
    with transaction.atomic():
        journey, steps = _begin(journey, revision)
        step = _find(steps, step)
        if direction == "up":
            later = step
        elif direction == "down":
            later = step.next_step and _find(steps, step.next_step)
            if later is None:
                raise ValidationError(f"Step {step.key!r} is the last of its path: it cannot move down.")
        else:
            raise ValidationError(f"A step moves up or down, not {direction!r}.")
        earlier = _single_before(later, steps)
        _swap(earlier, later, steps)
        _finish(journey, actor, "moved", step, {"direction": direction})
    return step


def remove_step(journey: Journey, step: JourneyStep, *, revision: int, actor=None) -> None:
    """Delete a step, relinking what led to it to its next step. Refused, naming the steps, when
    something leads to it and it has no single next (a condition, a split, a wait whose timeout
    goes elsewhere)."""
    with transaction.atomic():
        journey, steps = _begin(journey, revision)
        step = _find(steps, step)
        leading = [other for other in steps if other is not step and _targets_of(other, step)]
        first = steps[0] is step
        onward = _single_next(step, steps)
        if (leading or first) and onward is _MANY:
            named = ", ".join(repr(other.key) for other in leading) or "the journey's start"
            raise ValidationError(
                f"Step {step.key!r} cannot be removed: {named} lead{'s' if len(leading) == 1 else ''} to it, and it "
                f"leads to more than one step ({', '.join(_branch_names(step, steps))}). Point "
                f"{'them' if len(leading) != 1 else 'it'} elsewhere first, or make both branches lead to one step.")
        for other in leading:
            _redirect(other, step, onward, steps)
        if first and onward is not None and onward in steps:
            steps.remove(onward)
            steps.insert(1, onward)  # the journey starts where it led
        steps.remove(step)
        kind, key = step.kind, step.key
        step.delete()
        _renumber(steps)
        _finish(journey, actor, "removed", JourneyStep(key=key, kind=kind), {})


def _begin(journey: Journey, revision) -> tuple[Journey, list[JourneyStep]]:
    locked = Journey.objects.select_for_update(no_key=True).get(pk=journey.pk)
    if revision is None or int(revision) != locked.draft_revision:
        raise StaleDraft()
    steps = list(JourneyStep.objects.filter(journey=locked).order_by("position", "pk"))
    if any(step.next_step_id is None and not step.ends for step in steps):
        # The same flow, written anew: a request or approval of it stands.
        journey_approval.restated(locked, lambda: _make_links_explicit(steps))
    return locked, steps


def _make_links_explicit(steps: list[JourneyStep]) -> None:
    """Steps whose empty next meant "the next position" name it (or end), leading where they did."""
    for index, step in enumerate(steps):
        if step.next_step_id is None and not step.ends:
            if index + 1 < len(steps):
                step.next_step = steps[index + 1]
            else:
                step.ends = True
            step.save(update_fields=["next_step", "ends"])


def _finish(journey: Journey, actor, change: str, step: JourneyStep, data: dict) -> None:
    advance_revision(journey)
    audit.record("journey.draft_changed", obj=journey, actor=actor,
                 data={"change": change, "step": step.key, "kind": step.kind, "revision": journey.draft_revision,
                       **data})
    journey_approval.draft_edited(journey, actor=actor)


def advance_revision(journey: Journey) -> None:
    """The draft's next revision: a page read before it is refused as out of date. Alone, for an
    edit of what the draft does not hold (its name, its objective) that a stale page would undo."""
    Journey.objects.filter(pk=journey.pk).update(draft_revision=F("draft_revision") + 1)
    journey.refresh_from_db(fields=["draft_revision"])


def bump_revision(journey: Journey, *, actor, change: str, data: dict) -> None:
    """For an edit of the journey's own fields (the journey form): the same revision, audit and approval."""
    advance_revision(journey)
    audit.record("journey.draft_changed", obj=journey, actor=actor,
                 data={"change": change, "step": "", "kind": "", "revision": journey.draft_revision, **data})
    journey_approval.draft_edited(journey, actor=actor)


def _find(steps: list[JourneyStep], step: JourneyStep) -> JourneyStep:
    for candidate in steps:
        if candidate.pk == step.pk:
            return candidate
    raise ValidationError("That step is no longer in this journey: reload the page.")


def _apply(step: JourneyStep, values: dict) -> None:
    for name, value in values.items():
        if name not in STEP_VALUES:
            raise ValueError(f"A step form does not set {name!r}.")
        setattr(step, name, value)
    if step.next_step_id is not None or getattr(step, "next_step", None) is not None:
        step.ends = False


def _new_key(kind: str, values: dict, by_key: dict) -> str:
    template = values.get("template")
    base = slugify(f"{kind}-{template.key}" if kind == StepKind.SEND and template is not None else kind)
    base = base.replace("_", "-")[:44]
    key, number = base or "step", 2
    while key in by_key:
        key, number = f"{base}-{number}", number + 1
    return key


def _following(step: JourneyStep) -> JourneyStep | None:
    """Where the step leads on success (None: the end), its links being explicit."""
    return step.next_step if not step.ends else None


def _lead_to(step: JourneyStep, target: JourneyStep | None) -> None:
    step.next_step, step.ends = target, target is None


def _insert_on(source: JourneyStep, branch: str | None, step: JourneyStep, by_key: dict) -> None:
    if not branch:
        _lead_to(step, _following(source))
        _lead_to(source, step)
    elif branch == ELSE:
        if source.kind not in (StepKind.CONDITION, *ELSE_FOLLOWS):
            raise ValidationError(f"Step {source.key!r} has no else branch.")
        old = source.else_step or (_following(source) if source.kind in ELSE_FOLLOWS else None)
        _lead_to(step, old)
        source.else_step = step
    elif branch.startswith(PATH) and source.kind == StepKind.SPLIT:
        name = branch[len(PATH):]
        paths = [dict(path) for path in (source.config or {}).get("paths") or []]
        path = next((path for path in paths if path.get("name") == name), None)
        if path is None:
            raise ValidationError(f"Split step {source.key!r} has no path {name!r}.")
        _lead_to(step, by_key.get(path.get("step")) if path.get("step") else _following(source))
        path["step"] = step.key
        source.config = {**source.config, "paths": paths}
    else:
        raise ValidationError(f"{branch!r} is not a branch of step {source.key!r}.")
    # The new step is saved first so that source can point at it.
    step.save()
    source.save()


def _targets_of(step: JourneyStep, target: JourneyStep) -> list[str]:
    """Which of step's links lead to target: "next", "else", "path:<name>"."""
    found = []
    if step.next_step_id == target.pk and not step.ends:
        found.append("next")
    if step.else_step_id == target.pk:
        found.append(ELSE)
    if step.kind == StepKind.SPLIT:
        for path in (step.config or {}).get("paths") or []:
            if isinstance(path, dict) and path.get("step") == target.key:
                found.append(PATH + str(path.get("name")))
    return found


_MANY = object()


def _single_next(step: JourneyStep, steps: list[JourneyStep]):
    """The one step (None: the end) a step leads to whatever happens there, or _MANY."""
    by_key = {other.key: other for other in steps}
    following = _following(step)
    onward = {following}
    if step.kind == StepKind.CONDITION:
        onward.add(step.else_step)
    elif step.kind in ELSE_FOLLOWS and step.else_step is not None:
        onward.add(step.else_step)
    elif step.kind == StepKind.SPLIT:
        onward = {by_key.get(path.get("step")) if isinstance(path, dict) and path.get("step") else following
                  for path in (step.config or {}).get("paths") or []} or {following}
    elif step.kind == StepKind.EXIT:
        onward = {None}
    return onward.pop() if len(onward) == 1 else _MANY


def _branch_names(step: JourneyStep, steps: list[JourneyStep]) -> list[str]:
    names = {"next": _following(step), ELSE: step.else_step}
    if step.kind == StepKind.SPLIT:
        by_key = {other.key: other for other in steps}
        names = {f"path {path.get('name')}": by_key.get(path.get("step")) or _following(step)
                 for path in (step.config or {}).get("paths") or [] if isinstance(path, dict)}
    return [f"{label} → {target.key if target else 'the end'}" for label, target in names.items()
            if target is not None or label == "next" or step.kind == StepKind.CONDITION]


def _redirect(step: JourneyStep, old: JourneyStep, new: JourneyStep | None, steps: list[JourneyStep]) -> None:
    """Point step's links to old at new (None: the end)."""
    links = _targets_of(step, old)
    if new is None and any(link != "next" for link in links) and (
            ELSE not in links or step.kind in ELSE_FOLLOWS):
        branch = next(link for link in links if link != "next")
        raise ValidationError(
            f"Step {old.key!r} cannot be removed: the {branch.replace(PATH, 'path ')} branch of step {step.key!r} "
            f"leads to it, and would then end the journey, which that branch cannot say. Point it elsewhere first.")
    if "next" in links:
        _lead_to(step, new)
    if ELSE in links:
        step.else_step = new
    if step.kind == StepKind.SPLIT and any(link.startswith(PATH) for link in links):
        step.config = {**step.config, "paths": [
            {**path, "step": new.key} if isinstance(path, dict) and path.get("step") == old.key else path
            for path in step.config.get("paths") or []]}
    step.save()


def _single_before(step: JourneyStep, steps: list[JourneyStep]) -> JourneyStep:
    before = [other for other in steps if other is not step and "next" in _targets_of(other, step)]
    if not before:
        raise ValidationError(f"Step {step.key!r} is the first of its path: nothing comes before it to swap with.")
    if len(before) > 1:
        raise ValidationError(f"Step {step.key!r} follows several steps ({', '.join(repr(s.key) for s in before)}): "
                              f"it cannot move above one of them.")
    return before[0]


def _swap(earlier: JourneyStep, later: JourneyStep, steps: list[JourneyStep]) -> None:
    """earlier → later → X becomes later → earlier → X; what led to earlier leads to later."""
    onward = _following(later)
    for other in steps:
        if other is not later and other is not earlier and _targets_of(other, earlier):
            _redirect(other, earlier, later, steps)
    if steps[0] is earlier:
        steps.remove(later)
        steps.insert(0, later)
    _lead_to(earlier, onward if onward is not earlier else later)
    _lead_to(later, earlier)
    earlier.save()
    later.save()
    i, j = steps.index(earlier), steps.index(later)
    if i < j:
        steps[i], steps[j] = steps[j], steps[i]
    _renumber(steps)


def _renumber(steps: list[JourneyStep]) -> None:
    for position, step in enumerate(steps):
        if step.position != position:
            step.position = position
            JourneyStep.objects.filter(pk=step.pk).update(position=position)
