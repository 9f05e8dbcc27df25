"""The Start button and the campaign's page around a start in the background: the button answers
at once; the page, while the campaign starts, says since when and asked for by whom, with a bar
that has no figures yet and polls for the change, in a fixed number of queries; once started it
shows the start's summary; after a refusal, why; the list says "Starting"; and a real worker
takes the start the button asked for."""
import pytest
from django.urls import reverse

from campaigns.campaign_start_requests import run_requested_start
from campaigns.models import Campaign, CampaignRecipient, CampaignStatus
from campaigns.tasks import start_campaign_task

from .conftest import make_contact

pytestmark = pytest.mark.django_db


@pytest.fixture
def trial_contacts(db):
    """Three of the draft's audience (its segment: trial users)."""
    return [make_contact(f"t{n}", email=f"t{n}@example.com", lifecycle_stage="trial") for n in range(3)]


def press_start(client, campaign, django_capture_on_commit_callbacks):
    """POST the Start button; the hand-off to the workers is captured, not run (no worker here)."""
    with django_capture_on_commit_callbacks() as hand_offs:
        response = client.post(reverse("admin:campaigns_campaign_start", args=[campaign.pk]), follow=True)
    return response, hand_offs


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def page_of(client, campaign) -> str:
    return client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()


def test_the_start_button_answers_at_once_and_the_page_shows_the_start_under_way(
        client, marketer, draft, trial_contacts, django_capture_on_commit_callbacks):
    client.force_login(marketer)

    response, hand_offs = press_start(client, draft, django_capture_on_commit_callbacks)

    assert messages_of(response) == ["Spring sale is starting: the audience snapshot is being taken; this page shows "
                                     "when it has started."]
    assert len(hand_offs) == 1 and not CampaignRecipient.objects.exists()
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.STARTING
    page = response.content.decode()
    assert "Progress: starting" in page
    assert 'id="campaign-starting"' in page and 'data-reload-unless-status="starting"' in page
    assert 'data-progress-url="' + reverse("admin:campaigns_campaign_progress", args=[draft.pk]) in page
    assert "omni-progress-indeterminate" in page and 'aria-valuenow' not in page.split('id="campaign-starting"')[1][:600]
    assert "Starting, asked for by mara at " in page
    for absent in ('id="campaign-start"', 'id="campaign-pause"', 'name="_save"', 'id="campaign-problems"'):
        assert absent not in page, absent
    assert 'id="campaign-cancel"' in page  # a start asked for by mistake can be withdrawn
    figures = client.get(reverse("admin:campaigns_campaign_progress", args=[draft.pk])).json()
    assert (figures["status"], figures["status_label"]) == ("starting", "Starting")


def test_a_second_click_while_starting_is_refused_as_already_starting(
        client, marketer, draft, trial_contacts, django_capture_on_commit_callbacks):
    client.force_login(marketer)
    press_start(client, draft, django_capture_on_commit_callbacks)

    response, hand_offs = press_start(client, draft, django_capture_on_commit_callbacks)

    assert messages_of(response) == ["Spring sale was not started: It is already starting: its audience snapshot is "
                                     "being taken, and its page shows when it has started."]
    assert hand_offs == []


def test_the_page_while_starting_takes_a_fixed_number_of_queries(
        client, marketer, draft, trial_contacts, django_capture_on_commit_callbacks, django_assert_max_num_queries):
    client.force_login(marketer)
    press_start(client, draft, django_capture_on_commit_callbacks)
    url = reverse("admin:campaigns_campaign_change", args=[draft.pk])
    client.get(url)  # warm the per-process caches (content types, permissions)

    with django_assert_max_num_queries(27):
        response = client.get(url)

    assert response.status_code == 200 and 'id="campaign-starting"' in response.content.decode()


def test_once_started_the_page_shows_the_new_status_and_what_the_start_did(
        client, marketer, draft, trial_contacts, django_capture_on_commit_callbacks):
    client.force_login(marketer)
    press_start(client, draft, django_capture_on_commit_callbacks)

    run_requested_start(draft.pk)  # the worker

    page = page_of(client, draft)
    assert "Progress: sending" in page and 'id="campaign-starting"' not in page
    assert 'id="campaign-start-summary"' in page
    assert "(asked for by mara): 3 in the audience; 3 to send." in page
    assert 'id="campaign-pause"' in page and 'id="campaign-progress-bar"' in page


def test_after_a_refused_start_the_page_says_why_until_the_next_request(
        client, marketer, draft, trial_contacts, settings, django_capture_on_commit_callbacks):
    settings.OMNI_CAMPAIGN_APPROVAL_MIN_AUDIENCE = 3
    client.force_login(marketer)
    press_start(client, draft, django_capture_on_commit_callbacks)
    make_contact("t9", email="t9@example.com", lifecycle_stage="trial")  # the audience grew meanwhile

    run_requested_start(draft.pk)

    page = page_of(client, draft)
    assert "Progress: draft" in page and 'id="campaign-start-refused"' in page
    refused_section = page.split('id="campaign-start-refused"')[1].split("</section>")[0]
    assert "Its start, asked for by mara at " in refused_section and "did not happen: it is a draft again" in \
        refused_section
    # The approval it still needs is listed once, under what stops it now.
    assert "Why: what still stops it, listed below." in refused_section
    problems_section = page.split('id="campaign-problems"')[1].split("</section>")[0]
    assert "approv" in problems_section and "approv" not in refused_section
    assert 'id="campaign-start"' in page


def test_the_list_says_starting(client, marketer, draft, trial_contacts, django_capture_on_commit_callbacks):
    client.force_login(marketer)
    press_start(client, draft, django_capture_on_commit_callbacks)

    page = client.get(reverse("admin:campaigns_campaign_changelist")).content.decode()
    filtered = client.get(reverse("admin:campaigns_campaign_changelist") + "?status__exact=starting")

    assert "Starting" in page and "starting: taking the audience snapshot" in page
    assert [c.pk for c in filtered.context["cl"].result_list] == [draft.pk]
    assert Campaign.objects.get(pk=draft.pk).status == CampaignStatus.STARTING


@pytest.mark.celery_worker
def test_a_real_worker_takes_the_start_the_button_asked_for(client, marketer, draft, trial_contacts, celery_worker,
                                                             finished_tasks):
    client.force_login(marketer)

    client.post(reverse("admin:campaigns_campaign_start", args=[draft.pk]))
    finished_tasks.wait_for(start_campaign_task)

    assert finished_tasks.args_of(start_campaign_task) == [(draft.pk,)]
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.SENDING and draft.start_summary["audience"] == 3
    assert "Progress: sending" in page_of(client, draft)
