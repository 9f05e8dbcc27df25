"""The diagram on the journey page: the counts match the rows, the page draws the live version
and the draft with its changes, a node links to the contacts at its step, the counts endpoint
answers JSON to those who may view the journey, and the page's queries do not grow with its steps."""
import re
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from campaigns.tests.conftest import make_journey
from campaigns import step_counts
from campaigns.actions import activate_journey, publish_journey
from campaigns.diagram_admin import enrollments_at_step_url
from campaigns.models import Enrollment, EnrollmentState, Journey, JourneyStep, JourneyStepVisit, StepKind
from contacts.models import Contact

from .conftest import make_contact

pytestmark = pytest.mark.django_db
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def log_in_as(client, django_user_model, role_groups):
    """Logs the test client in as a staff user of one role group (or of none); returns the user."""

    def log_in(group_name: str = ""):
        user = django_user_model.objects.create_user(username=group_name.lower().replace(" ", "-") or "nobody",
                                                     password="not-used", is_staff=True)
        if group_name:
            user.groups.add(Group.objects.get(name=group_name))
        client.force_login(user)
        return user

    return log_in


def place(journey, contact, step_key, state=EnrollmentState.ACTIVE, version=None) -> Enrollment:
    """An enrollment of `contact` at `step_key` (written as the tick leaves it)."""
    return Enrollment.objects.create(journey=journey, contact=contact, journey_version=version or journey.live_version,
                                     current_step_key=step_key, state=state)


def visit(enrollment, step_key, at, number) -> JourneyStepVisit:
    return JourneyStepVisit.objects.create(enrollment=enrollment, journey=enrollment.journey, step_key=step_key,
                                           step_kind=StepKind.WAIT, visit_number=number,
                                           journey_version=enrollment.journey_version, visited_at=at)


def drawings(html: str) -> dict[str, ET.Element]:
    """The page's SVG images by id, parsed (each must be valid XML)."""
    parsed = (ET.fromstring(markup) for markup in re.findall(r"<svg .*?</svg>", html, re.S))
    return {svg.get("id"): svg for svg in parsed}


def nodes(svg) -> dict[str, ET.Element]:
    return {g.get("data-step"): g for g in svg.iter(f"{SVG}g") if g.get("class") == "journey-node"}


def texts(element) -> list[str]:
    return ["".join(text.itertext()) for text in element.iter(f"{SVG}text")]


# --- the counts ---------------------------------------------------------------------------------

def test_at_a_step_counts_live_enrollments_by_version_and_passed_through_counts_visits_in_the_period(
        welcome_journey, now):
    # given contacts on version 1: three waiting (one paused), one at the condition, one finished
    v1 = welcome_journey.live_version
    ann, bob, cy, dee, eve, fay = (make_contact(name, consents=())
                                   for name in ("ann", "bob", "cy", "dee", "eve", "fay"))
    waiting = place(welcome_journey, ann, "wait")
    place(welcome_journey, bob, "wait")
    place(welcome_journey, cy, "wait", EnrollmentState.PAUSED)
    place(welcome_journey, dee, "opened")
    finished = place(welcome_journey, eve, "wait", EnrollmentState.COMPLETED)
    # and one on version 2
    JourneyStep.objects.filter(journey=welcome_journey, key="wait").update(config={"seconds": 120})
    v2 = publish_journey(welcome_journey)
    place(welcome_journey, fay, "wait", version=v2)
    # and steps run: two emails today, one 29 days ago, one 31 days ago (outside 30 days)
    visit(waiting, "welcome-email", now - timedelta(hours=1), 1)
    visit(finished, "welcome-email", now - timedelta(hours=2), 1)
    visit(finished, "wait", now - timedelta(days=29), 2)
    visit(finished, "opened", now - timedelta(days=31), 3)
    # and another journey's visit, which is not this journey's
    other = make_journey(name="Other", slug="other", trigger_event="x")
    visit(place(other, ann, "wait"), "welcome-email", now, 1)

    # then
    assert step_counts.contacts_at_steps([v1.pk, v2.pk]) == {v1.pk: {"wait": 3, "opened": 1}, v2.pk: {"wait": 1}}
    assert step_counts.visits_by_step(welcome_journey, now) == {"welcome-email": 2, "wait": 1}
    assert step_counts.visits_by_step(welcome_journey, now, 1) == {"welcome-email": 2}
    assert step_counts.visits_by_step(welcome_journey, now, 90) == {"welcome-email": 2, "wait": 1, "opened": 1}


@pytest.mark.parametrize("given, days", [("7", 7), ("90", 90), ("abc", 30), ("-1", 30), ("5", 30), (None, 30)])
def test_a_period_other_than_those_offered_counts_the_default_30_days(given, days):
    assert step_counts.period_days(given) == days


# --- the counts endpoint ------------------------------------------------------------------------

def test_the_counts_endpoint_answers_json_for_every_step_to_those_who_may_view_the_journey(
        client, log_in_as, welcome_journey, now):
    ann = make_contact("ann", consents=())
    visit(place(welcome_journey, ann, "wait"), "welcome-email", now - timedelta(days=3), 1)
    url = reverse("admin:campaigns_journey_diagram_counts", args=[welcome_journey.pk])

    # anonymous: to the login page
    assert client.get(url).status_code == 302
    # a staff user who may not view journeys: refused
    log_in_as()
    assert client.get(url).status_code == 403
    # compliance staff may view journeys
    log_in_as("Compliance")
    response = client.get(url, {"version": 1, "period": 7})
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response.json() == {
        "version": 1, "period_days": 7,
        "at_step": {"welcome-email": 0, "wait": 1, "opened": 0, "welcome-sms": 0, "done": 0},
        "passed": {"welcome-email": 1, "wait": 0, "opened": 0, "welcome-sms": 0, "done": 0},
    }
    # nonsense parameters: the live version, over 30 days
    assert client.get(url, {"version": "x", "period": "y"}).json()["period_days"] == 30
    assert client.get(reverse("admin:campaigns_journey_diagram_counts", args=[999999])).status_code == 404


# --- the page -----------------------------------------------------------------------------------

def test_the_page_draws_the_live_version_with_counts_and_the_draft_with_its_changes(
        client, log_in_as, welcome_journey, now):
    # given a contact waiting on the live version, and a draft that changed the wait, lost the
    # SMS and gained a survey
    log_in_as("Marketers")
    ann = make_contact("ann", consents=())
    enrollment = place(welcome_journey, ann, "wait")
    visit(enrollment, "welcome-email", now - timedelta(hours=1), 1)
    JourneyStep.objects.filter(journey=welcome_journey, key="wait").update(config={"seconds": 120})
    JourneyStep.objects.filter(journey=welcome_journey, key="welcome-sms").delete()
    JourneyStep.objects.create(journey=welcome_journey, key="survey", position=6, kind=StepKind.EXIT)

    # when the marketer opens the journey, showing where Ann stands
    response = client.get(reverse("admin:campaigns_journey_change", args=[welcome_journey.pk]),
                          {"contact": ann.pk})

    # then the live version is drawn with every step, its counts, and links to the contacts at each step
    assert response.status_code == 200
    html = response.content.decode()
    svgs = drawings(html)
    live, draft = svgs[f"journey-{welcome_journey.pk}-v1"], svgs[f"journey-{welcome_journey.pk}-draft"]
    live_nodes = nodes(live)
    assert list(live_nodes) == ["welcome-email", "wait", "opened", "welcome-sms", "done"]
    assert "1 here now · 0 passed through" in texts(live_nodes["wait"])
    assert "0 here now · 1 passed through" in texts(live_nodes["welcome-email"])
    assert live_nodes["wait"].find(f"{SVG}a").get("href") == enrollments_at_step_url(
        welcome_journey, welcome_journey.live_version, "wait")
    assert live_nodes["welcome-sms"].get("data-mark") == "removed"
    # with Ann's step highlighted
    assert "the contact is here" in texts(live_nodes["wait"])
    assert "Ann is at step wait of version 1." in html
    # and the draft beside it, with its changes marked
    draft_nodes = nodes(draft)
    assert list(draft_nodes) == ["welcome-email", "wait", "opened", "done", "survey"]
    assert draft_nodes["wait"].get("data-mark") == "changed"
    assert draft_nodes["survey"].get("data-mark") == "added"
    assert draft_nodes["welcome-email"].get("data-mark") is None
    assert "removed: welcome-sms" in html
    # each drawing is an image named for screen readers, followed by its steps in words
    assert live.get("role") == "img" and live.find(f"{SVG}title").text == "Welcome, version 1 (live)"
    at_wait = escape(enrollments_at_step_url(welcome_journey, welcome_journey.live_version, "wait"))
    assert f'href="{at_wait}">wait: wait 1 minute</a>: <span data-at-step="wait">1</span> here now' in html
    assert "wait: wait 2 minutes</a> (changed)." in html  # the draft's steps link to their forms
    # the counts refresh from the endpoint
    counts = reverse("admin:campaigns_journey_diagram_counts", args=[welcome_journey.pk])
    assert f"{counts}?version=1&amp;period=30" in html
    assert "campaigns/journey_diagram.js" in html


def test_an_earlier_version_can_be_drawn_and_bad_choices_are_ignored(client, log_in_as, welcome_journey):
    log_in_as("Marketers")
    JourneyStep.objects.filter(journey=welcome_journey, key="wait").update(config={"seconds": 120})
    publish_journey(welcome_journey)
    url = reverse("admin:campaigns_journey_change", args=[welcome_journey.pk])

    earlier = client.get(url, {"version": 1})
    nonsense = client.get(url, {"version": "x", "period": "y", "contact": "z"})
    nobody = client.get(url, {"contact": 999999})

    assert f"journey-{welcome_journey.pk}-v1" in drawings(earlier.content.decode())
    assert "Version 1, an earlier version" in earlier.content.decode()
    assert nonsense.status_code == 200 and f"journey-{welcome_journey.pk}-v2" in drawings(nonsense.content.decode())
    assert "The contact to show is not a contact&#x27;s id." in nonsense.content.decode()
    assert "Contact 999999 is not in this journey now." in nobody.content.decode()


def test_a_nodes_link_lists_the_contacts_at_its_step(client, log_in_as, welcome_journey):
    log_in_as("Marketers")
    at_wait = place(welcome_journey, make_contact("ann", consents=()), "wait")
    place(welcome_journey, make_contact("bob", consents=()), "opened")

    response = client.get(enrollments_at_step_url(welcome_journey, welcome_journey.live_version, "wait"))

    assert response.status_code == 200  # not a redirect to "?e=1" for an unknown filter
    assert list(response.context["cl"].result_list) == [at_wait]


def journey_of(steps: int, email_template, suffix: str) -> Journey:
    """An active journey of an email and `steps` - 1 waits, with a contact at every step and a visit to each."""
    journey = make_journey(name=f"Long {suffix}", slug=f"long-{suffix}", trigger_event="signed_up")
    JourneyStep.objects.create(journey=journey, key="hello", position=0, kind=StepKind.SEND, template=email_template,
                               channel_plan=[{"channel": "email"}])
    for position in range(1, steps):
        JourneyStep.objects.create(journey=journey, key=f"wait-{position}", position=position, kind=StepKind.WAIT,
                                   config={"seconds": 60 * position})
    activate_journey(journey)
    for index, step in enumerate(journey.live_version.steps):
        enrollment = place(journey, make_contact(f"{suffix}-{index}", consents=()), step["key"])
        visit(enrollment, step["key"], enrollment.entered_at, 1)
    # and a draft edit, so that the draft is drawn with its changes
    JourneyStep.objects.filter(journey=journey, key="wait-1").update(config={"seconds": 30})
    return journey


def test_the_pages_queries_do_not_grow_with_its_steps(client, log_in_as, welcome_templates):
    log_in_as("Marketers")
    short, long = journey_of(3, welcome_templates[0], "short"), journey_of(15, welcome_templates[0], "long")
    client.get(reverse("admin:campaigns_journey_change", args=[short.pk]))  # warms per-process caches

    counted = {}
    for journey in (short, long):
        ann = Contact.objects.get(external_id=f"{journey.slug.removeprefix('long-')}-1")
        with CaptureQueriesContext(connection) as queries:
            response = client.get(reverse("admin:campaigns_journey_change", args=[journey.pk]), {"contact": ann.pk})
        assert response.status_code == 200
        assert len(nodes(drawings(response.content.decode())[f"journey-{journey.pk}-v1"])) == len(
            journey.live_version.steps)
        counted[journey.slug] = len(queries)

    assert counted["long-long"] == counted["long-short"], counted


# --- PostgreSQL reads the counts from their indexes ---------------------------------------------

def plan_of(sql: str, params) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(line for (line,) in cursor.fetchall())


@pytest.mark.postgres
def test_postgresql_counts_the_contacts_at_each_step_on_the_enrollment_at_step_index(welcome_journey, now):
    # given many enrollments, most of them long finished, and their visits: a few in this
    # journey, most in others
    version = welcome_journey.live_version
    others = [make_journey(name=f"Other {n}", slug=f"other-{n}", trigger_event="x") for n in range(5)]
    first = Contact.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    Contact.objects.bulk_create([Contact(external_id=f"many-{n}", first_name="Many") for n in range(6000)],
                                batch_size=2000)
    contacts = list(Contact.objects.filter(pk__gt=first).values_list("pk", flat=True))
    keys = [step["key"] for step in version.steps]
    Enrollment.objects.bulk_create([
        Enrollment(journey=welcome_journey, contact_id=contact_id, journey_version=version,
                   current_step_key=keys[n % len(keys)],
                   state=EnrollmentState.ACTIVE if n % 20 == 0 else EnrollmentState.COMPLETED)
        for n, contact_id in enumerate(contacts)], batch_size=2000)
    Enrollment.objects.bulk_create([
        Enrollment(journey=journey, contact_id=contact_id, state=EnrollmentState.COMPLETED)
        for journey in others for contact_id in contacts[:2000]], batch_size=2000)
    JourneyStepVisit.objects.bulk_create([
        JourneyStepVisit(enrollment_id=enrollment_id, journey_id=journey_id, journey_version_id=version_id,
                         step_key=keys[enrollment_id % len(keys)], step_kind=StepKind.WAIT, visit_number=1,
                         visited_at=now - timedelta(days=enrollment_id % 60))
        for enrollment_id, journey_id, version_id in Enrollment.objects.filter(
            contact_id__in=contacts).values_list("pk", "journey_id", "journey_version_id")], batch_size=2000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE campaigns_enrollment, campaigns_journeystepvisit")

    # when the diagram counts
    with CaptureQueriesContext(connection) as at_step:
        counts = step_counts.contacts_at_steps([version.pk])
    with CaptureQueriesContext(connection) as passed:
        step_counts.visits_by_step(welcome_journey, now)

    # then each count is one query, read from its index
    assert sum(counts[version.pk].values()) == 300
    (at_step_query,), (passed_query,) = at_step.captured_queries, passed.captured_queries
    at_step_plan = plan_of(at_step_query["sql"], None)
    assert "enrollment_at_step" in at_step_plan, at_step_plan
    passed_plan = plan_of(passed_query["sql"], None)
    assert "visit_journey_step" in passed_plan, passed_plan
