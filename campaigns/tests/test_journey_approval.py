"""A journey's ownership and approval: an owner, objective, lifecycle stage and goal before it is
activated; with marketing sends (and OMNI_JOURNEY_APPROVAL_REQUIRED on) a marketing approver's
yes, who is not the requester, for the draft as it is; an edit resets it; every step audited."""
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from campaigns.actions import activate_journey, publish_journey
from campaigns.journey_approval import approve_journey, draft_edited, journey_approval_state, request_journey_approval
from campaigns.journey_change_log import journey_changes
from campaigns.models import Campaign, Journey, JourneyStatus, JourneyStep
from contacts.models import LifecycleStage
from omni.lib import approval
from omni.models import AuditEntry
from templates.actions import publish_template
from templates.models import Template, TemplateVariant

from .conftest import add_send, make_journey

pytestmark = pytest.mark.django_db


def actions_of(journey) -> list[str]:
    return list(AuditEntry.objects.filter(object_type="campaigns.journey", object_id=str(journey.pk))
                .order_by("id").values_list("action", flat=True))


# --- ownership ------------------------------------------------------------------------------

def test_activation_names_each_missing_owner_objective_stage_and_goal_then_activates_once_they_are_set(
    welcome_templates, marketer,
):
    # given a valid draft that says nothing about itself
    journey = Journey.objects.create(name="Bare", slug="bare", trigger_event="signed_up")
    add_send(journey, welcome_templates[0])

    # when
    with pytest.raises(ValidationError) as refused:
        activate_journey(journey, actor=marketer)

    # then each missing one is named, nothing was published, and the refusal is audited
    message = " ".join(refused.value.messages)
    for named in ("an owner", "an objective", "a lifecycle stage", "a goal event"):
        assert named in message
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.DRAFT and journey.live_version is None
    assert actions_of(journey) == ["journey.activation_refused"]

    # when they are set, but for one
    journey.owner, journey.objective = marketer, "Welcome new trials"
    journey.lifecycle_stage = LifecycleStage.objects.get(key="trial")
    journey.save()
    with pytest.raises(ValidationError, match="a goal event") as refused:
        activate_journey(journey, actor=marketer)
    assert "an owner" not in " ".join(refused.value.messages)

    # then with the goal too it activates
    journey.goal_event = "activated"
    journey.save()
    activate_journey(journey, actor=marketer)
    assert journey.status == JourneyStatus.ACTIVE


def test_the_journey_list_shows_owner_objective_stage_and_goal(client, marketing_draft, marketer):
    client.force_login(marketer)

    page = client.get(reverse("admin:campaigns_journey_changelist"))

    html = page.content.decode()
    assert page.status_code == 200
    assert "Tested behaviour" in html and "Trial" in html and "goal-reached" in html and "mara" in html


# --- approval -------------------------------------------------------------------------------

def test_a_marketing_journey_needs_approval_refused_to_its_requester_given_by_an_approver(
    journey_approval_required, marketing_draft, marketer, approver,
):
    journey = marketing_draft

    # activation without approval is refused, saying what to do, and audited
    with pytest.raises(ValidationError, match="needs approval before it runs"):
        activate_journey(journey, actor=marketer)
    assert journey_approval_state(journey).status == "needed"

    # the marketer requests it
    request_journey_approval(journey, actor=marketer)
    assert journey_approval_state(journey).status == "requested"
    with pytest.raises(ValidationError, match="awaits approval, requested by mara"):
        activate_journey(journey, actor=marketer)

    # the marketer (the requester, and without the permission) may not approve it
    with pytest.raises(approval.ApprovalRefused) as refused:
        approve_journey(journey, actor=marketer)
    assert refused.value.reason == approval.NOT_ALLOWED

    # the approver approves it, and the marketer activates it
    approve_journey(journey, actor=approver)
    journey.refresh_from_db()
    assert journey.approved_by == approver and journey.approval_requested_by == marketer
    assert journey_approval_state(journey).status == "approved"
    activate_journey(journey, actor=marketer)
    assert journey.status == JourneyStatus.ACTIVE

    assert actions_of(journey) == ["journey.approval_refused", "journey.approval_requested",
                                   "journey.approval_refused", "journey.approval_refused", "journey.approved",
                                   "journey.activated"]
    refusals = AuditEntry.objects.filter(action="journey.approval_refused").order_by("id")
    assert [(e.reason, e.data["step"]) for e in refusals] == [
        ("not_approved", "activate"), ("not_approved", "activate"), ("not_allowed", "approve")]


def test_an_approver_who_requested_approval_cannot_give_it(
    journey_approval_required, marketing_draft, approver, user_in,
):
    request_journey_approval(marketing_draft, actor=approver)

    with pytest.raises(approval.ApprovalRefused, match="someone else must give it") as refused:
        approve_journey(marketing_draft, actor=approver)

    assert refused.value.reason == approval.OWN_REQUEST
    approve_journey(marketing_draft, actor=user_in("second", "Marketing approvers"))
    assert marketing_draft.approved_at is not None


def test_nothing_is_approved_without_a_request_or_when_the_draft_changed_after_the_approver_saw_it(
    journey_approval_required, marketing_draft, marketer, approver,
):
    with pytest.raises(approval.ApprovalRefused) as refused:
        approve_journey(marketing_draft, actor=approver)
    assert refused.value.reason == approval.NOT_REQUESTED

    request_journey_approval(marketing_draft, actor=marketer)
    seen = marketing_draft.approval_digest
    with pytest.raises(approval.ApprovalRefused) as refused:
        approve_journey(marketing_draft, actor=approver, seen_digest="an older page's digest")
    assert refused.value.reason == approval.CHANGED_SINCE_SEEN

    approve_journey(marketing_draft, actor=approver, seen_digest=seen)
    assert marketing_draft.approved_by == approver


def test_an_edit_resets_the_approval_and_activation_is_refused_until_approved_again(
    journey_approval_required, marketing_draft, marketer, approver,
):
    # given an approved draft
    request_journey_approval(marketing_draft, actor=marketer)
    approve_journey(marketing_draft, actor=approver)

    # when the builder edits a step and says so
    JourneyStep.objects.filter(journey=marketing_draft, key="pause").update(config={"seconds": 60})
    draft_edited(marketing_draft, actor=marketer)

    # then the approval is gone, audited, and activation is refused
    marketing_draft.refresh_from_db()
    assert marketing_draft.approved_at is None and marketing_draft.approval_requested_at is None
    assert marketing_draft.approval_reset_at is not None
    reset = AuditEntry.objects.get(action="journey.approval_reset")
    assert reset.data["was"] == "approval" and reset.actor_label == "mara"
    assert journey_approval_state(marketing_draft).status == "reset"
    with pytest.raises(ValidationError, match="needs approval"):
        activate_journey(marketing_draft, actor=marketer)


def test_an_edit_that_changes_nothing_keeps_the_approval(
    journey_approval_required, marketing_draft, marketer, approver,
):
    request_journey_approval(marketing_draft, actor=marketer)
    approve_journey(marketing_draft, actor=approver)

    marketing_draft.description = "Only words: the engine never reads them."
    marketing_draft.save()
    draft_edited(marketing_draft, actor=marketer)

    assert marketing_draft.approved_at is not None
    assert not AuditEntry.objects.filter(action="journey.approval_reset").exists()
    activate_journey(marketing_draft, actor=marketer)


def test_a_template_published_anew_makes_the_approval_stale_without_any_edit(
    journey_approval_required, marketing_draft, marketer, approver, welcome_templates,
):
    request_journey_approval(marketing_draft, actor=marketer)
    approve_journey(marketing_draft, actor=approver)

    email = welcome_templates[0]
    TemplateVariant.objects.filter(template=email, channel="email").update(subject="Something else entirely")
    publish_template(email)

    assert journey_approval_state(marketing_draft).status == "stale"
    with pytest.raises(ValidationError, match="changed after abe approved it"):
        activate_journey(marketing_draft, actor=marketer)


def test_publishing_changes_to_a_running_journey_needs_their_approval(
    journey_approval_required, marketing_draft, marketer, approver,
):
    request_journey_approval(marketing_draft, actor=marketer)
    approve_journey(marketing_draft, actor=approver)
    activate_journey(marketing_draft, actor=marketer)

    JourneyStep.objects.filter(journey=marketing_draft, key="pause").update(config={"seconds": 60})
    draft_edited(marketing_draft, actor=marketer)
    with pytest.raises(ValidationError, match="needs approval"):
        publish_journey(marketing_draft, actor=marketer)
    assert marketing_draft.versions.count() == 1

    request_journey_approval(marketing_draft, actor=marketer)
    approve_journey(marketing_draft, actor=approver)
    assert publish_journey(marketing_draft, actor=marketer).number == 2


def test_with_the_setting_off_a_marketing_journey_activates_without_approval(marketing_draft, marketer, settings):
    settings.OMNI_JOURNEY_APPROVAL_REQUIRED = False

    activate_journey(marketing_draft, actor=marketer)

    assert marketing_draft.status == JourneyStatus.ACTIVE
    assert journey_approval_state(marketing_draft).status == "not_needed"


def test_a_journey_without_marketing_sends_needs_no_approval(journey_approval_required, marketer):
    receipt = Template.objects.create(key="receipt", name="Receipt", purpose="transactional")
    TemplateVariant.objects.create(template=receipt, channel="email", subject="Your receipt", text_body="Thanks")
    publish_template(receipt)
    journey = make_journey(name="Receipts", slug="receipts", trigger_event="paid")
    add_send(journey, receipt)

    assert "no marketing" in journey_approval_state(journey).words
    activate_journey(journey, actor=marketer)

    # but a send step whose own purpose is marketing does
    add_send(Journey.objects.get(pk=journey.pk), receipt, key="upsell", position=2, purpose="marketing")
    journey.refresh_from_db()
    assert journey_approval_state(journey).status == "needed"


# --- the page -------------------------------------------------------------------------------

def test_a_marketer_requests_on_the_page_an_approver_approves_there_and_the_requester_is_refused(
    journey_approval_required, client, marketing_draft, marketer, approver,
):
    page_url = reverse("admin:campaigns_journey_change", args=[marketing_draft.pk])
    request_url = reverse("admin:campaigns_journey_request_approval", args=[marketing_draft.pk])
    approve_url = reverse("admin:campaigns_journey_approve", args=[marketing_draft.pk])

    # the marketer sees the state in words and the Request button, not the Approve one
    client.force_login(marketer)
    html = client.get(page_url).content.decode()
    assert "Needed before it can be activated" in html
    assert 'id="request-approval"' in html and 'id="approve-journey"' not in html
    page = client.post(request_url, follow=True)
    assert "Approval requested" in page.content.decode()
    assert "Approval requested by mara" in page.content.decode()

    # the marketer cannot approve through the URL either: refused in a message, audited
    page = client.post(approve_url, {"digest": marketing_draft.approval_digest}, follow=True)
    assert "Not approved. mara may not approve" in page.content.decode()

    # the approver (who may only view journeys) sees Approve and approves
    client.force_login(approver)
    html = client.get(page_url).content.decode()
    assert 'id="approve-journey"' in html and 'id="request-approval"' not in html
    page = client.post(approve_url, {"digest": Journey.objects.get(pk=marketing_draft.pk).approval_digest},
                       follow=True)
    assert "Approved: this draft may now be activated" in page.content.decode()
    assert "Approved by abe" in page.content.decode()
    assert client.get(approve_url).status_code == 405


def test_saving_the_journey_form_resets_a_stale_approval(
    journey_approval_required, client, marketing_draft, marketer, approver,
):
    from .test_admin_versions import change_form_data

    request_journey_approval(marketing_draft, actor=marketer)
    approve_journey(marketing_draft, actor=approver)
    client.force_login(marketer)
    url = reverse("admin:campaigns_journey_change", args=[marketing_draft.pk])
    data = change_form_data(client.get(url))

    data["trigger_event"] = "subscribed"
    response = client.post(url, data)

    assert response.status_code == 302, response.content.decode()[:2000]
    marketing_draft.refresh_from_db()
    assert marketing_draft.approved_at is None
    assert AuditEntry.objects.filter(action="journey.approval_reset", actor_label="mara").exists()


def test_the_change_log_shows_edits_publishes_activations_and_approvals_newest_first_in_fixed_queries(
    journey_approval_required, client, marketing_draft, marketer, approver, django_assert_num_queries,
):
    request_journey_approval(marketing_draft, actor=marketer)
    approve_journey(marketing_draft, actor=approver)
    activate_journey(marketing_draft, actor=marketer)

    with django_assert_num_queries(2):
        changes, more = journey_changes(marketing_draft)
    assert [(c.who, c.what) for c in changes] == [
        ("mara", "activated the journey (version 1)"),
        ("mara", "published version 1, 2 steps"),
        ("abe", "approved the draft"),
        ("mara", "requested approval of the draft"),
    ]
    assert not more

    # more versions and pauses cost no more queries; the oldest fall off after the limit
    for seconds in range(61, 64):
        JourneyStep.objects.filter(journey=marketing_draft, key="pause").update(config={"seconds": seconds})
        draft_edited(marketing_draft, actor=marketer)
        request_journey_approval(marketing_draft, actor=marketer)
        approve_journey(marketing_draft, actor=approver)
        publish_journey(marketing_draft, actor=marketer)
    with django_assert_num_queries(2):
        changes, more = journey_changes(marketing_draft, limit=5)
    assert len(changes) == 5 and more
    assert changes[0].what == "published version 4, 2 steps"
    assert [c.what for c in changes[1:4]] == ["approved the draft", "requested approval of the draft",
                                             "reset the approval: the draft changed"]

    client.force_login(approver)
    html = client.get(reverse("admin:campaigns_journey_change", args=[marketing_draft.pk])).content.decode()
    assert 'id="journey-change-log"' in html and "published version 4, 2 steps" in html


# --- campaigns share the pattern ------------------------------------------------------------

def test_a_campaign_is_approved_by_the_same_rules_with_its_own_permission(welcome_templates, marketer, approver):
    campaign = Campaign.objects.create(name="Spring sale", template=welcome_templates[0])
    digest = approval.digest_of({"template": campaign.template_id, "name": campaign.name})

    approval.request(campaign, actor=marketer, digest=digest)
    with pytest.raises(approval.ApprovalRefused):
        approval.approve(campaign, actor=marketer, digest=digest)
    approval.approve(campaign, actor=approver, digest=digest)

    assert approval.refusal(campaign, digest=digest) is None
    assert approval.refusal(campaign, digest=approval.digest_of({"changed": True})) is not None
    assert list(AuditEntry.objects.filter(object_type="campaigns.campaign").order_by("id")
                .values_list("action", flat=True)) == ["campaign.approval_requested", "campaign.approved"]


def test_refusals_read_as_what_someone_could_not_do(journey_approval_required, marketing_draft, marketer):
    with pytest.raises(ValidationError):
        activate_journey(marketing_draft, actor=marketer)
    with pytest.raises(approval.ApprovalRefused):
        approve_journey(marketing_draft, actor=marketer)

    changes, _ = journey_changes(marketing_draft)

    assert [c.what.split(":")[0] for c in changes] == ["could not approve the draft", "could not activate the journey"]
    assert "needs approval before it runs" in changes[1].what


def test_the_lifecycle_stage_a_journey_is_for_is_not_deleted(marketing_draft):
    from contacts.models import LifecycleStageInUse

    with pytest.raises(LifecycleStageInUse, match="1 journey for that stage"):
        LifecycleStage.objects.get(key="trial").delete()
