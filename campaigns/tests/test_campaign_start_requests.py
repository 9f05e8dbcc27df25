"""The start in the background: the request moves the draft to starting and hands the start to a
worker once it commits; the task takes the snapshot; a refusal or a failure at that time takes it
back to draft with the problems in words; a copy of the task does nothing; the sweep hands a
stalled start off again and gives up after its attempts."""
import logging
import re
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from campaigns import tasks
from campaigns.campaign_start import CampaignNotReady, start_campaign
from campaigns.campaign_start_requests import (
    FAILED,
    GAVE_UP,
    NOT_STARTING,
    REFUSED,
    RETRIED,
    back_to_draft,
    request_start,
    retry_stalled_starts,
    run_requested_start,
)
from campaigns.models import Campaign, CampaignRecipient, CampaignStatus
from contacts.models import Segment
from omni.models import AuditEntry
from omni.tests.fakes import unreachable_broker

from .test_campaign_start import contacts, make_campaign

pytestmark = pytest.mark.django_db


@pytest.fixture
def everyone(db):
    return Segment.objects.create(name="Everyone", definition={})


@pytest.fixture
def campaign(welcome_templates, everyone):
    """A draft ready to start, to three contacts (no approval needed: the threshold is 1,000)."""
    contacts(3)
    return make_campaign(welcome_templates[0], everyone)


def actions(campaign) -> list[str]:
    return list(AuditEntry.objects.filter(object_type="campaigns.campaign", object_id=str(campaign.pk))
                .order_by("pk").values_list("action", flat=True))


def entry(campaign, action) -> AuditEntry:
    return AuditEntry.objects.get(object_type="campaigns.campaign", object_id=str(campaign.pk), action=action)


def fresh(campaign) -> Campaign:
    return Campaign.objects.get(pk=campaign.pk)


@pytest.fixture
def recipients_refused(db):
    """The database refuses to write campaign recipients, as a full disk or a lost connection
    would: the start fails in the middle of its snapshot. Gone with the test's transaction."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("CREATE FUNCTION refuse_recipients() RETURNS trigger AS $$ BEGIN "
                           "RAISE EXCEPTION 'no room left'; END $$ LANGUAGE plpgsql")
            cursor.execute("CREATE TRIGGER refuse_recipients BEFORE INSERT ON campaigns_campaignrecipient "
                           "FOR EACH ROW EXECUTE FUNCTION refuse_recipients()")
        else:
            cursor.execute("CREATE TRIGGER refuse_recipients BEFORE INSERT ON campaigns_campaignrecipient "
                           "BEGIN SELECT RAISE(ABORT, 'no room left'); END")


# --- the request ---------------------------------------------------------------------------------

def test_a_request_moves_the_draft_to_starting_audits_who_asked_and_hands_the_start_off_once_committed(
        campaign, marketer, eager_celery, finished_tasks, django_capture_on_commit_callbacks):
    # when the marketer asks for the start
    with django_capture_on_commit_callbacks() as hand_offs:
        request_start(campaign, actor=marketer)

    # then it is starting, asked for by them, audited, with nothing snapshotted and nothing handed off yet
    starting = fresh(campaign)
    assert starting.status == CampaignStatus.STARTING
    assert (starting.start_requested_by, starting.start_attempts) == (marketer, 1)
    assert starting.start_requested_at is not None and starting.start_enqueued_at == starting.start_requested_at
    requested = entry(campaign, "campaign.start_requested")
    assert requested.actor_id == marketer.pk
    assert requested.data == {"from": "draft", "to": "starting", "audience": 3}
    assert not CampaignRecipient.objects.exists()
    assert finished_tasks.names == [] and len(hand_offs) == 1

    # when the transaction commits, the start is handed to a worker, which starts it
    hand_offs[0]()

    assert finished_tasks.calls == [("campaigns.tasks.start_campaign_task", (campaign.pk,))]
    started = fresh(campaign)
    assert started.status == CampaignStatus.SENDING and started.started_at is not None
    assert CampaignRecipient.objects.filter(campaign=campaign).count() == 3
    assert started.start_summary == {"audience": 3, "pending": 3, "holdout": 0, "waiting_for_winner": 0,
                                     "skipped": {}}
    assert entry(campaign, "campaign.started").actor_id == marketer.pk
    assert actions(campaign) == ["campaign.start_requested", "campaign.started"]


def test_a_scheduled_campaign_starts_in_the_background_as_scheduled(
        welcome_templates, everyone, marketer, eager_celery, django_capture_on_commit_callbacks):
    contacts(2)
    later = timezone.now() + timedelta(days=2)
    campaign = make_campaign(welcome_templates[0], everyone, scheduled_at=later)

    with django_capture_on_commit_callbacks(execute=True):
        request_start(campaign, actor=marketer)

    started = fresh(campaign)
    assert started.status == CampaignStatus.SCHEDULED
    assert set(started.recipients.values_list("send_at", flat=True)) == {later}


def test_a_broker_that_is_down_leaves_the_start_starting_for_the_sweep(
        campaign, marketer, caplog, django_capture_on_commit_callbacks):
    with unreachable_broker(), caplog.at_level(logging.ERROR, logger="omni.lib.tasks"), \
            django_capture_on_commit_callbacks(execute=True):
        request_start(campaign, actor=marketer)

    assert fresh(campaign).status == CampaignStatus.STARTING
    assert f"Could not hand the start of campaign {campaign.pk} to the workers" in caplog.text


def test_a_second_request_while_starting_is_refused_as_already_starting(
        campaign, marketer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as first:
        request_start(campaign, actor=marketer)

    with django_capture_on_commit_callbacks() as second, pytest.raises(CampaignNotReady) as refused:
        request_start(fresh(campaign), actor=marketer)

    assert refused.value.problems == [
        "It is already starting: its audience snapshot is being taken, and its page shows when it has started."]
    assert (len(first), len(second)) == (1, 0)
    assert actions(campaign) == ["campaign.start_requested"]


def test_a_request_for_an_unready_draft_is_refused_at_once_and_moves_nothing(
        welcome_templates, marketer, django_capture_on_commit_callbacks):
    bare = Campaign.objects.create(name="Bare", template=welcome_templates[0])

    with django_capture_on_commit_callbacks() as hand_offs, pytest.raises(CampaignNotReady) as refused:
        request_start(bare, actor=marketer)

    assert any("owner" in problem for problem in refused.value.problems)
    assert fresh(bare).status == CampaignStatus.DRAFT and hand_offs == []
    assert actions(bare) == []


def test_a_request_that_needs_approval_is_refused_and_the_refusal_audited(
        campaign, marketer, settings, django_capture_on_commit_callbacks):
    settings.OMNI_CAMPAIGN_APPROVAL_MIN_AUDIENCE = 2

    with django_capture_on_commit_callbacks() as hand_offs, pytest.raises(CampaignNotReady) as refused:
        request_start(campaign, actor=marketer)

    assert any("approv" in problem for problem in refused.value.problems), refused.value.problems
    assert fresh(campaign).status == CampaignStatus.DRAFT and hand_offs == []
    refusal = entry(campaign, "campaign.approval_refused")
    assert refusal.actor_id == marketer.pk and refusal.data["step"] == "start"


def test_a_new_request_clears_the_problems_of_the_last_refused_start(
        campaign, marketer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        request_start(campaign, actor=marketer)
    back_to_draft(campaign, ["It was refused."], action="campaign.start_refused")
    assert fresh(campaign).start_refused_problems == ["It was refused."]

    with django_capture_on_commit_callbacks():
        request_start(fresh(campaign), actor=marketer)

    assert fresh(campaign).start_refused_problems == []


# --- the task --------------------------------------------------------------------------------------

def test_a_refusal_when_the_task_runs_takes_it_back_to_draft_keeping_the_problems(
        campaign, marketer, settings, django_capture_on_commit_callbacks):
    # given a start asked for while three contacts needed no approval (threshold 3)
    settings.OMNI_CAMPAIGN_APPROVAL_MIN_AUDIENCE = 3
    with django_capture_on_commit_callbacks():
        request_start(campaign, actor=marketer)
    # when the audience grows past the threshold before the worker takes the snapshot
    contacts(2, prefix="late")

    outcome = run_requested_start(campaign.pk)

    # then it is a draft again, nothing snapshotted, the problems kept and audited
    assert outcome == REFUSED
    refused = fresh(campaign)
    assert refused.status == CampaignStatus.DRAFT
    assert not CampaignRecipient.objects.exists()
    assert len(refused.start_refused_problems) == 1 and "approv" in refused.start_refused_problems[0]
    assert entry(campaign, "campaign.start_refused").data == {
        "from": "starting", "to": "draft", "problems": refused.start_refused_problems}
    refusal = entry(campaign, "campaign.approval_refused")
    assert refusal.actor_id == marketer.pk and refusal.data["step"] == "start"


def test_an_unexpected_failure_takes_it_back_to_draft_with_a_problem_in_words_and_no_recipients(
        campaign, marketer, recipients_refused, caplog, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        request_start(campaign, actor=marketer)

    with caplog.at_level(logging.ERROR, logger="campaigns.campaign_start_requests"):
        outcome = run_requested_start(campaign.pk)

    assert outcome == FAILED
    failed = fresh(campaign)
    assert failed.status == CampaignStatus.DRAFT and failed.started_at is None
    assert not CampaignRecipient.objects.exists()
    [problem] = failed.start_refused_problems
    assert re.fullmatch(r"The start failed \(\w+\); nothing was sent\. Start it again\.", problem), problem
    audited = entry(campaign, "campaign.start_failed")
    assert audited.data["problems"] == [problem] and audited.data["to"] == "draft"
    assert any(record.exc_info for record in caplog.records), "the exception is logged with its traceback"
    assert "campaign.started" not in actions(campaign)


def test_a_second_copy_of_the_task_does_nothing(campaign, marketer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        request_start(campaign, actor=marketer)
    run_requested_start(campaign.pk)
    snapshot = list(CampaignRecipient.objects.order_by("pk").values_list("pk", "contact_id", "send_at"))

    assert run_requested_start(campaign.pk) == NOT_STARTING

    assert list(CampaignRecipient.objects.order_by("pk").values_list("pk", "contact_id", "send_at")) == snapshot
    assert actions(campaign).count("campaign.started") == 1


def test_a_copy_of_the_task_never_starts_a_campaign_its_start_left(
        campaign, marketer, django_capture_on_commit_callbacks):
    # given a campaign read as starting by a worker, then taken back to draft elsewhere
    with django_capture_on_commit_callbacks():
        request_start(campaign, actor=marketer)
    read_by_the_worker = fresh(campaign)
    back_to_draft(fresh(campaign), ["It was refused."], action="campaign.start_refused")

    # when that worker goes on to start it, it is refused: a draft starts only when someone asks
    with pytest.raises(CampaignNotReady) as refused:
        start_campaign(read_by_the_worker, actor=marketer)

    assert refused.value.problems[0].startswith("It is draft, no longer starting")
    assert fresh(campaign).status == CampaignStatus.DRAFT and not CampaignRecipient.objects.exists()
    assert run_requested_start(campaign.pk) == NOT_STARTING


def test_a_start_cancelled_before_its_snapshot_is_not_taken(campaign, marketer, django_capture_on_commit_callbacks):
    from campaigns.campaign_sending import cancel_campaign, cancellable

    with django_capture_on_commit_callbacks():
        request_start(campaign, actor=marketer)
    assert cancellable(fresh(campaign))

    cancel_campaign(fresh(campaign), actor=marketer)

    assert run_requested_start(campaign.pk) == NOT_STARTING  # the worker, afterwards
    assert fresh(campaign).status == CampaignStatus.CANCELLED and not CampaignRecipient.objects.exists()
    assert entry(campaign, "campaign.cancelled").data["from"] == "starting"
    assert "campaign.started" not in actions(campaign)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_cancellation_during_the_snapshot_waits_for_it_and_cancels_what_it_wrote(
        campaign, marketer, welcome_templates):
    import threading
    import time

    from django.db import connections, transaction

    from campaigns.campaign_sending import cancel_campaign
    from campaigns.models import RecipientOutcome
    from templates.models import Template

    request_start(campaign, actor=marketer)  # committed: the hand-off went to the test broker
    holding, release, errors = threading.Event(), threading.Event(), []

    def in_thread(work):
        def run():
            try:
                work()
            except Exception as exc:  # surfaced through `errors`
                errors.append(exc)
            finally:
                connections.close_all()
        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def hold_the_template():
        # The snapshot pins its variant to the template: holding the template stops it there,
        # after it has locked the campaign and read its audience.
        with transaction.atomic():
            Template.objects.select_for_update().get(pk=welcome_templates[0].pk)
            holding.set()
            release.wait(30)

    def sessions_waiting() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                           "AND datname = current_database() AND pid <> pg_backend_pid()")
            return cursor.fetchone()[0]

    def wait_until(count):
        deadline = time.monotonic() + 10
        while sessions_waiting() < count:
            assert time.monotonic() < deadline, f"fewer than {count} sessions waited on a lock"
            time.sleep(0.05)

    holder = in_thread(hold_the_template)
    assert holding.wait(10)
    starter = in_thread(lambda: run_requested_start(campaign.pk))
    wait_until(1)
    canceller = in_thread(lambda: cancel_campaign(fresh(campaign), actor=marketer))
    wait_until(2)
    release.set()
    for thread in (holder, starter, canceller):
        thread.join(30)

    assert not errors
    assert fresh(campaign).status == CampaignStatus.CANCELLED
    assert entry(campaign, "campaign.cancelled").data["from"] == "sending"
    assert set(CampaignRecipient.objects.values_list("outcome", "skip_reason")) == {
        (RecipientOutcome.SKIPPED, "cancelled")}
    assert CampaignRecipient.objects.count() == 3


def test_the_task_is_acked_late_and_keeps_no_result():
    assert tasks.start_campaign_task.acks_late is True and tasks.start_campaign_task.ignore_result is True


# --- the sweep -------------------------------------------------------------------------------------

def test_the_sweep_hands_a_stalled_start_off_again_then_gives_up_after_its_attempts(
        campaign, marketer, settings, django_capture_on_commit_callbacks):
    settings.OMNI_CAMPAIGN_START_RETRY_AFTER = timedelta(minutes=10)
    settings.OMNI_CAMPAIGN_START_ATTEMPTS = 2
    asked = timezone.now()
    # given a start whose worker was lost (its hand-off never runs here)
    with django_capture_on_commit_callbacks():
        request_start(campaign, actor=marketer, now=asked)

    # not yet stalled after 5 minutes
    with django_capture_on_commit_callbacks() as hand_offs:
        assert retry_stalled_starts(now=asked + timedelta(minutes=5)) == {}
    assert hand_offs == []

    # after 11 minutes it is handed off again, its attempts counted and audited
    with django_capture_on_commit_callbacks() as hand_offs:
        assert retry_stalled_starts(now=asked + timedelta(minutes=11)) == {RETRIED: 1}
    assert len(hand_offs) == 1
    retried = fresh(campaign)
    assert (retried.status, retried.start_attempts) == (CampaignStatus.STARTING, 2)
    assert retried.start_enqueued_at == asked + timedelta(minutes=11)
    assert entry(campaign, "campaign.start_retried").data == {"attempt": 2}

    # 10 minutes after that hand-off, and none left to try: back to draft, saying why
    with django_capture_on_commit_callbacks() as hand_offs:
        assert retry_stalled_starts(now=asked + timedelta(minutes=15)) == {}
        assert retry_stalled_starts(now=asked + timedelta(minutes=22)) == {GAVE_UP: 1}
    assert hand_offs == []
    abandoned = fresh(campaign)
    assert abandoned.status == CampaignStatus.DRAFT and not CampaignRecipient.objects.exists()
    assert abandoned.start_refused_problems == [
        "The start did not finish after 2 attempts (a worker may have stopped while taking the audience "
        "snapshot); nothing was sent. Start it again."]
    assert entry(campaign, "campaign.start_abandoned").data["attempts"] == 2


def test_a_start_handed_off_again_by_the_sweep_starts_and_the_sweep_leaves_it_then(
        campaign, marketer, settings, eager_celery, django_capture_on_commit_callbacks):
    asked = timezone.now() - timedelta(hours=1)
    with django_capture_on_commit_callbacks():
        request_start(campaign, actor=marketer, now=asked)

    with django_capture_on_commit_callbacks(execute=True):
        assert retry_stalled_starts() == {RETRIED: 1}

    assert fresh(campaign).status == CampaignStatus.SENDING
    assert CampaignRecipient.objects.filter(campaign=campaign).count() == 3
    assert retry_stalled_starts(now=timezone.now() + timedelta(days=1)) == {}


def test_the_sweep_runs_every_minute_on_beat():
    entry_ = django_settings.CELERY_BEAT_SCHEDULE["omni-retry-stalled-campaign-starts"]
    assert entry_["task"] == tasks.retry_stalled_starts_task.name == "campaigns.tasks.retry_stalled_starts_task"
    assert entry_["schedule"] == 60.0
