"""Retention: bodies older than OMNI_RETENTION_DAYS are blanked in batches, rows kept, runs audited."""
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels.models import (
    Delivery,
    DeliveryStatus,
    InboundMessage,
    Message,
    MessageSource,
    MessageStatus,
    OutboxMessage,
)
from channels.retention import apply_retention
from channels.tasks import apply_retention_task
from omni.models import AuditEntry

DAYS = 30


@pytest.fixture
def old_and_new(contact, template_version, now):
    """For each kind of body, one older than the retention period and one within it."""
    made = {}
    for age, label in ((DAYS + 1, "old"), (DAYS - 1, "new")):
        at = now - timedelta(days=age)
        sent = Message.objects.create(contact=contact, purpose="transactional", template_version=template_version,
                                      source=MessageSource.API, channel_plan=[{"channel": "email"}],
                                      status=MessageStatus.DELIVERED, created_at=at)
        delivery = Delivery.objects.create(message=sent, contact=contact, channel="email", provider="sandbox",
                                           status=DeliveryStatus.DELIVERED, to_address=contact.email, queued_at=at,
                                           subject=f"{label} subject", text_body=f"{label} text",
                                           html_body=f"<p>{label}</p>", content={"title": label})
        OutboxMessage.objects.create(delivery=delivery, channel="email", to_address=contact.email,
                                     subject=f"{label} subject", text_body=f"{label} text",
                                     provider_message_id=f"outbox-{label}", simulated_outcome="delivered",
                                     created_at=at)
        own = Message.objects.create(contact=contact, purpose="transactional", source=MessageSource.AGENT,
                                     content=[{"channel": "sms", "locale": "en", "text_body": f"{label} reply"}],
                                     channel_plan=[{"channel": "sms"}], status=MessageStatus.SENT, created_at=at)
        inbound = InboundMessage.objects.create(contact=contact, channel="sms", provider="sandbox",
                                                provider_message_id=f"in-{label}", from_address=contact.phone,
                                                body=f"{label} inbound", media=[{"url": f"https://m.example/{label}"}],
                                                raw={"Body": label}, received_at=at)
        made[label] = {"delivery": delivery, "own": own, "inbound": inbound}
    return made


def bodies(made) -> dict:
    delivery = Delivery.objects.get(pk=made["delivery"].pk)
    outbox = OutboxMessage.objects.get(delivery=delivery)
    return {
        "delivery": (delivery.subject, delivery.text_body, delivery.html_body, delivery.content),
        "outbox": (outbox.subject, outbox.text_body),
        "own": Message.objects.get(pk=made["own"].pk).content,
        "inbound": InboundMessage.objects.values_list("body", "media", "raw").get(pk=made["inbound"].pk),
    }


BLANK = {"delivery": ("", "", "", {}), "outbox": ("", ""), "own": [], "inbound": ("", [], {})}


def test_retention_blanks_only_bodies_older_than_the_setting_and_keeps_the_rows(old_and_new, now, settings):
    settings.OMNI_RETENTION_DAYS = DAYS
    new_before = bodies(old_and_new["new"])

    counts = apply_retention(now)

    assert bodies(old_and_new["old"]) == BLANK
    assert bodies(old_and_new["new"]) == new_before and new_before["delivery"][1] == "new text"
    assert counts == {"deliveries": 1, "sandbox_outbox": 1, "own_content": 1, "inbound": 1, "complete": True}
    old = Delivery.objects.get(pk=old_and_new["old"]["delivery"].pk)
    assert (old.status, old.to_address) == (DeliveryStatus.DELIVERED, old_and_new["old"]["delivery"].to_address)


def test_each_run_is_audited_with_its_counts(old_and_new, now, settings):
    settings.OMNI_RETENTION_DAYS = DAYS

    apply_retention(now)
    apply_retention(now)

    first, second = AuditEntry.objects.filter(action="retention.applied").order_by("pk")
    assert first.data["counts"] == {"deliveries": 1, "sandbox_outbox": 1, "own_content": 1, "inbound": 1}
    assert first.data["days"] == DAYS and first.data["complete"] is True and first.reason == "complete"
    assert second.data["counts"] == {"deliveries": 0, "sandbox_outbox": 0, "own_content": 0, "inbound": 0}


def test_retention_is_off_at_zero_days(old_and_new, now, settings):
    settings.OMNI_RETENTION_DAYS = 0

    assert apply_retention(now) is None

    assert bodies(old_and_new["old"])["delivery"][1] == "old text"
    assert not AuditEntry.objects.filter(action="retention.applied").exists()


def test_work_still_to_be_sent_keeps_its_body(contact, template_version, now, settings):
    settings.OMNI_RETENTION_DAYS = DAYS
    at = now - timedelta(days=DAYS + 5)
    waiting = Message.objects.create(contact=contact, purpose="transactional", source=MessageSource.AGENT,
                                     content=[{"channel": "sms", "locale": "en", "text_body": "still to go"}],
                                     channel_plan=[{"channel": "sms"}], status=MessageStatus.DEFERRED, created_at=at)
    queued = Delivery.objects.create(message=waiting, contact=contact, channel="sms", provider="sandbox",
                                     status=DeliveryStatus.QUEUED, to_address=contact.phone, queued_at=at,
                                     text_body="still to go")

    apply_retention(now)

    assert Message.objects.get(pk=waiting.pk).content[0]["text_body"] == "still to go"
    assert Delivery.objects.get(pk=queued.pk).text_body == "still to go"


def test_a_run_blanks_in_bounded_batches_and_the_next_run_goes_on(contact, template_version, now, settings):
    settings.OMNI_RETENTION_DAYS = DAYS
    at = now - timedelta(days=DAYS + 1)
    for index in range(7):
        InboundMessage.objects.create(contact=contact, channel="sms", provider="sandbox",
                                      provider_message_id=f"bulk-{index}", from_address=contact.phone,
                                      body=f"body {index}", received_at=at + timedelta(minutes=index))

    with CaptureQueriesContext(connection) as queries:
        first = apply_retention(now, batch=2, max_batches=2)

    assert (first["inbound"], first["complete"]) == (4, False)
    # the four oldest went first
    assert list(InboundMessage.objects.filter(body="").order_by("received_at")
                .values_list("provider_message_id", flat=True)) == [f"bulk-{i}" for i in range(4)]
    # one statement per batch, whatever the batch size: 2 batches of inbound, 1 per other kind, the audit entry
    updates = [q for q in queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 5
    second = apply_retention(now, batch=2, max_batches=2)
    assert (second["inbound"], second["complete"]) == (3, True)
    assert not InboundMessage.objects.exclude(body="").exists()


def test_the_beat_task_applies_the_setting(old_and_new, settings):
    settings.OMNI_RETENTION_DAYS = DAYS

    apply_retention_task()

    assert bodies(old_and_new["old"]) == BLANK
    assert bodies(old_and_new["new"])["inbound"][0] == "new inbound"


def test_beat_runs_retention_daily_on_the_default_queue():
    entry = settings.CELERY_BEAT_SCHEDULE["omni-apply-retention"]

    assert entry["task"] == "channels.tasks.apply_retention_task"
    assert entry["options"]["queue"] == "default"
    assert entry["schedule"].hour == {2} and entry["schedule"].minute == {41}
