"""The campaign page in the admin: the form without JSON, locked once started; its buttons, each
POST-only and checked per role; approval asked by the marketer and given by another person; the
progress figures the page polls; and the list, whose queries do not grow with its rows.

The tests after "through the other parts of issue 21" go through campaign_start,
campaign_approval and campaign_sending, which other parts of issue 21 implement: they pass once
those land."""
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from campaigns.campaign_admin import campaign_revision
from campaigns.models import Campaign, CampaignRecipient, CampaignStatus, RecipientOutcome
from campaigns.campaign_state import CampaignLocked, move_campaign
from contacts.models import LifecycleStage
from omni.models import AuditEntry
from omni.tests.admin_pages import change_form_data

from .conftest import make_contact

pytestmark = pytest.mark.django_db


def form_data(template, segment, owner, **overrides) -> dict:
    """What a marketer types in the add form: no JSON anywhere."""
    data = {
        "name": "Spring sale", "template": template.pk, "segment": segment.pk, "purpose": "marketing",
        "urgency": "low", "intent_key": "",
        # the channel plan as rows: email, then SMS if not opened within 2 days
        "plan": "own", "channel_1": "email", "fallback_1": "not_opened", "within_1_0": "2", "within_1_1": "days",
        "channel_2": "sms", "fallback_2": "failed",
        "scheduled_at_0": "", "scheduled_at_1": "", "local_time_passed": "send_now", "throttle_per_minute": "600",
        "expires_after_0": "6", "expires_after_1": "hours",
        "holdout_percent": "10", "test_percent": "20", "test_period_0": "4", "test_period_1": "hours",
        "test_metric": "clicks", "test_fallback": "control",
        "owner": owner.pk, "objective": "Sell the spring range",
        "lifecycle_stage": LifecycleStage.objects.get(key="trial").pk,
        "goal_event": "purchased", "goal_window_0": "7", "goal_window_1": "days",
        "max_bounce_rate": "5", "max_complaint_rate": "0.1", "max_opt_out_rate": "", "max_failure_rate": "",
        "min_engagement_rate": "", "auto_pause_min_sample": "200",
        "variants-TOTAL_FORMS": "2", "variants-INITIAL_FORMS": "0", "variants-MIN_NUM_FORMS": "0",
        "variants-MAX_NUM_FORMS": "1000",
        "variants-0-name": "A", "variants-0-template": template.pk, "variants-0-weight": "50",
        "variants-1-name": "B", "variants-1-template": template.pk, "variants-1-weight": "50",
    }
    return {**data, **overrides}


def test_a_marketer_builds_a_campaign_with_rows_durations_and_percentages(client, marketer, welcome_templates, segment):
    client.force_login(marketer)
    email = welcome_templates[0]

    response = client.post(reverse("admin:campaigns_campaign_add"), form_data(email, segment, marketer))

    assert response.status_code == 302, response.context["adminform"].form.errors
    campaign = Campaign.objects.get(name="Spring sale")
    assert campaign.channel_plan == [{"channel": "email", "fallback_after_seconds": 2 * 86400,
                                      "fallback_unless": "engaged"}, {"channel": "sms"}]
    assert campaign.expires_after == timedelta(hours=6) and campaign.test_period == timedelta(hours=4)
    assert campaign.goal_window == timedelta(days=7)
    assert campaign.max_bounce_rate == pytest.approx(0.05) and campaign.max_complaint_rate == pytest.approx(0.001)
    assert campaign.max_opt_out_rate is None
    assert (campaign.holdout_percent, campaign.test_percent) == (10, 20)
    assert [(v.name, v.weight, v.template_version_id) for v in campaign.variants.all()] == [("A", 50, None),
                                                                                            ("B", 50, None)]
    assert campaign.created_by == marketer and campaign.status == CampaignStatus.DRAFT


def test_the_default_plan_is_an_empty_plan(client, marketer, welcome_templates, segment):
    client.force_login(marketer)
    data = form_data(welcome_templates[0], segment, marketer, plan="default", **{"variants-TOTAL_FORMS": "0"})

    response = client.post(reverse("admin:campaigns_campaign_add"), data)

    assert response.status_code == 302
    assert Campaign.objects.get(name="Spring sale").channel_plan == []


def test_the_form_refuses_a_channel_the_template_has_not_and_a_share_over_100(client, marketer, welcome_templates,
                                                                              segment):
    client.force_login(marketer)
    sms_only = welcome_templates[1]
    data = form_data(sms_only, segment, marketer, channel_1="email", holdout_percent="120",
                     **{"variants-TOTAL_FORMS": "0"})

    response = client.post(reverse("admin:campaigns_campaign_add"), data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "has no Email variant" in errors["channel_1"][0]
    assert errors["holdout_percent"] == ["At most 100%."]
    assert not Campaign.objects.exists()


def test_the_list_shows_progress_in_a_fixed_number_of_queries(client, marketer, welcome_templates, segment,
                                                              django_assert_max_num_queries):
    client.force_login(marketer)
    for n in range(30):
        campaign = Campaign.objects.create(name=f"Campaign {n}", template=welcome_templates[0], segment=segment,
                                           owner=marketer, approval_requested_by=marketer)
        if n % 3 == 0:
            contact = make_contact(f"c{n}", consents=())
            CampaignRecipient.objects.create(campaign=campaign, contact=contact, outcome=RecipientOutcome.SKIPPED)
    url = reverse("admin:campaigns_campaign_changelist")
    client.get(url)  # warm the per-process caches (content types, permissions)

    with django_assert_max_num_queries(13):
        response = client.get(url)

    assert response.status_code == 200
    page = response.content.decode()
    assert page.count("omni-progress-mini") == 10 and "1 of 1 (100%)" in page
    assert "not started" in page


def test_the_list_filters_campaigns_awaiting_approval(client, marketer, draft, welcome_templates):
    Campaign.objects.filter(pk=draft.pk).update(approval_requested_by=marketer, approval_requested_at=draft.created_at)
    Campaign.objects.create(name="Quiet one", template=welcome_templates[0])
    client.force_login(marketer)

    page = client.get(reverse("admin:campaigns_campaign_changelist") + "?approval=awaiting").content.decode()

    assert "Spring sale" in page and "Quiet one" not in page


@pytest.mark.parametrize("name", ["start", "pause", "resume", "cancel", "clone", "test_send", "approval_request"])
def test_buttons_refuse_whoever_may_not_change_campaigns(client, approver, draft, name):
    client.force_login(approver)
    url = reverse(f"admin:campaigns_campaign_{name}", args=[draft.pk])

    assert client.post(url).status_code == 403
    assert not AuditEntry.objects.filter(action__startswith="campaign.").exists()


def test_approving_needs_the_approve_permission(client, marketer, draft):
    client.force_login(marketer)

    response = client.post(reverse("admin:campaigns_campaign_approval_approve", args=[draft.pk]))

    assert response.status_code == 403


@pytest.mark.parametrize("name", ["start", "pause", "resume", "clone", "test_send", "approval_request"])
def test_buttons_are_post_only(client, marketer, draft, name):
    client.force_login(marketer)
    assert client.get(reverse(f"admin:campaigns_campaign_{name}", args=[draft.pk])).status_code == 405


def test_cancel_asks_first(client, marketer, draft):
    client.force_login(marketer)

    response = client.get(reverse("admin:campaigns_campaign_cancel", args=[draft.pk]))

    assert response.status_code == 200
    assert "Yes, cancel the campaign" in response.content.decode()
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.DRAFT


def test_the_follow_up_form_asks_for_the_condition_and_the_delay(client, marketer, draft):
    client.force_login(marketer)
    url = reverse("admin:campaigns_campaign_follow_up", args=[draft.pk])

    page = client.get(url).content.decode()
    assert "Did not open" in page and "Did not click" in page and "Did not reach the goal" in page

    # a delay is required: nothing is created without it
    response = client.post(url, {"when": "not_opened", "after_0": "", "after_1": "days", "name": ""})
    assert response.status_code == 200 and response.context["form"].errors["after"]
    assert Campaign.objects.count() == 1


def test_the_demo_has_a_draft_campaign_with_two_variants_and_a_holdout(demo_logins):
    campaign = Campaign.objects.get(name="Spring offer (demo)")
    assert campaign.status == CampaignStatus.DRAFT and campaign.holdout_percent == 10
    assert campaign.segment.name == "Demo trial contacts" and campaign.owner.username == "marketer"
    assert [(v.name, v.template.key) for v in campaign.variants.all()] == [("Email", "welcome-email"),
                                                                          ("SMS", "welcome-sms")]
    # and it is ready to start, to the demo's contacts
    from campaigns.campaign_start import audience_count, start_problems

    assert start_problems(campaign) == [] and audience_count(campaign) >= 5


def test_the_demo_campaigns_page_saves_as_shown_its_plan_checked_against_every_variants_template(demo_logins,
                                                                                                   client):
    # given the demo campaign: an email variant and an SMS one, a plan of email then SMS
    campaign = Campaign.objects.get(name="Spring offer (demo)")
    client.force_login(campaign.owner)
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    page = change_form_data(client.get(url))

    # when the marketer saves it as it is, then with WhatsApp added to the plan
    saved = client.post(url, page)
    refused = client.post(reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
                          {**change_form_data(client.get(url)), "channel_3": "whatsapp"})

    # then the first saves (each variant sends on the plan's channels its template has), and the
    # second is refused: no variant's template has WhatsApp
    assert saved.status_code == 302, saved.context["adminform"].form.errors
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["channel_3"] == [
        "None of the templates 'welcome-email' v1, 'welcome-sms' v1 has a WhatsApp variant (they have: email, sms)."]


def test_the_progress_figures_the_page_polls(client, marketer, approver, draft, user_in):
    for n in range(4):
        CampaignRecipient.objects.create(campaign=draft, contact=make_contact(f"p{n}", consents=()),
                                         outcome=RecipientOutcome.HOLDOUT if n == 0 else RecipientOutcome.PENDING)
    url = reverse("admin:campaigns_campaign_progress", args=[draft.pk])
    client.force_login(approver)  # whoever may see the campaign

    figures = client.get(url).json()

    assert (figures["total"], figures["done"], figures["percent"], figures["status"]) == (4, 1, 25, "draft")
    assert {part["key"]: part["count"] for part in figures["segments"]}["held_out"] == 1
    client.force_login(user_in("nobody", None))
    assert client.get(url).status_code in (302, 403)


# --- through the other parts of issue 21 ------------------------------------------------------

def test_the_draft_page_shows_what_stops_it_its_approval_progress_and_buttons(client, marketer, welcome_templates):
    client.force_login(marketer)
    campaign = Campaign.objects.create(name="Unready", template=welcome_templates[0], created_by=marketer)

    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()

    assert 'id="campaign-problems"' in page
    assert 'id="campaign-approval"' in page
    assert "Not started: its audience is drawn from the segment when it starts." in page
    for button in ("campaign-start", "campaign-test_send", "campaign-clone", "campaign-cancel"):
        assert f'id="{button}"' in page
    assert 'id="campaign-pause"' not in page and 'id="campaign-follow_up"' not in page


def test_starting_an_unready_campaign_shows_why_and_starts_nothing(client, marketer, welcome_templates, settings):
    settings.OMNI_CAMPAIGN_APPROVAL_MIN_AUDIENCE = 10**6  # what stops it here is what it lacks, not approval
    client.force_login(marketer)
    campaign = Campaign.objects.create(name="Unready", template=welcome_templates[0], created_by=marketer)

    response = client.post(reverse("admin:campaigns_campaign_start", args=[campaign.pk]), follow=True)

    messages = [str(m) for m in response.context["messages"]]
    assert any(m.startswith("Unready was not started:") for m in messages), messages
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT and not campaign.recipients.exists()


def test_the_marketer_asks_another_person_approves_and_an_edit_resets_it(client, marketer, approver, draft,
                                                                         welcome_templates, segment, settings):
    settings.OMNI_CAMPAIGN_APPROVAL_MIN_AUDIENCE = 0
    make_contact("t1", email="t1@example.com", lifecycle_stage="trial")
    make_contact("t2", email="t2@example.com", lifecycle_stage="trial")
    page_url = reverse("admin:campaigns_campaign_change", args=[draft.pk])
    client.force_login(marketer)
    client.post(reverse("admin:campaigns_campaign_approval_request", args=[draft.pk]))

    # the requester cannot approve their own request, even holding the permission
    marketer.groups.add(Group.objects.get(name="Marketing approvers"))
    response = client.post(reverse("admin:campaigns_campaign_approval_approve", args=[draft.pk]), follow=True)
    assert any("someone else must give it" in str(m) for m in response.context["messages"])
    marketer.groups.remove(Group.objects.get(name="Marketing approvers"))

    # another person approves what they saw
    client.force_login(approver)
    page = client.get(page_url)
    digest = page.context["digest"]
    assert 'id="approve-campaign"' in page.content.decode()
    client.post(reverse("admin:campaigns_campaign_approval_approve", args=[draft.pk]), {"digest": digest})
    draft.refresh_from_db()
    assert draft.approved_by == approver
    assert "Approved version:" in client.get(page_url).content.decode()

    # an edit that changes what it sends resets the approval, and says so
    client.force_login(marketer)
    data = form_data(welcome_templates[1], segment, marketer, name="Spring sale", channel_1="sms", channel_2="",
                     revision_seen=campaign_revision(draft), **{"variants-TOTAL_FORMS": "0"})
    response = client.post(page_url, data, follow=True)
    assert any("approval request or approval was reset" in str(m) for m in response.context["messages"])
    draft.refresh_from_db()
    assert draft.approved_at is None


def test_a_started_campaign_is_locked(client, marketer, draft):
    move_campaign(draft, CampaignStatus.SENDING, action="campaign.started", actor=marketer)
    client.force_login(marketer)
    url = reverse("admin:campaigns_campaign_change", args=[draft.pk])

    page = client.get(url)

    form = page.context["adminform"].form
    assert "name" not in form.fields and "plan" not in form.fields
    text = page.content.decode()
    assert "Email" in text and 'id="campaign-pause"' in text and 'id="campaign-start"' not in text
    assert 'name="_save"' not in text
    client.post(url, {"name": "Renamed"})
    draft.refresh_from_db()
    assert draft.name == "Spring sale"


def test_an_approver_reads_the_draft_in_words(client, approver, draft):
    Campaign.objects.filter(pk=draft.pk).update(max_bounce_rate=0.05, expires_after=timedelta(hours=6))
    client.force_login(approver)

    page = client.get(reverse("admin:campaigns_campaign_change", args=[draft.pk]))

    text = page.content.decode()
    fields = page.context["adminform"].form.fields
    assert "plan" not in fields and "channel_1" not in fields
    assert "5%" in text and "6 hours" in text and "Email" in text
    assert 'name="_save"' not in text and 'id="campaign-start"' not in text


def test_an_edit_saved_after_a_start_committed_leaves_the_started_campaign_alone(rf, marketer, draft, welcome_templates,
                                                                                segment):
    campaign_admin = admin.site._registry[Campaign]
    request = rf.post(reverse("admin:campaigns_campaign_change", args=[draft.pk]))
    request.user = marketer
    edited = Campaign.objects.get(pk=draft.pk)
    form = campaign_admin.get_form(request, edited, change=True)(
        form_data(welcome_templates[0], segment, marketer, name="Renamed", revision_seen=campaign_revision(edited),
                  **{"variants-TOTAL_FORMS": "0"}),
        instance=edited)
    assert form.is_valid(), form.errors
    # the form was read as a draft; meanwhile the campaign starts
    move_campaign(draft, CampaignStatus.SENDING, action="campaign.started", fields={"started_at": draft.created_at})

    with pytest.raises(CampaignLocked, match="only a draft campaign can be edited"):
        campaign_admin.save_model(request, form.save(commit=False), form, change=True)

    draft.refresh_from_db()
    assert (draft.name, draft.status, draft.started_at) == ("Spring sale", CampaignStatus.SENDING, draft.created_at)


def test_posting_to_a_started_campaigns_page_changes_nothing_and_says_why(client, marketer, draft, welcome_templates,
                                                                         segment):
    started_at = draft.created_at
    move_campaign(draft, CampaignStatus.SENDING, action="campaign.started", fields={"started_at": started_at})
    client.force_login(marketer)

    response = client.post(reverse("admin:campaigns_campaign_change", args=[draft.pk]),
                           form_data(welcome_templates[1], segment, marketer, name="Renamed"), follow=True)

    assert [str(m) for m in response.context["messages"]] == [
        "Spring sale is sending: only a draft campaign can be edited, so nothing was saved."]
    draft.refresh_from_db()
    assert (draft.name, draft.status, draft.started_at, draft.template_id) == (
        "Spring sale", CampaignStatus.SENDING, started_at, welcome_templates[0].pk)
    assert not draft.variants.exists()


def test_an_edit_of_a_draft_saves_its_fields_and_the_plan_its_rows_make(client, marketer, draft, welcome_templates,
                                                                          segment):
    client.force_login(marketer)

    response = client.post(reverse("admin:campaigns_campaign_change", args=[draft.pk]),
                           form_data(welcome_templates[0], segment, marketer, name="Renamed", holdout_percent="5",
                                     revision_seen=campaign_revision(draft), **{"variants-TOTAL_FORMS": "0"}))

    assert response.status_code == 302
    draft.refresh_from_db()
    assert (draft.name, draft.holdout_percent, draft.status) == ("Renamed", 5, CampaignStatus.DRAFT)
    assert draft.channel_plan == [{"channel": "email", "fallback_after_seconds": 2 * 86400,
                                   "fallback_unless": "engaged"}, {"channel": "sms"}]


def test_the_draft_page_counts_its_audience_once(client, marketer, draft):
    client.force_login(marketer)
    url = reverse("admin:campaigns_campaign_change", args=[draft.pk])

    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200

    counts = [q["sql"] for q in queries.captured_queries
              if "COUNT(" in q["sql"].upper() and '"contacts_contact"' in q["sql"]]
    assert len(counts) == 1, counts
