"""A follow-up campaign (to an earlier campaign's recipients who did not open, click or convert,
after a while) and a campaign's test send to test contacts."""
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns.campaign_start import CampaignNotReady, create_follow_up, send_test, start_campaign
from campaigns.campaign_state import move_campaign
from campaigns.journey_testing import NotATestContact
from campaigns.models import CampaignStatus, CampaignVariant, FollowUpWhen, RecipientOutcome
from channels import routing
from channels.models import Delivery, Message, MessageSource, MessageStatus
from channels.provider_reports import record_delivery_event
from compliance.models import Decision
from contacts.models import ContactEvent, Segment
from omni.models import AuditEntry

from .conftest import make_contact
from .test_campaign_start import make_campaign

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent_campaign(welcome_templates):
    """A campaign sent to ann, bob, cat and dan an hour ago (its messages made here as the fan-out
    would make them), finished."""
    people = {name: make_contact(name, email=f"{name}@example.com") for name in ("ann", "bob", "cat", "dan")}
    started = timezone.now()
    campaign = make_campaign(welcome_templates[0], Segment.objects.create(name="Everyone", definition={}))
    start_campaign(campaign, actor=None, now=started)
    send_to(campaign.recipients.all(), started)
    move_campaign(campaign, CampaignStatus.SENT, action="campaign.finished", fields={"finished_at": started})
    return campaign, people, started


def send_to(recipients, at):
    """Make and dispatch each recipient's email as the fan-out would, and mark them sent."""
    for recipient in recipients.select_related("variant", "contact"):
        message, _ = routing.create_message(contact=recipient.contact, channel_plan=[{"channel": "email"}],
                                            source=MessageSource.CAMPAIGN,
                                            template_version=recipient.variant.template_version, purpose="marketing")
        routing.dispatch(message)
        recipient.outcome, recipient.message, recipient.decided_at = RecipientOutcome.SENT, message, at
        recipient.save()


def engage(contact, event_type: str):
    delivery = Delivery.objects.get(contact=contact)
    record_delivery_event(delivery.provider, f"{event_type}-{contact.pk}", "", event_type, timezone.now(),
                          delivery_id=delivery.pk)


def converted(contact, at):
    ContactEvent.objects.create(contact=contact, name="purchased", occurred_at=at, idempotency_key=f"buy-{contact.pk}")


def audience_of(follow_up, now) -> set[str]:
    start_campaign(follow_up, actor=None, now=now)
    return set(follow_up.recipients.values_list("contact__external_id", flat=True))


def test_a_follow_up_reaches_those_who_did_not_open(sent_campaign, django_user_model):
    campaign, people, started = sent_campaign
    engage(people["ann"], "opened")
    engage(people["bob"], "clicked")  # a click proves the open
    marketer = django_user_model.objects.create_user("mara")

    follow_up = create_follow_up(campaign, actor=marketer, when=FollowUpWhen.NOT_OPENED, after=timedelta(days=2))

    assert (follow_up.status, follow_up.follow_up_of_id, follow_up.segment_id) == ("draft", campaign.pk, None)
    assert follow_up.name == "Follow-up of Summer sale"
    entry = AuditEntry.objects.get(action="campaign.follow_up_created")
    assert (entry.object_id, entry.data["follow_up_of"], entry.actor_id) == (str(follow_up.pk), campaign.pk,
                                                                             marketer.pk)
    assert audience_of(follow_up, started + timedelta(days=3)) == {"cat", "dan"}


def test_a_follow_up_leaves_out_those_whose_message_never_went_out(sent_campaign):
    campaign, people, started = sent_campaign
    for name, status in (("ann", MessageStatus.SUPPRESSED), ("bob", MessageStatus.CANCELLED),
                         ("cat", MessageStatus.DEFERRED), ("dan", MessageStatus.DELIVERED)):
        Message.objects.filter(contact=people[name]).update(status=status)

    follow_up = create_follow_up(campaign, actor=None, when=FollowUpWhen.NOT_OPENED, after=timedelta(days=2))

    # Only dan was sent the message, so only he can be one who did not open it.
    assert audience_of(follow_up, started + timedelta(days=3)) == {"dan"}


def test_a_follow_up_reaches_those_who_did_not_click(sent_campaign):
    campaign, people, started = sent_campaign
    engage(people["ann"], "opened")
    engage(people["bob"], "clicked")

    follow_up = create_follow_up(campaign, actor=None, when=FollowUpWhen.NOT_CLICKED, after=timedelta(days=2))

    assert audience_of(follow_up, started + timedelta(days=3)) == {"ann", "cat", "dan"}


def test_a_follow_up_reaches_those_who_did_not_reach_the_goal_within_its_window(sent_campaign):
    campaign, people, started = sent_campaign
    converted(people["ann"], started + timedelta(days=1))  # within the 3-day goal window
    converted(people["bob"], started + timedelta(days=5))  # too late to count
    converted(people["cat"], started - timedelta(days=1))  # before the send

    follow_up = create_follow_up(campaign, actor=None, when=FollowUpWhen.NOT_CONVERTED, after=timedelta(days=2))

    assert audience_of(follow_up, started + timedelta(days=6)) == {"bob", "cat", "dan"}


def test_a_follow_up_waits_until_the_earlier_campaign_has_sent_and_its_delay_has_passed(welcome_templates):
    make_contact("ann", email="ann@example.com")
    earlier = make_campaign(welcome_templates[0], Segment.objects.create(name="Everyone", definition={}))
    follow_up = create_follow_up(earlier, actor=None, when=FollowUpWhen.NOT_OPENED, after=timedelta(days=2))
    now = timezone.now()

    with pytest.raises(CampaignNotReady, match="which has not finished sending"):
        start_campaign(follow_up, actor=None, now=now)
    start_campaign(earlier, actor=None, now=now)
    move_campaign(earlier, CampaignStatus.SENT, action="campaign.finished", fields={"finished_at": now})
    with pytest.raises(CampaignNotReady, match="can start from"):
        start_campaign(follow_up, actor=None, now=now + timedelta(days=1))

    start_campaign(follow_up, actor=None, now=now + timedelta(days=2))
    follow_up.refresh_from_db()
    assert follow_up.status == CampaignStatus.SENDING


def test_a_campaign_cancelled_halfway_is_followed_up_among_those_it_sent_to(welcome_templates):
    from campaigns.campaign_sending import cancel_campaign

    people = {name: make_contact(name, email=f"{name}@example.com") for name in ("ann", "bob", "cat", "dan")}
    started = timezone.now()
    campaign = make_campaign(welcome_templates[0], Segment.objects.create(name="Everyone", definition={}))
    start_campaign(campaign, actor=None, now=started)
    send_to(campaign.recipients.filter(contact__external_id__in=["ann", "bob"]), started)
    campaign.refresh_from_db()
    cancel_campaign(campaign, actor=None)  # cat and dan are skipped, never sent
    engage(people["ann"], "opened")
    follow_up = create_follow_up(campaign, actor=None, when=FollowUpWhen.NOT_OPENED, after=timedelta(days=2))

    with pytest.raises(CampaignNotReady, match="can start from"):
        start_campaign(follow_up, actor=None, now=timezone.now() + timedelta(days=1))
    assert audience_of(follow_up, timezone.now() + timedelta(days=3)) == {"bob"}


def test_a_follow_up_needs_a_choice_a_delay_and_for_conversions_a_goal(welcome_templates):
    earlier = make_campaign(welcome_templates[0], None, goal_event="")

    with pytest.raises(ValidationError, match="Choose whom to follow up"):
        create_follow_up(earlier, actor=None, when="maybe", after=timedelta(days=1))
    with pytest.raises(ValidationError, match="how long after the send"):
        create_follow_up(earlier, actor=None, when=FollowUpWhen.NOT_OPENED, after=None)
    with pytest.raises(ValidationError, match="has no goal event"):
        create_follow_up(earlier, actor=None, when=FollowUpWhen.NOT_CONVERTED, after=timedelta(days=1))


# --- test send -------------------------------------------------------------------------------------

def test_a_test_send_reaches_only_test_contacts_with_the_exemption_in_the_decision(
        welcome_templates, django_user_model):
    email, _ = welcome_templates
    staff = django_user_model.objects.create_user("mara")
    tess = make_contact("tess", email="tess@example.com", is_test=True)
    nora = make_contact("nora", email="nora@example.com")
    campaign = make_campaign(email, Segment.objects.create(name="Everyone", definition={}))
    CampaignVariant.objects.create(campaign=campaign, name="A", template=email, weight=50, position=1)
    CampaignVariant.objects.create(campaign=campaign, name="B", template=email, weight=50, position=2)

    messages = send_test(campaign, actor=staff)

    assert len(messages) == 2
    assert {m.contact_id for m in Message.objects.all()} == {tess.pk}
    assert not Message.objects.filter(contact=nora).exists()
    for message in messages:
        assert (message.is_test, message.exemption, message.source, message.status) == (
            True, "test_send", MessageSource.CAMPAIGN, MessageStatus.QUEUED)
        assert Decision.objects.get(message_id=message.pk).inputs["exemption"] == "test_send"
    entries = AuditEntry.objects.filter(action="campaign.test_send")
    assert {(e.object_id, e.actor_id) for e in entries} == {(str(campaign.pk), staff.pk)}
    assert entries.count() == 2
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT and not campaign.recipients.exists()


def test_a_test_send_is_refused_clearly_without_test_contacts_and_to_other_contacts(welcome_templates):
    nora = make_contact("nora", email="nora@example.com")
    campaign = make_campaign(welcome_templates[0], None)

    with pytest.raises(ValidationError, match="There are no test contacts"):
        send_test(campaign, actor=None)
    with pytest.raises(NotATestContact):
        send_test(campaign, actor=None, contacts=[nora])
    assert not Message.objects.exists()
