"""{% journey_testing original %}: the journey page's testing section (see campaigns.journey_testing_admin)."""
from django import template
from django.utils import timezone
from unfold.widgets import BUTTON_CLASSES, INPUT_CLASSES, SELECT_CLASSES

from campaigns import journey_testing
from campaigns.actions import TESTABLE_STATUSES
from campaigns.models import JourneyStatus
from contacts.models import Contact

register = template.Library()

# The test contacts "send a test" offers: staff keep a handful, so a short list is all of them.
TEST_CONTACTS_OFFERED = 100
SEARCH_PARAMETER = "test_contact_q"
UI = {"input": " ".join(INPUT_CLASSES), "select": " ".join(SELECT_CLASSES), "button": " ".join(BUTTON_CLASSES),
      "secondary": "border border-base-200 dark:border-base-700 font-medium px-3 py-2 rounded-default "
                   "text-sm hover:bg-base-50 dark:hover:bg-base-800"}


@register.inclusion_tag("campaigns/journey/testing_section.html", takes_context=True)
def journey_testing_section(context, journey):
    from campaigns.admin import describe_step  # the admin's words for a step, loaded with the page

    request = context["request"]
    now = timezone.now()
    query = request.GET.get(SEARCH_PARAMETER, "").strip()
    testing = journey.status == JourneyStatus.TESTING
    standings = journey_testing.test_enrollments(journey, now) if testing else []
    for standing in standings:
        steps = {step["key"]: step for step in standing.enrollment.journey_version.steps} \
            if standing.enrollment.journey_version_id else {}
        step = steps.get(standing.enrollment.current_step_key)
        standing.described = describe_step(step) if step else "the end of the journey"
    return {
        "journey": journey,
        "testing": testing,
        "testable": journey.status in TESTABLE_STATUSES,
        "may_change": request.user.has_perm("campaigns.change_journey"),
        "may_add": request.user.has_perm("campaigns.add_journey"),
        "query": query,
        "search_parameter": SEARCH_PARAMETER,
        "found": journey_testing.find_test_contacts(query) if testing and query else [],
        "standings": standings,
        "send_steps": journey_testing.send_steps(journey) if testing else [],
        "test_contacts": (list(Contact.objects.reachable().filter(is_test=True)
                               .order_by("first_name", "last_name", "pk")[:TEST_CONTACTS_OFFERED])
                          if testing else []),
        "ui": UI,
        "csrf_token": context.get("csrf_token"),
    }
