"""The journey page's diagram section: the drawn version (the live one, or an earlier one chosen
with ?version=<number>) with its counts, the draft beside it with its changes marked, and where
a chosen contact (?contact=<id>) stands. Each drawing is followed by its steps in words.
{% load journey_diagram %}{% journey_diagram original %}"""
from django import template
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from campaigns import step_counts
from campaigns.journey_page import page_draft
from campaigns.diagram import MARK_WORDS, draw_journey, step_changes, step_label
from campaigns.diagram_admin import counts_url, drawn_version, enrollments_at_step_url, step_figures
from campaigns.models import LIVE_ENROLLMENT_STATES, Enrollment, EnrollmentState

register = template.Library()

# How often the open page asks for fresh counts.
REFRESH_SECONDS = 10


@register.inclusion_tag("campaigns/journey/diagram_section.html", takes_context=True)
def journey_diagram(context, journey):
    request = context["request"]
    user, contact = request.user, request.GET.get("contact", "")
    days = step_counts.period_days(request.GET.get("period"))
    versions = list(journey.versions.order_by("-number").values_list("pk", "number"))
    version = drawn_version(journey, request.GET.get("version"))
    draft_steps = page_draft(journey)["steps"]
    changes = step_changes(journey.live_version.steps, draft_steps) if journey.live_version_id else {}
    standing, contact_note = _contact_standing(journey, contact, user, dict(versions))
    builder_links = _builder_links(journey, user)
    can_list_enrollments = user.has_perm("campaigns.view_enrollment")
    return {
        "journey": journey, "versions": versions, "period_days": days, "period_choices": step_counts.PERIOD_DAYS,
        "drawn": _version_panel(journey, version, days, changes, standing, can_list_enrollments) if version else None,
        "draft": _draft_panel(journey, draft_steps, changes, builder_links) if draft_steps else None,
        "contact_id": contact if contact.isdigit() else "", "contact_note": contact_note,
        "contact_version_elsewhere": (dict(versions).get(standing.journey_version_id)
                                      if standing and version and standing.journey_version_id != version.pk else None),
        "refresh_seconds": REFRESH_SECONDS,
        "nodes_link_to_enrollments": can_list_enrollments, "nodes_link_to_forms": bool(builder_links),
    }


def _version_panel(journey, version, days: int, changes: dict, standing, can_list_enrollments: bool) -> dict:
    """A published version drawn with its counts; on the live one, the steps the draft removed marked."""
    figures = step_figures(journey, version, days, timezone.now())
    is_live = version.pk == journey.live_version_id
    marks = {key: change for key, change in changes.items() if change == "removed"} if is_live else {}
    links = ({step["key"]: enrollments_at_step_url(journey, version, step["key"]) for step in version.steps}
             if can_list_enrollments else {})
    highlighted = standing.current_step_key if standing and standing.journey_version_id == version.pk else ""
    words = {step["key"]: _in_words(step) for step in version.steps}
    return {
        "version": version, "is_live": is_live, "counts_url": counts_url(journey, version, days),
        "svg": draw_journey(
            version.steps, dom_id=f"journey-{journey.pk}-v{version.number}",
            title=f"{journey.name}, version {version.number}{' (live)' if is_live else ''}",
            description=f"{len(version.steps)} steps, each with the contacts at it now and those who passed through "
                        f"in the last {days} days; the list that follows says the same in words.",
            at_step=figures["at_step"], passed=figures["passed"], marks=marks, links=links, descriptions=words,
            highlighted=highlighted),
        "steps": [{"key": key, "words": words[key], "link": links.get(key, ""), "at_step": figures["at_step"][key],
                   "passed": figures["passed"][key], "mark": MARK_WORDS.get(marks.get(key, "")),
                   "highlighted": key == highlighted} for key in words],
    }


def _draft_panel(journey, draft_steps: list[dict], changes: dict, builder_links: dict) -> dict:
    """The draft drawn with its added and changed steps marked, each linking to its form."""
    marks = {key: change for key, change in changes.items() if change != "removed"}
    words = {step["key"]: _in_words(step) for step in draft_steps}
    return {
        "svg": draw_journey(
            draft_steps, dom_id=f"journey-{journey.pk}-draft", title=f"{journey.name}, draft",
            description=f"The draft's {len(draft_steps)} steps, added and changed ones marked; the list that "
                        f"follows says the same in words.",
            marks=marks, links=builder_links, descriptions=words),
        "steps": [{"key": key, "words": words[key], "link": builder_links.get(key, ""),
                   "mark": MARK_WORDS.get(marks.get(key, ""))} for key in words],
        "removed": [key for key, change in changes.items() if change == "removed"],
        "changed": bool(changes),
    }


def _contact_standing(journey, contact_id, user, version_numbers: dict) -> tuple[Enrollment | None, str]:
    """The chosen contact's live enrollment in the journey, and a sentence saying where it stands."""
    if not contact_id:
        return None, ""
    if not str(contact_id).isdigit():
        return None, "The contact to show is not a contact's id."
    enrollment = (Enrollment.objects.filter(journey=journey, contact_id=int(contact_id),
                                            state__in=LIVE_ENROLLMENT_STATES).select_related("contact").first())
    if enrollment is None:
        return None, f"Contact {contact_id} is not in this journey now."
    who = str(enrollment.contact) if user.has_perm("contacts.view_contact") else f"Contact {contact_id}"
    number = version_numbers.get(enrollment.journey_version_id)
    where = f"at step {enrollment.current_step_key}" if enrollment.current_step_key else "past the last step"
    state = " (paused)" if enrollment.state == EnrollmentState.PAUSED else ""
    return enrollment, f"{who} is {where} of version {number}{state}."


def _builder_links(journey, user) -> dict[str, str]:
    """Each draft step's form in the builder, for whoever may change the journey."""
    if not user.has_perm("campaigns.change_journey"):
        return {}
    try:
        reverse("admin:campaigns_journey_step_change", args=[journey.pk, 1])
    except NoReverseMatch:  # the builder's URLs are not there (yet)
        return {}
    return {key: reverse("admin:campaigns_journey_step_change", args=[journey.pk, pk])
            for key, pk in journey.steps.values_list("key", "pk")}


def _in_words(step: dict) -> str:
    # Imported here: the template engine loads tag libraries while the admin's theme is still
    # being imported, and campaigns.admin needs that theme.
    from campaigns.admin import describe_step

    try:
        return describe_step(step)
    except (AttributeError, TypeError, KeyError, ValueError):
        # A draft step whose settings are malformed (its problems are listed on the page) still
        # gets a line, rather than breaking the page.
        return f"{step['key']}: {step_label(step)}"
