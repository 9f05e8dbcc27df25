"""The builder's sections of the journey page: the draft's steps with their edits, and its problems."""
from django import template
from django.urls import reverse

from ..actions import snapshot_problems
from ..journey_page import page_draft
from ..drafts import ELSE_FOLLOWS, PATH
from ..models import StepKind

register = template.Library()


@register.inclusion_tag("campaigns/journey/builder_section.html", takes_context=True)
def journey_builder(context, journey):
    request = context["request"]
    steps = list(journey.steps.order_by("position", "pk").values_list("pk", "key", "kind"))
    ids = {key: pk for pk, key, _ in steps}
    rows = []
    snapshot = page_draft(journey)
    add_url = reverse("admin:campaigns_journey_step_add", args=[journey.pk])
    for row in snapshot["steps"]:
        key, kind = row["key"], row["kind"]
        branches = []
        if kind == StepKind.CONDITION:
            branches.append(("if not", f"{add_url}?after={key}&branch=else"))
        elif kind in ELSE_FOLLOWS:
            branches.append(("otherwise", f"{add_url}?after={key}&branch=else"))
        elif kind == StepKind.SPLIT:
            branches += [(f"path {path.get('name')}", f"{add_url}?after={key}&branch={PATH}{path.get('name')}")
                         for path in (row["config"] or {}).get("paths") or [] if isinstance(path, dict)]
        rows.append({
            "key": key, "kind": kind, "words": _words(row),
            "change_url": reverse("admin:campaigns_journey_step_change", args=[journey.pk, ids[key]]),
            "move_url": reverse("admin:campaigns_journey_step_move", args=[journey.pk, ids[key]]),
            "remove_url": reverse("admin:campaigns_journey_step_remove", args=[journey.pk, ids[key]]),
            "add_url": f"{add_url}?after={key}", "branches": branches,
        })
    return {"journey": journey, "rows": rows, "revision": journey.draft_revision, "first_url": add_url,
            "can_change": request.user.has_perm("campaigns.change_journey"), "csrf_token": context.get("csrf_token")}


def _words(row: dict) -> str:
    from ..admin import describe_step  # the admin module loads after the template libraries

    words = describe_step(row)
    if row["kind"] == StepKind.SEND and row["template_version"] is None:
        words = words.replace(f" v{row['template_version_number']}", " (not published)")
    return words


@register.inclusion_tag("campaigns/journey/problems_section.html")
def journey_problems(journey):
    """The draft's problems, each linking to its step's form (at the field at fault)."""
    ids = dict(journey.steps.values_list("key", "pk"))
    problems = []
    for problem in snapshot_problems(page_draft(journey)):
        step = getattr(problem, "step", "")
        url = (reverse("admin:campaigns_journey_step_change", args=[journey.pk, ids[step]]) if step in ids else "")
        problems.append({"message": str(problem), "step": step, "field": getattr(problem, "field", ""), "url": url})
    return {"problems": problems, "journey": journey}
