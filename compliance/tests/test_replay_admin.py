"""Before a quiet-hours rule or a cap is saved or deleted in the admin, compliance staff read its
replay: the task runs with a progress bar, the page shows what would change per channel and
purpose with example decisions, and only its confirm button saves, through the audited path."""
from datetime import time, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from compliance import decisions, gate, replay
from compliance.models import FrequencyCap, QuietHours, ReplayRun, ReplayStatus
from contacts.models import Contact
from omni.models import AuditEntry

pytestmark = pytest.mark.django_db

EVENING = (timezone.now() - timedelta(days=1)).replace(hour=20, minute=0, second=0, microsecond=0)
QUIET_FORM = {"name": "Nights", "channel": "", "purpose": "", "country": "", "region": "", "start": "22:00",
              "end": "07:00", "active": "on", "_save": "Save"}


@pytest.fixture
def compliance_client(client, user_in):
    client.force_login(user_in("cora", "Compliance"))
    return client


@pytest.fixture
def nights():
    return QuietHours.objects.create(name="Nights", start=time(22), end=time(7))


@pytest.fixture
def an_evening_send(nights):
    """An SMS allowed at 20:00 yesterday, kept as a decision."""
    who = Contact.objects.create(external_id="ann", phone="+14155550100", timezone="UTC")
    verdict = gate.check(who, "sms", "informational", who.phone, now=EVENING, message_id=1)
    [row] = decisions.record([decisions.Ruling(verdict, 1, who.pk)], EVENING)
    return row


def post_and_follow_the_replay(client, url, data, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(url, data)
    assert answer.status_code == 302, answer.content.decode()[:2000]
    return answer, client.get(answer["Location"])


def confirm(client, page):
    """Post the replay page's confirm form as a browser would: its hidden fields, to its action."""
    form = page.context["form_data"]
    data = {}
    for name, value in form:
        data.setdefault(name, []).append(value)
    data[page.context["run_field"]] = str(page.context["run"].pk)
    return client.post(page.context["confirm_url"], data)


def test_changing_quiet_hours_shows_the_replay_and_saves_only_on_confirm(
        compliance_client, eager_celery, nights, an_evening_send, django_capture_on_commit_callbacks):
    url = reverse("admin:compliance_quiethours_change", args=[nights.pk])

    # when the window is changed to start at 19:00
    answer, page = post_and_follow_the_replay(compliance_client, url, {**QUIET_FORM, "start": "19:00"},
                                              django_capture_on_commit_callbacks)

    # then the replay ran as a task and its page shows the SMS at 20:00 deferred, with an example linked
    run = ReplayRun.objects.get()
    assert answer["Location"] == reverse("admin:compliance_quiethours_replay", args=[run.pk])
    assert (run.status, run.total, run.done) == (ReplayStatus.DONE, 1, 1)
    text = page.content.decode()
    assert 'role="progressbar"' in text and "1 of 1" in text.replace("</strong> of <span data-progress-total>", " of ")
    assert 'data-channel="SMS"' in text and "1 → 0 (-1 allowed)" in text and "0 → 1 (+1 deferred)" in text
    assert reverse("admin:compliance_decision_change", args=[an_evening_send["id"]]) in text
    assert "Each decision is replayed alone" in text
    # and nothing is saved yet
    nights.refresh_from_db()
    assert (nights.start, nights.version) == (time(22), 1)
    assert not AuditEntry.objects.filter(action="quiet_hours.changed").exists()

    # when the change is confirmed
    saved = confirm(compliance_client, page)

    # then it is saved, once, through the audited path
    assert saved.status_code == 302 and saved["Location"] == reverse("admin:compliance_quiethours_changelist")
    nights.refresh_from_db()
    assert (nights.start, nights.version) == (time(19), 2)
    assert AuditEntry.objects.filter(action="quiet_hours.changed").count() == 1


def test_a_confirm_with_values_other_than_replayed_is_replayed_again_not_saved(
        compliance_client, eager_celery, nights, django_capture_on_commit_callbacks):
    url = reverse("admin:compliance_quiethours_change", args=[nights.pk])
    _, page = post_and_follow_the_replay(compliance_client, url, {**QUIET_FORM, "start": "19:00"},
                                         django_capture_on_commit_callbacks)
    run = page.context["run"]

    with django_capture_on_commit_callbacks(execute=True):
        answer = compliance_client.post(url, {**QUIET_FORM, "start": "18:00", "_replay_run": str(run.pk)})

    assert answer.status_code == 302 and ReplayRun.objects.count() == 2
    nights.refresh_from_db()
    assert nights.start == time(22)


def test_refused_values_show_the_form_with_its_errors_and_start_no_replay(compliance_client, nights):
    answer = compliance_client.post(reverse("admin:compliance_quiethours_change", args=[nights.pk]),
                                    {**QUIET_FORM, "end": "22:00"})

    assert answer.status_code == 200 and "end" in answer.context["adminform"].form.errors
    assert not ReplayRun.objects.exists()


def test_adding_a_cap_is_replayed_then_added(compliance_client, eager_celery, django_capture_on_commit_callbacks):
    form = {"name": "Two a day", "channel": "sms", "purpose": "marketing", "limit": "2", "window_seconds": "86400",
            "action": "defer", "lifecycle_stages": ["trial", "lead"], "active": "on", "_save": "Save"}

    _, page = post_and_follow_the_replay(compliance_client, reverse("admin:compliance_frequencycap_add"), form,
                                         django_capture_on_commit_callbacks)

    assert not FrequencyCap.objects.exists()
    assert "No decision would have been decided otherwise." in page.content.decode()
    assert confirm(compliance_client, page).status_code == 302
    cap = FrequencyCap.objects.get()
    assert (cap.limit, cap.lifecycle_stages) == (2, ["trial", "lead"])
    assert AuditEntry.objects.filter(action="frequency_cap.created").count() == 1


def test_deleting_quiet_hours_is_replayed_then_deleted(admin_client, eager_celery, nights, an_evening_send,
                                                       django_capture_on_commit_callbacks):
    url = reverse("admin:compliance_quiethours_delete", args=[nights.pk])

    _, page = post_and_follow_the_replay(admin_client, url, {"post": "yes"}, django_capture_on_commit_callbacks)

    assert QuietHours.objects.exists() and page.context["confirm_label"] == "Delete the rule"
    assert confirm(admin_client, page).status_code == 302
    assert not QuietHours.objects.exists()
    assert AuditEntry.objects.filter(action="quiet_hours.deleted").count() == 1
    # and the list offers no bulk delete, which would skip the replay
    changelist = admin_client.get(reverse("admin:compliance_quiethours_changelist"))
    assert "delete_selected" not in changelist.content.decode()


def test_a_running_replay_shows_its_progress_and_reloads(compliance_client, nights, django_capture_on_commit_callbacks):
    # no worker: the run waits in the queue
    with django_capture_on_commit_callbacks(execute=False):
        answer = compliance_client.post(reverse("admin:compliance_quiethours_change", args=[nights.pk]),
                                        {**QUIET_FORM, "start": "19:00"})
    run = ReplayRun.objects.get()

    page = compliance_client.get(answer["Location"])
    figures = compliance_client.get(reverse("admin:compliance_quiethours_replay_progress", args=[run.pk])).json()

    text = page.content.decode()
    assert 'http-equiv="refresh"' in text and 'id="replay-confirm"' not in text
    assert figures["status"] == ReplayStatus.QUEUED and figures["total"] == 0


def test_marketers_may_not_replay_or_change_rules(client, user_in, nights):
    client.force_login(user_in("mara", "Marketers"))

    answer = client.post(reverse("admin:compliance_quiethours_change", args=[nights.pk]),
                         {**QUIET_FORM, "start": "19:00"})

    assert answer.status_code == 403
    assert not ReplayRun.objects.exists()


def test_a_replay_page_is_read_only_by_those_who_may_replay(client, user_in, admin_user, nights):
    run = ReplayRun.objects.create(proposal={"model": "compliance.quiethours", "action": "change",
                                             "rule_id": nights.pk, "fields": {"name": "Nights"}},
                                   created_by=admin_user, status=ReplayStatus.DONE, since=EVENING, until=EVENING)
    url = reverse("admin:compliance_quiethours_replay", args=[run.pk])
    client.force_login(user_in("mara", "Marketers"))
    assert client.get(url).status_code == 403
    # compliance staff read another's run, but only its author may confirm it
    client.force_login(user_in("cora", "Compliance"))
    page = client.get(url)
    assert page.status_code == 200 and 'id="replay-confirm"' not in page.content.decode()


def _runs(nights, count: int, user):
    proposal = replay.proposal_of(nights, replay.CHANGE)
    for index in range(count):
        run = replay.new_run(proposal, actor=user)
        ReplayRun.objects.filter(pk=run.pk).update(status=ReplayStatus.DONE, total=1200, done=1200,
                                                   result={"changed": index})


@pytest.mark.parametrize("count", [3, 30])
def test_past_replays_are_listed_each_opening_its_page_in_a_fixed_number_of_queries(
        client, user_in, nights, count, django_assert_num_queries):
    cora = user_in("cora", "Compliance")
    _runs(nights, count, cora)
    client.force_login(cora)

    with django_assert_num_queries(REPLAY_LIST_QUERIES):
        page = client.get(reverse("admin:compliance_replayrun_changelist"))

    assert page.status_code == 200
    text = page.content.decode()
    assert text.count("Quiet hours \u201cNights\u201d: changed") == count
    assert "1,200 of 1,200" in text
    last = ReplayRun.objects.order_by("-pk").first()
    assert reverse("admin:compliance_quiethours_replay", args=[last.pk]) in text
    # nothing is added or changed here: runs come from a rule's save
    assert reverse("admin:compliance_replayrun_add") not in text
    assert client.get(reverse("admin:compliance_replayrun_change", args=[last.pk]) + "delete/").status_code == 403


# The same for 3 and 30 runs: session, user, permissions, sidebar, counts, date bounds, the page of runs with their users.
REPLAY_LIST_QUERIES = 14


def test_marketers_see_no_past_replays(client, user_in, nights):
    client.force_login(user_in("mark", "Marketers"))
    assert client.get(reverse("admin:compliance_replayrun_changelist")).status_code == 403
