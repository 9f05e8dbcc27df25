"""The settings every inbound message is read with are cached per process; a change made in
another process (no signal here: a queryset update, as another process's save looks from here)
is noticed by the next message."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels.inbound_settings import inbound_settings
from channels.models import BusinessHours, Conversation, OpeningHours, ServiceLevel
from compliance.models import Consent, KeywordList

from .test_conversations import ALICE, write_directly

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def checked_every_time(settings):
    settings.OMNI_INBOUND_SETTINGS_RECHECK_SECONDS = 0


def test_another_process_s_change_shows_within_the_recheck_time(contact, keyword_lists, settings, monkeypatch):
    settings.OMNI_INBOUND_SETTINGS_RECHECK_SECONDS = 1.0
    clock = [1000.0]
    monkeypatch.setattr("omni.lib.table_cache.time.monotonic", lambda: clock[0])
    assert "arret" not in inbound_settings().keyword_lists["stop"]

    # when another process adds ARRET to the English stop words
    stop = KeywordList.objects.get(language="en", kind="stop")
    KeywordList.objects.filter(pk=stop.pk).update(words=f"{stop.words}, ARRET",
                                                  updated_at=timezone.now() + timedelta(seconds=1))

    # then this process still reads its copy for up to a second, without a query, then the new words
    clock[0] += 0.5
    with CaptureQueriesContext(connection) as queries:
        assert "arret" not in inbound_settings().keyword_lists["stop"]
    assert len(queries) == 0
    clock[0] += 0.6
    assert "arret" in inbound_settings().keyword_lists["stop"]


def test_a_stop_word_another_process_adds_is_honoured_by_the_next_message(contact, keyword_lists):
    Consent.objects.create(contact=contact, channel="sms", purpose="marketing", status="granted")
    inbound_settings()  # read once, as after this process's first message

    # when another process adds ARRET to the English stop words
    stop = KeywordList.objects.get(language="en", kind="stop")
    KeywordList.objects.filter(pk=stop.pk).update(words=f"{stop.words}, ARRET",
                                                  updated_at=timezone.now() + timedelta(seconds=1))
    inbound = write_directly(ALICE, "ARRET", sid="SMarret")

    # then
    assert inbound.keyword == "stop"
    assert Consent.objects.get(contact=contact, channel="sms", purpose="marketing").status == "revoked"


def test_a_service_level_another_process_changes_sets_the_next_conversations_due_time(contact):
    hours = BusinessHours.objects.create(name="Always", timezone="UTC")
    OpeningHours.objects.bulk_create([OpeningHours(business_hours=hours, weekday=day, opens="00:00", closes="23:59")
                                      for day in range(7)])
    level = ServiceLevel.objects.create(channel="sms", business_hours=hours, first_response_minutes=60)
    at = timezone.now().replace(microsecond=0)
    first = write_directly(ALICE, "Hello", sid="SMs1", at=at)
    Conversation.objects.filter(pk=first.conversation_id).update(status="closed", closed_at=at)

    # when another process halves the first response time
    ServiceLevel.objects.filter(pk=level.pk).update(first_response_minutes=30,
                                                    updated_at=timezone.now() + timedelta(seconds=1))
    second = write_directly(ALICE, "Hello again", sid="SMs2", at=at)

    # then
    assert first.conversation.first_response_due_at == at + timedelta(minutes=60)
    assert second.conversation.first_response_due_at == at + timedelta(minutes=30)


def test_a_deleted_service_level_is_noticed_by_the_count(contact):
    level = ServiceLevel.objects.create(channel="sms", first_response_minutes=60)
    assert inbound_settings().schedule("sms")[1] == level

    ServiceLevel.objects.filter(pk=level.pk)._raw_delete(ServiceLevel.objects.db)  # no signal, as elsewhere

    assert inbound_settings().schedule("sms")[1] is None
