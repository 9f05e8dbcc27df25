"""In a real browser, a compliance user tightens a quiet-hours window, reads its replay (the
SMS of yesterday evening would have been deferred) and then saves it."""
from datetime import time, timedelta

import pytest
from django.utils import timezone

from compliance import decisions, gate
from compliance.models import QuietHours, ReplayRun, ReplayStatus
from contacts.models import Contact
from omni.models import AuditEntry
from omni.tests.browser import expect

from .browser_steps_replay import replay_quiet_hours_step

pytestmark = pytest.mark.browser


def test_a_compliance_user_reads_the_replay_of_a_tighter_quiet_hours_window_then_saves_it(
        demo_logins, eager_celery, live_server, page, log_in, screenshot):
    # given nights quiet from 22:00, and an SMS allowed at 20:00 yesterday
    rule = QuietHours.objects.create(name="Nights", start=time(22), end=time(7))
    evening = (timezone.now() - timedelta(days=1)).replace(hour=20, minute=0, second=0, microsecond=0)
    who = Contact.objects.create(external_id="ann", phone="+14155550100", timezone="UTC")
    verdict = gate.check(who, "sms", "informational", who.phone, now=evening, message_id=1)
    decisions.record([decisions.Ruling(verdict, 1, who.pk)], evening)
    log_in("compliance", demo_logins["compliance"])

    # when they move the start to 19:00, read the replay and confirm
    said = replay_quiet_hours_step(page, live_server.url, rule, start=time(19), screenshot=screenshot)

    # then the page said the SMS would have been deferred, and the rule is saved once, audited
    assert "1 decided otherwise" in said["summary"]
    assert any("SMS" in row and "-1 allowed" in row and "+1 deferred" in row for row in said["differences"])
    assert any("allowed → deferred" in change for change in said["changes"])
    rule.refresh_from_db()
    assert (rule.start, rule.version) == (time(19), 2)
    assert ReplayRun.objects.get().status == ReplayStatus.DONE
    assert AuditEntry.objects.filter(action="quiet_hours.changed").count() == 1

    # and the example decision opens from the replay (kept on the run's page)
    page.goto(f"/admin/compliance/quiethours/replay/{ReplayRun.objects.get().pk}/")
    with page.expect_navigation():
        page.locator(".replay-example").first.click()
    expect(page.locator("h1")).to_have_text("View decision")
    screenshot("an example decision from the replay")
