"""The admin's side of the journey diagram: the counts the open journey page polls
(campaigns/static/campaigns/journey_diagram.js), and the enrollment list filtered to the
contacts at one step of one version, where a node of the diagram links.

The page section itself is campaigns/templatetags/journey_diagram.py.
"""
from urllib.parse import urlencode

from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, JsonResponse
from django.urls import path, reverse
from django.utils import timezone

from . import step_counts
from .models import LIVE_ENROLLMENT_STATES, Journey, JourneyVersion

# The lookups a diagram node's link filters the enrollment list by, besides the journey
# (already one of the list's filters).
AT_STEP_LOOKUPS = ("journey_version__id__exact", "current_step_key")


def drawn_version(journey: Journey, number) -> JourneyVersion | None:
    """The version the diagram draws: the one numbered `number` (text from the request) when the
    journey has it, else the live one (None when nothing is published)."""
    if number not in (None, "") and str(number).isdigit():
        version = JourneyVersion.objects.filter(journey=journey, number=int(number)).first()
        if version is not None:
            return version
    return journey.live_version


def enrollments_at_step_url(journey: Journey, version: JourneyVersion, step_key: str) -> str:
    """The enrollment list showing the contacts of `version` at `step_key`: the live ones, as the
    node counts them (an ended enrollment keeps the step it ended at)."""
    query = urlencode({"journey__id__exact": journey.pk, "journey_version__id__exact": version.pk,
                       "current_step_key": step_key, "state__in": ",".join(LIVE_ENROLLMENT_STATES)})
    return f"{reverse('admin:campaigns_enrollment_changelist')}?{query}"


def counts_url(journey: Journey, version: JourneyVersion, days: int) -> str:
    return (f"{reverse('admin:campaigns_journey_diagram_counts', args=[journey.pk])}?"
            f"{urlencode({'version': version.number, 'period': days})}")


def step_figures(journey: Journey, version: JourneyVersion, days: int, now) -> dict:
    """The diagram's numbers for one version: contacts at each step now, and steps run in the
    last `days` days, by step key (every step of the version named, zero included)."""
    at_step = step_counts.contacts_at_steps([version.pk])[version.pk]
    passed = step_counts.visits_by_step(journey, now, days)
    keys = [step["key"] for step in version.steps]
    return {
        "version": version.number,
        "period_days": days,
        "at_step": {key: at_step.get(key, 0) for key in keys},
        "passed": {key: passed.get(key, 0) for key in keys},
    }


class JourneyDiagramAdminMixin:
    """JourneyAdmin's URL for the diagram's counts (admin:campaigns_journey_diagram_counts), as
    JSON, for whoever may view the journey."""

    def get_urls(self):
        counts = path("<path:object_id>/diagram/counts/", self.admin_site.admin_view(self.diagram_counts_view),
                      name="campaigns_journey_diagram_counts")
        return [counts, *super().get_urls()]

    def diagram_counts_view(self, request, object_id):
        # Not get_object(): the admin's queryset counts the journey's enrollments, which this
        # view, asked every few seconds, has no use for.
        try:
            journey = Journey.objects.get(pk=unquote(object_id))
        except (Journey.DoesNotExist, ValueError, ValidationError):
            raise Http404("No such journey.")
        if not self.has_view_permission(request, journey):
            raise PermissionDenied
        version = drawn_version(journey, request.GET.get("version"))
        if version is None:
            return JsonResponse({"version": None, "at_step": {}, "passed": {}})
        days = step_counts.period_days(request.GET.get("period"))
        return JsonResponse(step_figures(journey, version, days, timezone.now()))


class EnrollmentsAtStepAdminMixin:
    """Lets the enrollment list be filtered to one step of one version (the diagram's links)."""

    def lookup_allowed(self, lookup, value, request=None):
        return lookup in AT_STEP_LOOKUPS or super().lookup_allowed(lookup, value, request)
