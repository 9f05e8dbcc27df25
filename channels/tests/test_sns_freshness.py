"""An SNS message is only taken while it is fresh: its signed Timestamp bounds how long a
captured message can be replayed (AWS's message validators refuse one older than an hour)."""
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from channels.models import DeliveryEvent, DeliveryStatus, MessageStatus
from channels.tests.ses_events import ses_event
from channels.webhooks import sns
from compliance.models import Suppression
from omni.models import AuditEntry

SES_URL = "/webhooks/ses/"
NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def post(client, envelope):
    return client.post(SES_URL, data=json.dumps(envelope), content_type="text/plain")


def sns_time(moment: datetime) -> str:
    """A time written as SNS writes its Timestamp: 2025-05-01T12:00:00.000Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ago(**delta) -> str:
    return sns_time(timezone.now() - timedelta(**delta))


@pytest.fixture
def ses_delivery(make_delivery):
    """An email SES accepted, with the SES message id "ses-msg-1"."""
    return make_delivery("email", provider="ses", status=DeliveryStatus.SENT, provider_message_id="ses-msg-1",
                         message_status=MessageStatus.SENT)


def test_a_bounce_signed_more_than_an_hour_ago_is_refused_and_changes_nothing(client, sns_signer, ses_delivery,
                                                                              caplog):
    # given a genuine bounce notification captured when SNS sent it, 61 minutes ago
    envelope = sns_signer.notification(ses_event("bounce", "ses-msg-1"), timestamp=ago(minutes=61))

    # when someone posts it again
    with caplog.at_level(logging.WARNING, logger="channels.webhooks.sns"):
        response = post(client, envelope)

    # then it is refused, stores nothing and suppresses nobody
    assert response.status_code == 403
    assert not DeliveryEvent.objects.exists()
    assert not Suppression.objects.exists()
    ses_delivery.refresh_from_db()
    assert ses_delivery.status == DeliveryStatus.SENT
    assert envelope["MessageId"] in caplog.text and "too old" in caplog.text


def test_a_stale_message_is_refused_before_its_certificate_is_fetched(client, sns_signer, db):
    envelope = sns_signer.notification("plain text", timestamp=ago(hours=2))

    response = post(client, envelope)

    assert response.status_code == 403
    assert not sns_signer.requests


def test_a_subscription_confirmation_signed_hours_ago_is_never_visited(client, sns_signer, settings, db):
    # given a captured confirmation, never stored anywhere, replayed three hours later
    settings.SNS_SUBSCRIBE_URL_REGEX = sns_signer.cert_url_regex
    envelope = sns_signer.sign({**sns_signer.subscription_confirmation(), "Timestamp": ago(hours=3)})

    response = post(client, envelope)

    assert response.status_code == 403
    assert not any(request.path == "/confirm-subscription" for request in sns_signer.requests)
    assert not AuditEntry.objects.filter(action=sns.SUBSCRIPTION_CONFIRMED).exists()


def test_a_message_signed_in_the_future_is_refused(client, sns_signer, ses_delivery, caplog):
    envelope = sns_signer.notification(ses_event("delivery", "ses-msg-1"), timestamp=ago(minutes=-10))

    with caplog.at_level(logging.WARNING, logger="channels.webhooks.sns"):
        response = post(client, envelope)

    assert response.status_code == 403
    assert not DeliveryEvent.objects.exists()
    assert "in the future" in caplog.text


@pytest.mark.parametrize("timestamp", ["yesterday", "", "2025-05-01T12:00:00", "0001-01-01T00:00:00.000Z",
                                       "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999-14:00"])
def test_a_timestamp_sns_cannot_have_signed_at_is_refused(client, sns_signer, ses_delivery, timestamp):
    # given a signed notification whose Timestamp is no time SNS could have signed it at
    envelope = sns_signer.notification(ses_event("delivery", "ses-msg-1"))
    envelope = sns_signer.sign({**envelope, "Timestamp": timestamp})

    response = post(client, envelope)

    assert response.status_code == 403
    assert not DeliveryEvent.objects.exists()


def test_a_retry_within_the_hour_is_taken(client, sns_signer, ses_delivery):
    # given SNS retrying a delivery it first tried 59 minutes ago (the default policy spans about an hour)
    envelope = sns_signer.notification(ses_event("delivery", "ses-msg-1"), timestamp=ago(minutes=59))

    response = post(client, envelope)

    assert response.status_code == 200
    ses_delivery.refresh_from_db()
    assert ses_delivery.status == DeliveryStatus.DELIVERED


def test_a_clock_a_little_ahead_of_ours_is_tolerated(client, sns_signer, ses_delivery):
    envelope = sns_signer.notification(ses_event("delivery", "ses-msg-1"), timestamp=ago(minutes=-2))

    assert post(client, envelope).status_code == 200


def test_a_longer_retry_policy_is_served_by_raising_the_setting(client, sns_signer, ses_delivery, settings):
    settings.SNS_MAX_AGE_SECONDS = 6 * 3600
    envelope = sns_signer.notification(ses_event("delivery", "ses-msg-1"), timestamp=ago(hours=5))

    assert post(client, envelope).status_code == 200


@pytest.mark.parametrize(("timestamp", "fresh"), [
    (sns_time(NOW - timedelta(seconds=3600)), True),
    (sns_time(NOW - timedelta(seconds=3600, milliseconds=1)), False),
    (sns_time(NOW + timedelta(minutes=5)), True),
    (sns_time(NOW + timedelta(minutes=5, milliseconds=1)), False),
    ("2025-05-01T14:00:00+02:00", True),  # the same instant as NOW, in another offset
])
def test_the_edges_of_the_accepted_window(settings, timestamp, fresh):
    settings.SNS_MAX_AGE_SECONDS = 3600

    assert (sns.timestamp_problem(timestamp, NOW) == "") is fresh
