"""A campaign's approval: a marketing campaign to more than OMNI_CAMPAIGN_APPROVAL_MIN_AUDIENCE
contacts needs a marketing approver's yes (not the requester's), for the campaign as it is; an
edit resets it; the start checks it again; every step and refusal audited."""
from datetime import UTC, datetime, timedelta

import pytest

from campaigns import campaign_approval
from campaigns.campaign_start import CampaignNotReady, start_campaign
from campaigns.models import CampaignStatus, CampaignVariant
from contacts.models import Segment
from omni.lib import approval
from omni.models import AuditEntry
from templates.actions import publish_template

from .test_campaign_start import bulk_contacts, make_campaign

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 14, 12, 0, tzinfo=UTC)


@pytest.fixture
def big_campaign(welcome_templates, marketer, settings):
    """A marketing campaign to 3 contacts, with approval needed above 2."""
    settings.OMNI_CAMPAIGN_APPROVAL_MIN_AUDIENCE = 2
    bulk_contacts(3)
    return make_campaign(welcome_templates[0], Segment.objects.create(name="Everyone", definition={}),
                         owner=marketer)


def actions_of(campaign) -> list[str]:
    return list(AuditEntry.objects.filter(object_type="campaigns.campaign", object_id=str(campaign.pk))
                .order_by("id").values_list("action", flat=True))


def test_approval_is_needed_only_for_marketing_above_the_minimum_audience(welcome_templates, settings):
    bulk_contacts(3)
    campaign = make_campaign(welcome_templates[0], Segment.objects.create(name="Everyone", definition={}))

    settings.OMNI_CAMPAIGN_APPROVAL_MIN_AUDIENCE = 3
    assert not campaign_approval.approval_needed(campaign)
    assert campaign_approval.approval_state(campaign).status == "not_needed"
    settings.OMNI_CAMPAIGN_APPROVAL_MIN_AUDIENCE = 2
    assert campaign_approval.approval_needed(campaign)
    assert campaign_approval.approval_state(campaign).status == "needed"
    campaign.purpose = "informational"
    assert not campaign_approval.approval_needed(campaign)


def test_a_campaign_at_the_minimum_starts_without_approval(welcome_templates, settings):
    settings.OMNI_CAMPAIGN_APPROVAL_MIN_AUDIENCE = 3
    bulk_contacts(3)
    campaign = make_campaign(welcome_templates[0], Segment.objects.create(name="Everyone", definition={}))

    assert start_campaign(campaign, actor=None, now=NOW).audience == 3


def test_start_is_refused_without_approval_and_the_refusal_is_audited(big_campaign, marketer):
    with pytest.raises(CampaignNotReady) as refused:
        start_campaign(big_campaign, actor=marketer, now=NOW)

    assert refused.value.problems == [
        "Campaign 'Summer sale' needs approval before it runs: request approval, then a marketing approver "
        "(someone other than the requester) approves it."]
    big_campaign.refresh_from_db()
    assert big_campaign.status == CampaignStatus.DRAFT and not big_campaign.recipients.exists()
    entry = AuditEntry.objects.get(action="campaign.approval_refused")
    assert (entry.reason, entry.data["step"], entry.actor_id) == ("not_approved", "start", marketer.pk)


def test_approval_is_refused_to_its_requester_and_given_by_an_approver_then_the_campaign_starts(
        big_campaign, marketer, approver):
    campaign_approval.request_approval(big_campaign, actor=marketer)
    with pytest.raises(CampaignNotReady, match="awaits approval, requested by mara"):
        start_campaign(big_campaign, actor=marketer, now=NOW)

    with pytest.raises(approval.ApprovalRefused) as not_allowed:
        campaign_approval.approve(big_campaign, actor=marketer)
    assert not_allowed.value.reason == approval.NOT_ALLOWED
    campaign_approval.approve(big_campaign, actor=approver,
                              seen_digest=campaign_approval.campaign_digest(big_campaign))

    assert big_campaign.approved_by_id == approver.pk
    assert campaign_approval.approval_state(big_campaign).status == "approved"
    summary = start_campaign(big_campaign, actor=marketer, now=NOW)
    assert summary.audience == 3
    assert actions_of(big_campaign) == ["campaign.approval_requested", "campaign.approval_refused",
                                        "campaign.approval_refused", "campaign.approved", "campaign.started"]


def test_an_approver_cannot_approve_their_own_request(big_campaign, approver, user_in):
    campaign_approval.request_approval(big_campaign, actor=approver)

    with pytest.raises(approval.ApprovalRefused) as refused:
        campaign_approval.approve(big_campaign, actor=approver)

    assert refused.value.reason == approval.OWN_REQUEST
    assert AuditEntry.objects.get(action="campaign.approval_refused").reason == "own_request"
    campaign_approval.approve(big_campaign, actor=user_in("second", "Marketing approvers"))
    assert big_campaign.approved_at is not None


def test_a_page_opened_before_an_edit_cannot_approve_what_the_edit_made(big_campaign, marketer, approver):
    campaign_approval.request_approval(big_campaign, actor=marketer)
    seen = campaign_approval.campaign_digest(big_campaign)
    big_campaign.holdout_percent = 10
    big_campaign.save()
    campaign_approval.request_approval(big_campaign, actor=marketer)

    with pytest.raises(approval.ApprovalRefused) as refused:
        campaign_approval.approve(big_campaign, actor=approver, seen_digest=seen)

    assert refused.value.reason == approval.CHANGED_SINCE_SEEN


@pytest.mark.parametrize("edit", ["holdout", "variant", "schedule", "segment", "goal_event", "goal_window"])
def test_an_edit_resets_the_approval_and_the_start_is_refused_until_approved_again(
        big_campaign, marketer, approver, welcome_templates, edit):
    campaign_approval.request_approval(big_campaign, actor=marketer)
    campaign_approval.approve(big_campaign, actor=approver)

    if edit == "holdout":
        big_campaign.holdout_percent = 5
        big_campaign.save()
    elif edit == "variant":
        CampaignVariant.objects.create(campaign=big_campaign, name="B", template=welcome_templates[0], weight=10)
    elif edit == "schedule":
        big_campaign.scheduled_at = NOW + timedelta(days=1)
        big_campaign.save()
    elif edit in ("goal_event", "goal_window"):
        # The goal decides the goal metric's winner and whom a "not converted" follow-up reaches.
        setattr(big_campaign, edit, "signed_up" if edit == "goal_event" else timedelta(days=30))
        big_campaign.save()
    else:
        big_campaign.segment.definition = {"match": "any", "filters": []}  # the same people, another audience
        big_campaign.segment.save()
    assert campaign_approval.reset_if_changed(big_campaign, actor=marketer)

    assert (big_campaign.approved_at, big_campaign.approval_requested_at) == (None, None)
    reset = AuditEntry.objects.get(action="campaign.approval_reset")
    assert (reset.data["was"], reset.actor_id) == ("approval", marketer.pk)
    assert campaign_approval.approval_state(big_campaign).status == "reset"
    with pytest.raises(CampaignNotReady, match="needs approval before it runs"):
        start_campaign(big_campaign, actor=marketer, now=NOW)
    campaign_approval.request_approval(big_campaign, actor=marketer)
    campaign_approval.approve(big_campaign, actor=approver)
    assert start_campaign(big_campaign, actor=marketer, now=NOW).audience == 3


def test_an_edit_that_changes_nothing_keeps_the_approval(big_campaign, marketer, approver):
    campaign_approval.request_approval(big_campaign, actor=marketer)
    campaign_approval.approve(big_campaign, actor=approver)
    big_campaign.name = "Summer sale (renamed)"
    big_campaign.save()

    assert not campaign_approval.reset_if_changed(big_campaign, actor=marketer)
    assert big_campaign.approved_at is not None


def test_a_template_published_anew_since_the_approval_refuses_the_start(
        big_campaign, marketer, approver, welcome_templates):
    campaign_approval.request_approval(big_campaign, actor=marketer)
    campaign_approval.approve(big_campaign, actor=approver)
    publish_template(welcome_templates[0])  # what the start would pin is no longer what was approved

    with pytest.raises(CampaignNotReady, match="changed after abe approved it"):
        start_campaign(big_campaign, actor=marketer, now=NOW)

    assert campaign_approval.approval_state(big_campaign).status == "stale"
