"""A campaign's progress bar: its recipients decided out of its audience, by what became of their
messages, counted in one query whatever the audience; and the reusable bar (omni/lib/progress.py)
drawn accessibly."""
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.template.loader import render_to_string
from django.test.utils import CaptureQueriesContext

from campaigns.campaign_progress import campaign_progress, progress_counts
from campaigns.models import Campaign, CampaignRecipient, RecipientOutcome
from channels.models import MessageSource, MessageStatus
from channels.routing import create_message
from channels.state import move_message
from omni.lib.progress import Progress, ProgressSegment

from .conftest import make_contact

M = MessageStatus
# How a message reaches each status from pending, one allowed move at a time.
PATHS = {M.QUEUED: [M.QUEUED], M.SENT: [M.QUEUED, M.SENT], M.DELIVERED: [M.QUEUED, M.DELIVERED],
         M.ENGAGED: [M.QUEUED, M.DELIVERED, M.ENGAGED], M.FAILED: [M.FAILED], M.SUPPRESSED: [M.SUPPRESSED],
         M.PENDING: []}


@pytest.fixture
def campaign(welcome_templates):
    return Campaign.objects.create(name="Spring sale", template=welcome_templates[0],
                                   owner=get_user_model().objects.create(username="owner"))


def add_recipient(campaign, n: int, outcome=RecipientOutcome.PENDING, message_status=None) -> CampaignRecipient:
    contact = make_contact(f"c{campaign.pk}-{n}", email=f"c{n}@example.com", consents=())
    message = None
    if message_status is not None:
        message, _ = create_message(contact=contact, channel_plan=[{"channel": "email"}],
                                    source=MessageSource.CAMPAIGN, purpose="marketing",
                                    content=[{"channel": "email", "subject": "Hi", "text_body": "Hi"}])
        for status in PATHS[message_status]:
            assert move_message(message, status, at_plan_step=0)
    return CampaignRecipient.objects.create(campaign=campaign, contact=contact, outcome=outcome, message=message)


def test_the_bar_counts_each_recipient_once_by_what_became_of_it(campaign):
    # given eleven recipients at every stage of a send
    stages = [(RecipientOutcome.PENDING, None), (RecipientOutcome.PENDING, None),
              (RecipientOutcome.SENT, M.PENDING), (RecipientOutcome.SENT, M.QUEUED),
              (RecipientOutcome.SENT, M.SENT), (RecipientOutcome.SENT, M.DELIVERED),
              (RecipientOutcome.SENT, M.ENGAGED), (RecipientOutcome.SENT, M.FAILED),
              (RecipientOutcome.SENT, M.SUPPRESSED), (RecipientOutcome.HOLDOUT, None),
              (RecipientOutcome.SKIPPED, None)]
    for n, (outcome, status) in enumerate(stages):
        add_recipient(campaign, n, outcome, status)

    # when its progress is read
    progress = campaign_progress(campaign)

    # then the audience is every recipient, and each decided one is in exactly one part
    counts = {segment.key: segment.count for segment in progress.segments}
    assert progress.total == 11
    assert counts == {"delivered": 2, "sent": 1, "queued": 2, "failed": 2, "held_out": 1, "left_out": 1}
    assert progress.done == 9 and progress.remaining == 2
    assert progress.percent == 81
    assert progress.words.startswith("Recipients decided: 9 of 11 (81%); delivered 2")


def test_progress_is_counted_in_one_query_for_any_number_of_campaigns(campaign, welcome_templates):
    other = Campaign.objects.create(name="Autumn sale", template=welcome_templates[0])
    for n in range(3):
        add_recipient(campaign, n, RecipientOutcome.SENT, M.SENT)
        add_recipient(other, n + 10, RecipientOutcome.SKIPPED)
    add_recipient(other, 20)

    with CaptureQueriesContext(connection) as queries:
        counts = progress_counts([campaign.pk, other.pk])

    assert len(queries) == 1
    assert counts[campaign.pk]["sent"] == 3 and counts[campaign.pk]["total"] == 3
    assert counts[other.pk]["left_out"] == 3 and counts[other.pk]["total"] == 4


def test_a_campaign_without_recipients_has_an_empty_bar(campaign):
    progress = campaign_progress(campaign)
    assert (progress.total, progress.done, progress.percent) == (0, 0, 0)


def test_the_bar_is_a_progressbar_with_its_figures_in_words():
    progress = Progress(label="Rows imported", total=200, remaining_label="to read",
                        segments=[ProgressSegment("done", "imported", 150), ProgressSegment("failed", "refused", 10)])

    html = render_to_string("omni/progress_bar.html", {"progress": progress, "bar_id": "import-bar"})

    assert 'role="progressbar"' in html
    assert 'aria-valuemin="0" aria-valuemax="200" aria-valuenow="160"' in html
    assert 'aria-valuetext="Rows imported: 160 of 200 (80%); imported 150, refused 10; to read 40"' in html
    assert 'data-segment="done" style="width: 75.00%"' in html
    assert 'data-segment="failed" style="width: 5.00%"' in html
    assert "imported: <span data-count=\"done\">150</span>" in html
    assert "/static/omni/progress_bar.css" in html and "/static/omni/progress_bar.js" in html
    assert "http" not in html  # nothing from a CDN
    assert "data-progress-url" not in html  # it refreshes only when given a URL


def test_done_never_exceeds_the_total():
    progress = Progress(label="x", total=5, segments=[ProgressSegment("done", "done", 7)])
    assert (progress.done, progress.remaining, progress.percent) == (5, 0, 100)
    assert Progress(label="x", total=0).percent == 0
