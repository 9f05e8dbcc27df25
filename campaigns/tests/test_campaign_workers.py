"""Two workers fanning out one campaign, and a worker killed mid-batch: never a duplicate message
(PostgreSQL: FOR UPDATE SKIP LOCKED, and a killed worker's transaction rolled back)."""
import json
import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from campaigns.campaign_sending import RECIPIENT_LEASE, send_campaign_batch
from campaigns.models import CampaignRecipient, CampaignStatus, RecipientOutcome
from campaigns.tick import tick
from channels.models import Message
from omni.tests.fakes import run_concurrently

from .sending_helpers import reachable_contacts, started_campaign

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SKIP LOCKED claiming needs PostgreSQL; set DATABASE_URL to run it (SQLite serializes writers instead)",
)
pytestmark = [pytest.mark.postgres, needs_postgres]

AUDIENCE = 2500


@pytest.fixture(autouse=True)
def whole_stages(settings):
    settings.OMNI_TICK_STAGE_SECONDS = 600


@pytest.fixture
def campaign(transactional_db):
    return started_campaign(reachable_contacts(AUDIENCE))


def _one_message_per_recipient(campaign) -> None:
    assert Message.objects.count() == AUDIENCE
    assert not Message.objects.values("contact_id").annotate(n=Count("id")).filter(n__gt=1).exists()
    recipients = CampaignRecipient.objects.filter(campaign=campaign)
    assert set(recipients.values_list("outcome", flat=True)) == {RecipientOutcome.SENT}
    assert recipients.values("message_id").distinct().count() == AUDIENCE


def test_two_workers_fanning_out_one_campaign_send_each_recipient_once(campaign):
    now = timezone.now()

    reports, errors = run_concurrently(lambda: tick(now))

    assert not errors
    assert sum(r.campaign_messages for r in reports) == AUDIENCE
    _one_message_per_recipient(campaign)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT


def test_two_workers_given_the_same_batch_send_it_once(campaign):
    now = timezone.now()
    ids = list(campaign.recipients.values_list("pk", flat=True))
    campaign.recipients.update(claimed_at=now)

    # A redelivered task: SKIP LOCKED may split the batch between them; each recipient goes once.
    results, errors = run_concurrently(lambda: send_campaign_batch(ids, now))

    assert not errors
    assert sum(results) == AUDIENCE
    _one_message_per_recipient(campaign)


def test_a_worker_killed_mid_batch_leaves_its_batch_to_another_after_the_lease(campaign):
    now = timezone.now()
    handed = []
    tick(now, hand_off_recipients_to=handed.append)
    batch = handed[0]

    worker = _worker_holding_its_batch_uncommitted(batch)
    try:
        # It created and routed the messages but has not committed: its rows are locked.
        assert worker.stdout.readline().strip() == str(len(batch))
        assert send_campaign_batch(batch, now) == 0  # another worker given the batch skips it
        within_lease = tick(now + timedelta(seconds=30))
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)

    assert not Message.objects.filter(campaign_recipient__in=batch).exists()  # rolled back with the worker
    after_lease = tick(now + RECIPIENT_LEASE + timedelta(seconds=1))

    assert within_lease.campaign_messages == 0
    assert after_lease.campaign_messages == AUDIENCE
    _one_message_per_recipient(campaign)


def _worker_holding_its_batch_uncommitted(batch: list[int]) -> subprocess.Popen:
    """Another process that sends `batch` inside a transaction, says how many it sent, and
    waits, uncommitted, until it is killed."""
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    code = (
        "import json, sys, time, django; django.setup()\n"
        "from django.db import transaction\n"
        "from campaigns.campaign_sending import send_campaign_batch\n"
        "with transaction.atomic():\n"
        "    print(send_campaign_batch(json.loads(sys.argv[1])), flush=True)\n"
        "    time.sleep(600)\n"
    )
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "omni.settings", "DEBUG": "false",
           "OMNI_ENV": "development"}
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(batch)], cwd=settings.BASE_DIR, env=env,
                            stdout=subprocess.PIPE, text=True)
