"""How many contacts are at each step of a journey now, and how many passed through each step
in a period: the figures on the journey's diagram. A fixed number of queries, however many steps.
"""
from datetime import timedelta

from django.db.models import Count

from .models import LIVE_ENROLLMENT_STATES, Enrollment, Journey, JourneyStepVisit

# The periods "passed through" can count over, in days, and the one it counts over unless asked.
PERIOD_DAYS = (1, 7, 30, 90)
DEFAULT_PERIOD_DAYS = 30


def period_days(value) -> int:
    """The period a request asks for (days, as text), or the default for anything else."""
    try:
        days = int(value)
    except (TypeError, ValueError):
        return DEFAULT_PERIOD_DAYS
    return days if days in PERIOD_DAYS else DEFAULT_PERIOD_DAYS


def contacts_at_steps(version_ids) -> dict[int, dict[str, int]]:
    """The live (active or paused) enrollments at each step, by version id and step key. One
    query, on the enrollment_at_step index: only the index is read (COUNT(*), not a column)."""
    counts: dict[int, dict[str, int]] = {version_id: {} for version_id in version_ids}
    rows = (Enrollment.objects.filter(journey_version_id__in=list(counts), state__in=LIVE_ENROLLMENT_STATES)
            .order_by().values_list("journey_version_id", "current_step_key").annotate(count=Count("*")))
    for version_id, step_key, count in rows:
        counts[version_id][step_key] = count
    return counts


def visits_by_step(journey: Journey, now, days: int = DEFAULT_PERIOD_DAYS) -> dict[str, int]:
    """How many times each step (by key, whatever the version) was run for the journey's
    contacts in the last `days` days. One query, on the visit_journey_step index."""
    rows = (JourneyStepVisit.objects.filter(journey=journey, visited_at__gte=now - timedelta(days=days))
            .order_by().values_list("step_key").annotate(count=Count("*")))
    return dict(rows)
