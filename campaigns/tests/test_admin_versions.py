"""Journey versions in the admin: marketers publish changes and move contacts with actions, and
read every version on the journey's page, without typing JSON."""
import re

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from campaigns.actions import enroll_contact, publish_journey
from campaigns.models import JourneyStep
from omni import audit

from .conftest import make_contact, make_journey
from omni.tests.admin_pages import change_form_data

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:campaigns_journey_changelist")
# Session, user, permissions, the journey, its versions with their counts, the draft's steps,
# templates and template versions, each step form's selected template; on the theme (Unfold)
# its related-field widgets and the sidebar's administrators check add a few, still fixed; and
# whether the user has a two-factor authenticator (omni.middleware.TwoFactorMiddleware); the
# idle-timeout renewal of the session; the draft (its steps, their templates' versions), read
# once for every section of the page (campaigns.journey_page); the diagram: the versions to choose
# from, the contacts at each step, the steps run in the period; the change log: its versions' ids
# and their entries; the owner and lifecycle stage fields' choices.
CHANGE_PAGE_MAX_QUERIES = 28


@pytest.fixture
def staff(client, django_user_model, role_groups):
    """Logs the test client in as a staff user of one role group; returns the user."""

    def login(group_name: str):
        user = django_user_model.objects.create_user(username=group_name.lower().replace(" ", "-"),
                                                     password="not-used", is_staff=True)
        user.groups.add(Group.objects.get(name=group_name))
        client.force_login(user)
        return user

    return login


def run_action(client, action, journey):
    response = client.post(CHANGELIST, {"action": action, "_selected_action": [journey.pk]}, follow=True)
    assert response.status_code == 200
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


def test_a_marketer_publishes_changes_and_the_contacts_in_flight_stay_on_their_version(client, staff,
                                                                                      welcome_journey):
    # given a contact on version 1 and an edited draft
    marketer = staff("Marketers")
    enroll_contact(welcome_journey, make_contact("ann", email="ann@example.com"))
    JourneyStep.objects.filter(journey=welcome_journey, key="wait").update(config={"seconds": 120})

    # when
    messages = run_action(client, "publish_changes", welcome_journey)

    # then
    assert messages == [("success", "Welcome: version 2 published; new enrollments start on it. 1 contact(s) in the "
                                    "journey stay on their version until you move them (\"Move contacts to the "
                                    "latest version\").")]
    version = welcome_journey.versions.get(number=2)
    assert version.steps[1]["config"] == {"seconds": 120}
    assert audit.for_object(version).get(action="journey.published").actor_id == marketer.pk


def test_publishing_an_invalid_draft_shows_why(client, staff, welcome_journey):
    staff("Marketers")
    JourneyStep.objects.filter(journey=welcome_journey, key="opened").update(config={"check": "engaged", "step": "x"})

    messages = run_action(client, "publish_changes", welcome_journey)

    assert messages == [("error", "Welcome: changes not published. Condition step 'opened' checks step 'x', which "
                                  "is not a step of this journey.")]
    assert welcome_journey.versions.count() == 1


def test_a_marketer_moves_contacts_to_the_latest_version(client, staff, welcome_journey):
    marketer = staff("Marketers")
    ann = make_contact("ann", email="ann@example.com")
    enrollment = enroll_contact(welcome_journey, ann)
    JourneyStep.objects.filter(journey=welcome_journey, key="wait").update(config={"seconds": 120})
    publish_journey(welcome_journey)

    messages = run_action(client, "move_to_latest_version", welcome_journey)

    assert messages == [("success", "Welcome: 1 contact(s) moved to version 2.")]
    enrollment.refresh_from_db()
    assert enrollment.journey_version.number == 2
    assert audit.for_object(enrollment).get(action="journey.enrollment_moved").actor_id == marketer.pk


def test_moving_is_refused_with_the_missing_steps_named(client, staff, welcome_journey):
    staff("Marketers")
    enroll_contact(welcome_journey, make_contact("ann", email="ann@example.com"))
    JourneyStep.objects.filter(journey=welcome_journey, key="welcome-email").update(key="hello-email")
    JourneyStep.objects.filter(journey=welcome_journey, key="opened").update(
        config={"check": "engaged", "step": "hello-email"})
    publish_journey(welcome_journey)

    messages = run_action(client, "move_to_latest_version", welcome_journey)

    assert messages == [("error", "Welcome: Nobody was moved: version 2 has no step 'welcome-email' (1 contact on "
                                  "version 1). Publish a version that keeps these steps, or let those contacts "
                                  "finish on their version.")]


@pytest.mark.parametrize("group_name", ["Marketers", "Compliance"])
def test_the_journey_page_lists_every_version_in_words_in_a_fixed_number_of_queries(
    client, staff, welcome_journey, group_name, django_assert_max_num_queries,
):
    staff(group_name)
    url = reverse("admin:campaigns_journey_change", args=[welcome_journey.pk])
    client.get(url)  # warms the per-process caches (content types) the later pages rely on
    with django_assert_max_num_queries(CHANGE_PAGE_MAX_QUERIES) as with_one_version:
        client.get(url)

    # given ten versions
    for seconds in range(61, 70):
        JourneyStep.objects.filter(journey=welcome_journey, key="wait").update(config={"seconds": seconds})
        publish_journey(welcome_journey)

    # when
    with django_assert_max_num_queries(CHANGE_PAGE_MAX_QUERIES) as with_ten_versions:
        page = client.get(url)

    # then each version reads as steps, not JSON, the draft says whether it differs, and ten
    # versions cost what one did
    # (the diagram above the form says the drawn version and the draft in words too: left out here)
    html = re.sub(r'<section id="journey-diagram".*?</section>', "", page.content.decode(), flags=re.S)
    assert page.status_code == 200
    # (ten versions, and the draft in the builder)
    assert html.count("welcome-email: send welcome-email v1 by email") == 11
    assert "wait: wait 69 seconds" in html and "wait: wait 61 seconds" in html
    assert "opened: if welcome-email engaged, else go to welcome-sms → done" in html
    assert "New enrollments start on version 10. The draft below is the same as this version." in html
    assert len(with_ten_versions) == len(with_one_version)


def test_a_wait_of_1h_in_the_step_form_is_refused_naming_the_setting_not_a_500(client, staff, welcome_journey):
    # given a marketer editing the draft's wait step in the builder
    staff("Marketers")
    step = JourneyStep.objects.get(journey=welcome_journey, key="wait")
    url = reverse("admin:campaigns_journey_step_change", args=[welcome_journey.pk, step.pk])
    welcome_journey.refresh_from_db()

    # when
    response = client.post(url, {"revision": welcome_journey.draft_revision, "duration_0": "1h",
                                 "duration_1": "hours", "next": "opened"})

    # then the form comes back with the error on the duration, and the draft is unchanged
    assert response.status_code == 200
    assert response.context["form"].errors["duration"] == ["Enter a whole number."]
    assert JourneyStep.objects.get(journey=welcome_journey, key="wait").config == {"seconds": 60}


def test_activating_a_segment_triggered_journey_without_its_segment_shows_why_it_was_not_activated(client, staff, welcome_templates):
    from campaigns.models import JourneyStatus, StepKind

    staff("Marketers")
    journey = make_journey(name="Segment", slug="segment", trigger_type="segment")
    JourneyStep.objects.create(journey=journey, key="hello", position=1, kind=StepKind.SEND,
                               template=welcome_templates[0], channel_plan=[{"channel": "email"}])

    messages = run_action(client, "activate", journey)

    assert len(messages) == 1 and messages[0][0] == "error"
    assert messages[0][1].startswith("Segment was not activated: The trigger 'Entering a segment' needs a segment")
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.DRAFT


def test_an_edit_saved_after_the_journey_paused_itself_keeps_the_pause(rf, client, staff, welcome_journey):
    # given a marketer's edit of the live journey's description, read while it ran
    from django.contrib import admin

    from campaigns.actions import pause_journey
    from campaigns.models import Journey, JourneyStatus

    assert welcome_journey.status == JourneyStatus.ACTIVE
    marketer = staff("Marketers")
    page = client.get(reverse("admin:campaigns_journey_change", args=[welcome_journey.pk]))
    journey_admin = admin.site._registry[Journey]
    request = rf.post(reverse("admin:campaigns_journey_change", args=[welcome_journey.pk]))
    request.user = marketer
    edited = Journey.objects.get(pk=welcome_journey.pk)
    form = journey_admin.get_form(request, edited, change=True)(
        {**change_form_data(page), "description": "Now with a coupon"}, instance=edited)
    assert form.is_valid(), form.errors
    # meanwhile the watch pauses it
    pause_journey(Journey.objects.get(pk=welcome_journey.pk), reason="Bounce rate 9% over 5%",
                  action="journey.auto_paused")

    journey_admin.save_model(request, form.save(commit=False), form, change=True)

    welcome_journey.refresh_from_db()
    assert (welcome_journey.description, welcome_journey.status, welcome_journey.paused_reason) == (
        "Now with a coupon", JourneyStatus.PAUSED, "Bounce rate 9% over 5%")
