"""Running a campaign: pause stops the claiming, resume restarts it, cancel skips what is left and
cancels the messages not yet queued. Each is audited."""
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from campaigns.campaign_sending import cancel_campaign, pause_campaign, resume_campaign
from campaigns.campaign_state import CampaignMoveRefused
from campaigns.models import CampaignRecipient, CampaignStatus, RecipientOutcome
from campaigns.templatetags.campaign_page import buttons
from campaigns.tick import tick
from channels.models import Delivery, Message, MessageStatus
from omni.models import AuditEntry

from .sending_helpers import reachable_contacts, started_campaign


@pytest.fixture(autouse=True)
def whole_stages(settings):
    settings.OMNI_TICK_STAGE_SECONDS = 600


@pytest.fixture
def marketer(db):
    return get_user_model().objects.create_user("marketer")


def _audited(campaign) -> list[tuple[str, dict]]:
    return [(e.action, e.data) for e in AuditEntry.objects.filter(object_id=str(campaign.pk)).order_by("pk")
            if e.action in ("campaign.paused", "campaign.resumed", "campaign.cancelled")]


def test_a_paused_campaign_is_not_claimed_and_resuming_sends_the_rest(marketer):
    now = timezone.now()
    contacts = reachable_contacts(4)
    campaign = started_campaign(contacts)
    campaign.recipients.filter(contact__in=contacts[2:]).update(send_at=now + timedelta(minutes=5))
    assert tick(now).campaign_messages == 2

    pause_campaign(campaign, actor=marketer, reason="Wrong price in the subject")
    later = now + timedelta(minutes=10)
    paused = tick(later)
    campaign.refresh_from_db()
    assert (paused.campaign_messages, campaign.status, campaign.paused_reason) == (
        0, CampaignStatus.PAUSED, "Wrong price in the subject")

    resume_campaign(campaign, actor=marketer)
    resumed = tick(later)

    campaign.refresh_from_db()
    assert resumed.campaign_messages == 2
    assert (campaign.status, campaign.paused_reason, campaign.auto_paused_at) == (CampaignStatus.SENT, "", None)
    assert Message.objects.count() == 4
    assert [action for action, _ in _audited(campaign)] == ["campaign.paused", "campaign.resumed"]
    assert _audited(campaign)[0][1]["reason"] == "Wrong price in the subject"


def test_resuming_clears_an_auto_pause(marketer):
    campaign = started_campaign(reachable_contacts(1))
    pause_campaign(campaign, actor=None, reason="Bounce rate 12% over 5%")
    campaign.auto_paused_at = timezone.now()
    campaign.save(update_fields=["auto_paused_at"])

    resume_campaign(campaign, actor=marketer)

    campaign.refresh_from_db()
    assert (campaign.status, campaign.auto_paused_at, campaign.paused_reason) == (CampaignStatus.SENDING, None, "")


def paused_with_a_deferred_message(marketer, now, **message_fields):
    """A started campaign whose one message so far the gate deferred (quiet hours) until an hour
    from `now`, paused; its other recipient is due tomorrow."""
    contacts = reachable_contacts(2)
    campaign = started_campaign(contacts)
    campaign.recipients.filter(contact=contacts[1]).update(send_at=now + timedelta(days=1))
    tick(now)
    Message.objects.update(status=MessageStatus.DEFERRED, defer_until=now + timedelta(hours=1), **message_fields)
    pause_campaign(campaign, actor=marketer)
    return campaign


def test_a_deferred_message_of_a_paused_campaign_waits_and_goes_after_the_resume(marketer):
    now = timezone.now()
    campaign = paused_with_a_deferred_message(marketer, now)

    later = now + timedelta(hours=2)
    paused = tick(later)

    message = Message.objects.get()
    # (its first delivery is the one it had before it was deferred)
    assert (paused.redispatched, message.status, message.deliveries.count()) == (0, MessageStatus.DEFERRED, 1)

    resume_campaign(campaign, actor=marketer)
    resumed = tick(later)

    message.refresh_from_db()
    assert (resumed.redispatched, message.status, message.deliveries.count()) == (1, MessageStatus.QUEUED, 2)


def test_a_deferred_message_that_expired_while_its_campaign_was_paused_is_not_sent(marketer):
    now = timezone.now()
    campaign = paused_with_a_deferred_message(marketer, now, expires_at=now + timedelta(hours=3))
    tick(now + timedelta(hours=2))

    resume_campaign(campaign, actor=marketer)
    tick(now + timedelta(hours=4))

    assert Message.objects.get().status == MessageStatus.EXPIRED


def test_a_fallback_timer_of_a_paused_campaign_waits_for_the_resume(marketer):
    now = timezone.now()
    contacts = reachable_contacts(2)
    campaign = started_campaign(contacts, channel_plan=[
        {"channel": "email", "fallback_after_seconds": 600}, {"channel": "sms"}])
    campaign.recipients.filter(contact=contacts[1]).update(send_at=now + timedelta(days=1))
    tick(now)
    email = Delivery.objects.get()
    pause_campaign(campaign, actor=marketer)

    later = now + timedelta(hours=1)
    paused = tick(later)

    email.refresh_from_db()
    assert (paused.fallbacks, email.fallback_due_at) == (0, now + timedelta(seconds=600))

    resume_campaign(campaign, actor=marketer)

    assert tick(later).fallbacks == 1


def test_a_campaign_paused_before_its_first_send_time_is_scheduled_again_when_resumed(marketer):
    now = timezone.now()
    campaign = started_campaign(reachable_contacts(2), send_at=now + timedelta(hours=1))
    pause_campaign(campaign, actor=marketer)

    resume_campaign(campaign, actor=marketer)

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SCHEDULED
    assert _audited(campaign)[-1] == ("campaign.resumed", {
        "from": "paused", "to": "scheduled", "watched_since": campaign.watched_since.isoformat()})
    assert tick(now).campaign_messages == 0
    assert tick(now + timedelta(hours=2)).campaign_messages == 2


def test_a_scheduled_campaign_paused_before_its_hour_sends_nothing(marketer):
    campaign = started_campaign(reachable_contacts(2))
    pause_campaign(campaign, actor=marketer)

    assert tick().campaign_messages == 0
    assert not Message.objects.exists()


def test_cancel_skips_the_pending_and_cancels_messages_not_yet_queued(marketer):
    now = timezone.now()
    contacts = reachable_contacts(4)
    campaign = started_campaign(contacts)
    campaign.recipients.filter(contact__in=contacts[2:]).update(send_at=now + timedelta(hours=1))
    tick(now)
    queued, deferred = Message.objects.order_by("pk")
    # Deferred by the gate (quiet hours), waiting to be routed again: not queued yet.
    Message.objects.filter(pk=deferred.pk).update(status=MessageStatus.DEFERRED, defer_until=now + timedelta(hours=8))

    stopped = cancel_campaign(campaign, actor=marketer)

    campaign.refresh_from_db()
    assert stopped == 3
    assert (campaign.status, campaign.finished_at is not None) == (CampaignStatus.CANCELLED, True)
    assert dict(Message.objects.values_list("pk", "status")) == {
        queued.pk: MessageStatus.QUEUED, deferred.pk: MessageStatus.CANCELLED}
    assert set(CampaignRecipient.objects.filter(contact__in=contacts[2:]).values_list("outcome", "skip_reason")) == {
        (RecipientOutcome.SKIPPED, "cancelled")}
    assert _audited(campaign) == [("campaign.cancelled", {
        "from": "sending", "to": "cancelled", "recipients_skipped": 2, "messages_cancelled": 1})]
    assert tick(now + timedelta(hours=2)).campaign_messages == 0


def test_a_sent_campaign_whose_messages_are_all_queued_cannot_be_cancelled_and_nothing_changes(marketer):
    campaign = started_campaign(reachable_contacts(1))
    tick()
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT

    assert "cancel" not in [button["name"] for button in buttons(campaign)]
    with pytest.raises(CampaignMoveRefused, match="nothing left to cancel"):
        cancel_campaign(campaign, actor=marketer)

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
    assert set(CampaignRecipient.objects.values_list("outcome", flat=True)) == {RecipientOutcome.SENT}
    assert not AuditEntry.objects.filter(action="campaign.cancelled").exists()


def test_a_sent_campaign_whose_messages_wait_for_quiet_hours_to_end_can_still_be_cancelled(marketer):
    now = timezone.now()
    campaign = started_campaign(reachable_contacts(2))
    tick(now)
    queued, deferred = Message.objects.order_by("pk")
    Message.objects.filter(pk=deferred.pk).update(status=MessageStatus.DEFERRED, defer_until=now + timedelta(hours=8))
    campaign.refresh_from_db()
    finished_at = campaign.finished_at
    assert campaign.status == CampaignStatus.SENT
    assert "cancel" in [button["name"] for button in buttons(campaign)]

    assert cancel_campaign(campaign, actor=marketer) == 1

    campaign.refresh_from_db()
    assert (campaign.status, campaign.finished_at) == (CampaignStatus.CANCELLED, finished_at)
    assert dict(Message.objects.values_list("pk", "status")) == {
        queued.pk: MessageStatus.QUEUED, deferred.pk: MessageStatus.CANCELLED}
    assert _audited(campaign) == [("campaign.cancelled", {
        "from": "sent", "to": "cancelled", "recipients_skipped": 0, "messages_cancelled": 1})]
    assert tick(now + timedelta(hours=9)).redispatched == 0


def test_a_quarantined_recipient_is_skipped_when_its_campaign_is_cancelled(marketer):
    campaign = started_campaign(reachable_contacts(2))
    campaign.recipients.filter(pk=campaign.recipients.first().pk).update(quarantined_at=timezone.now())

    assert cancel_campaign(campaign, actor=marketer) == 2
    assert set(campaign.recipients.values_list("outcome", flat=True)) == {RecipientOutcome.SKIPPED}
