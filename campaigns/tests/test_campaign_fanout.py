"""The fan-out of a started campaign: due recipients claimed by the tick, sent in bulk batches,
recorded, and the campaign ended once none is pending."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import campaign_sending
from campaigns.campaign_sending import send_campaign_batch
from campaigns.models import CampaignRecipient, CampaignStatus, CampaignVariant, RecipientOutcome
from campaigns.tick import tick
from channels.models import Delivery, DeliveryStatus, Message, MessageSource, MessageStatus
from omni.models import AuditEntry
from templates.actions import publish_template
from templates.models import TemplateVersion

from .sending_helpers import newsletter_template, reachable_contacts, started_campaign


@pytest.fixture(autouse=True)
def whole_stages(settings):
    # Every stage drained in one tick however slow the machine: the time budget is not under test.
    settings.OMNI_TICK_STAGE_SECONDS = 600


def _claimed(campaign, now) -> list[int]:
    """Claim the campaign's due recipients as the tick would, without sending them."""
    ids = list(campaign.recipients.values_list("pk", flat=True))
    CampaignRecipient.objects.filter(pk__in=ids).update(claimed_at=now)
    return ids


def test_the_tick_sends_one_message_per_pending_recipient_and_ends_the_campaign(db):
    contacts = reachable_contacts(5)
    campaign = started_campaign(contacts, expires_after=timedelta(hours=6))
    version = TemplateVersion.objects.get(template=campaign.template)
    now = timezone.now()

    report = tick(now)

    assert report.campaign_messages == 5
    messages = Message.objects.order_by("contact_id")
    assert [m.idempotency_key for m in messages] == [f"campaign:{campaign.pk}:{c.pk}" for c in contacts]
    assert {(m.source, m.template_version_id, m.intent_key, m.purpose) for m in messages} == {
        (MessageSource.CAMPAIGN, version.pk, f"campaign:{campaign.pk}", "marketing")}
    recipient = CampaignRecipient.objects.get(contact=contacts[0])
    assert recipient.message.expires_at == recipient.send_at + timedelta(hours=6)
    # Dispatched: routed, gated and queued on the email lane.
    assert set(messages.values_list("status", flat=True)) == {MessageStatus.QUEUED}
    assert Delivery.objects.filter(status=DeliveryStatus.QUEUED, channel="email").count() == 5
    recipients = CampaignRecipient.objects.all()
    assert {(r.outcome, r.claimed_at, r.decided_at) for r in recipients} == {(RecipientOutcome.SENT, None, now)}
    assert {r.message_id for r in recipients} == set(messages.values_list("pk", flat=True))
    campaign.refresh_from_db()
    assert (campaign.status, campaign.finished_at) == (CampaignStatus.SENT, now)
    assert list(AuditEntry.objects.filter(object_id=str(campaign.pk), action__startswith="campaign.")
                .order_by("pk").values_list("action", flat=True)) == [
        "campaign.started", "campaign.sending", "campaign.sent"]


def test_the_campaigns_own_intent_and_a_variants_pinned_version_are_sent(db):
    template = newsletter_template()
    first = TemplateVersion.objects.get(template=template)
    template.variants.update(subject="Changed after the start")
    publish_template(template)  # version 2, published after the start pinned version 1
    contacts = reachable_contacts(2)
    campaign = started_campaign(contacts, template=template, intent_key="spring-sale")
    variant = CampaignVariant.objects.create(campaign=campaign, name="A", template=template)
    CampaignVariant.objects.filter(pk=variant.pk).update(template_version=first)
    campaign.recipients.update(variant=variant)

    tick()

    assert set(Message.objects.values_list("template_version_id", "intent_key")) == {(first.pk, "spring-sale")}


def test_a_campaign_without_a_plan_sends_on_the_default_plan_for_its_purpose(db):
    from channels.models import DefaultChannelPlan

    DefaultChannelPlan.objects.update_or_create(
        purpose="marketing", urgency="low",
        defaults={"channel_plan": [{"channel": "sms", "fallback_after_seconds": 60}, {"channel": "email"}]})
    campaign = started_campaign(reachable_contacts(2), channel_plan=[])

    tick()

    # The template is written for email only: the plan keeps what it can send.
    assert [m.channel_plan for m in Message.objects.all()] == [[{"channel": "email"}]] * 2
    assert campaign.recipients.filter(outcome=RecipientOutcome.SENT).count() == 2


def test_a_batch_costs_the_same_queries_for_ten_recipients_and_for_three_hundred(db):
    now = timezone.now()
    statements = {}
    for size in (1, 10, 300):  # the first warms the caches of the gate's settings
        campaign = started_campaign(reachable_contacts(size, prefix=f"n{size}-"), name=f"n{size}",
                                    template=newsletter_template(f"t{size}"))
        ids = _claimed(campaign, now)
        with CaptureQueriesContext(connection) as queries:
            assert send_campaign_batch(ids, now) == size
        statements[size] = [q["sql"][:40] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]

    if connection.vendor == "postgresql":
        assert len(statements[10]) == len(statements[300]), statements
    else:
        # SQLite's limit on query parameters splits each bulk write into chunks: the same
        # statements, each repeated.
        def chunks_joined(sqls):
            return [sql for i, sql in enumerate(sqls) if i == 0 or sqls[i - 1] != sql]
        assert chunks_joined(statements[10]) == chunks_joined(statements[300]), statements


def test_a_batch_sent_twice_sends_once(db):
    campaign = started_campaign(reachable_contacts(3))
    now = timezone.now()
    ids = _claimed(campaign, now)

    first, again = send_campaign_batch(ids, now), send_campaign_batch(ids, now)

    assert (first, again) == (3, 0)
    assert Message.objects.count() == 3


def test_a_message_already_made_for_a_recipient_is_reused_not_made_twice(db):
    from channels.routing import create_message

    contacts = reachable_contacts(2)
    campaign = started_campaign(contacts)
    version = TemplateVersion.objects.get(template=campaign.template)
    # What a worker killed after creating the message would have left, had it committed.
    made, _ = create_message(contact=contacts[0], channel_plan=[{"channel": "email"}], source=MessageSource.CAMPAIGN,
                             template_version=version, idempotency_key=f"campaign:{campaign.pk}:{contacts[0].pk}")
    now = timezone.now()

    assert send_campaign_batch(_claimed(campaign, now), now) == 1

    assert Message.objects.count() == 2
    assert CampaignRecipient.objects.get(contact=contacts[0]).message_id == made.pk


def test_a_recipient_that_cannot_be_sent_is_quarantined_and_the_rest_go_on(db):
    contacts = reachable_contacts(4)
    campaign = started_campaign(contacts)
    unpinned = CampaignVariant.objects.create(campaign=campaign, name="B", template=campaign.template)
    campaign.recipients.filter(contact=contacts[2]).update(variant=unpinned)
    now = timezone.now()

    report = tick(now)

    assert report.campaign_messages == 3
    bad = CampaignRecipient.objects.get(contact=contacts[2])
    assert (bad.outcome, bad.quarantined_at, bad.message_id) == (RecipientOutcome.PENDING, now, None)
    assert "no published template version" in bad.quarantine_reason
    assert CampaignRecipient.objects.filter(outcome=RecipientOutcome.SENT).count() == 3
    assert AuditEntry.objects.filter(action="tick.quarantined").count() == 1
    # A quarantined recipient is not decided: the campaign keeps sending until it is retried or cancelled.
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING
    assert tick(now).campaign_messages == 0


def test_recipients_past_their_expiry_are_skipped_as_expired(db):
    now = timezone.now()
    contacts = reachable_contacts(3)
    campaign = started_campaign(contacts, expires_after=timedelta(hours=1))
    campaign.recipients.filter(contact=contacts[0]).update(send_at=now - timedelta(hours=2))

    report = tick(now)

    assert report.campaign_messages == 2
    expired = CampaignRecipient.objects.get(contact=contacts[0])
    assert (expired.outcome, expired.skip_reason, expired.message_id) == (RecipientOutcome.SKIPPED, "expired", None)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT


def test_a_claimed_batch_that_expired_before_its_worker_ran_is_skipped(db):
    campaign = started_campaign(reachable_contacts(2), expires_after=timedelta(minutes=30))
    now = timezone.now()
    ids = _claimed(campaign, now)

    assert send_campaign_batch(ids, now + timedelta(hours=1)) == 0

    assert set(CampaignRecipient.objects.values_list("outcome", "skip_reason")) == {("skipped", "expired")}
    assert not Message.objects.exists()


def test_after_downtime_a_throttled_campaign_catches_up_at_its_throttle_rate(db):
    now = timezone.now()
    campaign = started_campaign(reachable_contacts(120), throttle_per_minute=50,
                                send_at=now - timedelta(hours=3))  # the tick was down for hours

    sent = [tick(now + timedelta(seconds=seconds)).campaign_messages for seconds in (0, 5, 55, 60, 65, 120)]

    # at most 50 in any minute: none more until a minute after the first 50
    assert sent == [50, 0, 0, 50, 0, 20]
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT


def test_a_throttle_counts_the_batches_handed_off_and_not_sent_yet(db):
    now = timezone.now()
    started_campaign(reachable_contacts(120), throttle_per_minute=50, send_at=now - timedelta(hours=3))
    handed = []

    first = tick(now, hand_off_recipients_to=handed.append)
    within = tick(now + timedelta(seconds=5), hand_off_recipients_to=handed.append)  # the worker has not run
    after = tick(now + timedelta(seconds=60), hand_off_recipients_to=handed.append)

    assert (first.handed_off, within.handed_off, after.handed_off) == (50, 0, 50)


def test_an_ab_tests_rest_waiting_for_the_winner_keeps_the_campaign_sending(db):
    contacts = reachable_contacts(3)
    campaign = started_campaign(contacts)
    campaign.recipients.filter(contact=contacts[0]).update(send_at=None)  # the rest, waiting

    assert tick().campaign_messages == 2

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING


def test_a_lost_batch_is_claimed_again_once_its_lease_ends(db, django_capture_on_commit_callbacks):
    started_campaign(reachable_contacts(3))
    now = timezone.now()
    handed = []
    with django_capture_on_commit_callbacks(execute=True):
        tick(now, hand_off_recipients_to=handed.append)  # and its task is lost

    within = tick(now + timedelta(seconds=30), hand_off_recipients_to=handed.append)
    after = tick(now + campaign_sending.RECIPIENT_LEASE + timedelta(seconds=1))  # a later tick sends it

    assert (len(handed), within.handed_off, after.campaign_messages) == (1, 0, 3)
    assert Message.objects.count() == 3


def test_the_beat_tick_hands_batches_of_ids_to_the_campaigns_queue(db, django_capture_on_commit_callbacks):
    from celery.signals import before_task_publish

    from campaigns.tasks import hand_off_recipients
    from omni.tests.fakes import purge_queues

    started_campaign(reachable_contacts(3))
    published = []

    def keep(sender=None, body=None, routing_key=None, **kwargs):
        published.append((sender, routing_key, body[0][0]))

    before_task_publish.connect(keep, weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            report = tick(hand_off_recipients_to=hand_off_recipients)
    finally:
        before_task_publish.disconnect(keep)
        purge_queues()

    ids = sorted(CampaignRecipient.objects.values_list("pk", flat=True))
    assert report.handed_off == 3
    assert [(s, q, sorted(b)) for s, q, b in published] == [
        ("campaigns.tasks.send_campaign_batch_task", "campaigns", ids)]
    assert not Message.objects.exists()


@pytest.mark.celery_worker
def test_a_real_worker_sends_what_the_beat_tick_hands_off(celery_worker, finished_tasks):
    from campaigns.tasks import send_campaign_batch_task, tick_task

    campaign = started_campaign(reachable_contacts(3))

    tick_task.delay()

    finished_tasks.wait_for(send_campaign_batch_task, 1, timeout=60)
    assert Message.objects.filter(source=MessageSource.CAMPAIGN).count() == 3
    assert set(campaign.recipients.values_list("outcome", flat=True)) == {RecipientOutcome.SENT}


def test_bulk_lanes_carry_more_deliveries_per_send_task_than_transactional_ones():
    from channels.publishing import send_batch_size

    assert send_batch_size("send.bulk.email") == 500
    assert send_batch_size("send.transactional.sms") == 50


def test_a_quarantined_recipient_is_listed_and_retried_from_its_admin(admin_client, django_assert_max_num_queries):
    from django.urls import reverse

    contacts = reachable_contacts(30)
    campaign = started_campaign(contacts)
    unpinned = CampaignVariant.objects.create(campaign=campaign, name="B", template=campaign.template)
    campaign.recipients.filter(contact__in=contacts[:3]).update(variant=unpinned)
    tick()
    url = reverse("admin:campaigns_campaignrecipient_changelist")

    with django_assert_max_num_queries(12):
        page = admin_client.get(url, {"quarantined": "yes"})
    assert page.status_code == 200
    assert page.content.decode().count("no published template version") == 3

    # The marketer fixes the cause (the variant's version pinned), then retries.
    CampaignVariant.objects.filter(pk=unpinned.pk).update(
        template_version=TemplateVersion.objects.get(template=campaign.template))
    admin_client.post(url, {"action": "retry_quarantined",
                            "_selected_action": list(campaign.recipients.filter(variant=unpinned)
                                                     .values_list("pk", flat=True))})

    assert tick().campaign_messages == 3
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
