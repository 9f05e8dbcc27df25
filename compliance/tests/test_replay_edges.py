"""Edges of policy replay and its confirm: what compliance staff read in a replay must be what
the confirm saves over."""
from datetime import time

import pytest
from django.urls import reverse

from compliance.models import QuietHours, ReplayRun
from compliance.tests.test_replay_admin import (  # noqa: F401 (fixtures)
    QUIET_FORM,
    compliance_client,
    confirm,
    nights,
    post_and_follow_the_replay,
)

pytestmark = pytest.mark.django_db


def test_a_confirm_after_the_rule_changed_since_the_replay_is_replayed_again_not_saved(
        compliance_client, eager_celery, nights, django_capture_on_commit_callbacks):
    # given a replay of moving the quiet hours' start to 19:00, read against the rule at version 1
    url = reverse("admin:compliance_quiethours_change", args=[nights.pk])
    _, page = post_and_follow_the_replay(compliance_client, url, {**QUIET_FORM, "start": "19:00"},
                                         django_capture_on_commit_callbacks)
    # and someone else changes the rule meanwhile (its end moved to 09:00: version 2)
    other = QuietHours.objects.get(pk=nights.pk)
    other.end = time(9)
    other.save()

    # when the replay, which compared against the rule as it no longer is, is confirmed
    with django_capture_on_commit_callbacks(execute=True):
        answer = confirm(compliance_client, page)

    # then the change is replayed again against the rule now, and the other change is not overwritten unseen
    assert answer.status_code == 302 and ReplayRun.objects.count() == 2
    assert answer["Location"] == reverse("admin:compliance_quiethours_replay", args=[ReplayRun.objects.latest("pk").pk])
    other.refresh_from_db()
    assert (other.start, other.end, other.version) == (time(22), time(9), 2)
