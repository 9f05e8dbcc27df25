"""An erasure that would have to wait for a running import is queued, not refused, and carried out
by itself once the import has let go (contacts.erasure_requests): by the task queued at the end of
the import, or by the beat task. On PostgreSQL a real all-or-nothing import holds its upload in
another connection; on SQLite an erasure never waits (one writer at a time), so the request a
running import would have left is built as a row."""
import json
import threading
import time
from contextlib import contextmanager

import pytest
from django.conf import settings
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from contacts import import_erasure, imports
from contacts.actions import erase_contact
from contacts.erasure_requests import (
    ALREADY_QUEUED,
    ERASED,
    QUEUED,
    STILL_WAITING,
    carry_out_erasure_requests,
    request_erasure,
)
from contacts.imports import check_import, run_import, start_import
from contacts.models import Contact, ContactImport, ErasureOutcome, ErasureRequest, ErasureRequestStatus, ImportStatus
from omni.models import AuditEntry

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="an import holding its upload in another connection needs PostgreSQL; set DATABASE_URL to run it",
)

# Bo's row comes first: the import stops there while Bo's contact is held, holding its upload.
BO_THEN_CLEO = "email,first_name\nbo@example.com,Bo\ncleo@example.com,Cleo\n"


@pytest.fixture
def cleo(db):
    return Contact.objects.create(external_id="cleo", email="cleo@example.com", first_name="Cleo")


@pytest.fixture
def bo(db):
    return Contact.objects.create(email="bo@example.com", first_name="Bo")


@pytest.fixture
def short_import_lock_wait(monkeypatch):
    monkeypatch.setattr(import_erasure, "IMPORT_LOCK_WAIT", "1s")


def pending_request(contact, user, why="Ticket DPO-40") -> ErasureRequest:
    """The request a running import left (on SQLite no erasure ever waits for one)."""
    return ErasureRequest.objects.create(contact=contact, requested_by=user, actor_label=user.get_username(), why=why)


def audit_actions(contact) -> list[str]:
    return list(AuditEntry.objects.filter(contact_id=contact.pk, action__startswith="contact.eras")
                .order_by("pk").values_list("action", flat=True))


# --- A real import holding its upload (PostgreSQL) -------------------------------------------------

@contextmanager
def contact_held(contact):
    """Another connection holding `contact`'s row, as a save from its admin page does, while the block runs."""
    holding, release = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                Contact.objects.select_for_update().get(pk=contact.pk)
                holding.set()
                release.wait(30)
        finally:
            holding.set()
            connections.close_all()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        yield
    finally:
        release.set()
        thread.join(30)


def wait_for_a_session_waiting_on_a_lock():
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                           "AND datname = current_database() AND pid <> pg_backend_pid()")
            if cursor.fetchone()[0]:
                return
        time.sleep(0.05)
    raise AssertionError("the import never waited on its first row's contact")


@contextmanager
def all_or_nothing_import_running(upload, first_rows_contact, monkeypatch):
    """A real all-or-nothing import of `upload`, one row a chunk, in another thread and connection,
    stopped on its first row's contact (held by a third connection) while the block runs: it holds
    its upload meanwhile, as a long import does until it ends. After the block it runs to its end;
    yields the list of errors it raised."""
    monkeypatch.setattr(imports, "CHUNK", 1)
    errors = []

    def importing():
        try:
            run_import(ContactImport.objects.get(pk=upload.pk), ContactImport.ALL_OR_NOTHING)
        except Exception as exc:  # surfaced through `errors`
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=importing)
    with contact_held(first_rows_contact):
        thread.start()
        wait_for_a_session_waiting_on_a_lock()
        yield errors
    thread.join(30)
    assert not thread.is_alive()


@pytest.mark.usefixtures("short_import_lock_wait")
@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_an_erasure_behind_a_running_import_is_queued_then_carried_out_once_the_import_ends(
        cleo, bo, compliance_user, eager_celery, monkeypatch):
    # given an all-or-nothing import naming cleo, running
    upload = check_import(start_import("long.csv", BO_THEN_CLEO, actor=None))
    with all_or_nothing_import_running(upload, bo, monkeypatch) as import_errors:
        # when her erasure is asked for
        answer = request_erasure(Contact.objects.get(pk=cleo.pk), compliance_user, "Ticket DPO-41")

        # then it is queued, nothing erased, the reason kept on the request only
        assert answer.outcome == QUEUED
        cleo.refresh_from_db()
        assert cleo.erased_at is None and cleo.email == "cleo@example.com"
        request = ErasureRequest.objects.get(contact=cleo)
        assert (request.status, request.why, request.requested_by, request.actor_label) == (
            ErasureRequestStatus.PENDING, "Ticket DPO-41", compliance_user, "clara")
        queued = AuditEntry.objects.get(action="contact.erasure_queued", contact_id=cleo.pk)
        assert queued.actor_id == compliance_user.pk and "DPO-41" not in json.dumps(queued.data)

        # and the beat's run while the import still holds its upload leaves it pending, tried once
        assert carry_out_erasure_requests() == {STILL_WAITING: 1}
        request.refresh_from_db()
        assert (request.status, request.attempts) == (ErasureRequestStatus.PENDING, 1)

    # then the import ended, and the task it queued erased her as the requester asked
    assert not import_errors
    assert ContactImport.objects.get(pk=upload.pk).status == ImportStatus.DONE
    cleo.refresh_from_db()
    assert cleo.erased_at is not None and cleo.email == "" and cleo.first_name == ""
    request.refresh_from_db()
    assert (request.status, request.outcome, request.why, request.attempts) == (
        ErasureRequestStatus.DONE, ErasureOutcome.ERASED, "", 2)
    assert request.done_at == cleo.erased_at
    assert audit_actions(cleo) == ["contact.erasure_queued", "contact.erased"]
    erased = AuditEntry.objects.get(action="contact.erased", contact_id=cleo.pk)
    assert (erased.actor_id, erased.actor_label) == (compliance_user.pk, "clara")
    assert erased.personal.data == {"why": "Ticket DPO-41"}


@pytest.mark.usefixtures("short_import_lock_wait")
@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_second_request_while_one_is_pending_says_it_is_already_queued(
        cleo, bo, compliance_user, django_user_model, monkeypatch):
    # given an erasure of cleo queued behind a running import
    upload = check_import(start_import("long.csv", BO_THEN_CLEO, actor=None))
    other = django_user_model.objects.create_user("olga", password="not-used", is_staff=True)
    with all_or_nothing_import_running(upload, bo, monkeypatch):
        first = request_erasure(Contact.objects.get(pk=cleo.pk), compliance_user, "Ticket DPO-42")

        # when someone else asks again
        second = request_erasure(Contact.objects.get(pk=cleo.pk), other, "Ticket DPO-43")

    # then the second says the first is queued, and adds nothing
    assert (first.outcome, second.outcome) == (QUEUED, ALREADY_QUEUED)
    assert second.request.pk == first.request.pk and second.request.actor_label == "clara"
    assert ErasureRequest.objects.filter(contact=cleo).count() == 1
    assert audit_actions(cleo) == ["contact.erasure_queued"]

    # and the queued one is carried out with the first requester and reason
    assert carry_out_erasure_requests() == {ERASED: 1}
    erased = AuditEntry.objects.get(action="contact.erased", contact_id=cleo.pk)
    assert erased.actor_id == compliance_user.pk and erased.personal.data == {"why": "Ticket DPO-42"}


@pytest.mark.usefixtures("short_import_lock_wait")
@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_the_erasure_page_warns_that_the_erasure_is_queued_and_where_to_follow_it(
        client, cleo, bo, compliance_user, user_in, monkeypatch):
    # given an all-or-nothing import naming cleo, running, and a compliance user on her erasure page
    upload = check_import(start_import("long.csv", BO_THEN_CLEO, actor=None))
    client.force_login(compliance_user)

    with all_or_nothing_import_running(upload, bo, monkeypatch):
        # when they confirm her erasure
        page = client.post(f"/admin/contacts/contact/{cleo.pk}/erase/",
                           {"confirm_erasure": "yes", "reason": "Ticket DPO-44"}, follow=True)
        # and another compliance user erases her from the contact list meanwhile
        client.force_login(user_in("carl", "Compliance"))
        from_list = client.post("/admin/contacts/contact/", {
            "action": "erase_contacts", "_selected_action": [cleo.pk], "index": "0", "confirm_erasure": "yes",
            "reason": "Ticket DPO-44b"}, follow=True)

    # then her page warns that nothing is erased yet, that the erasure is queued and runs by itself
    # once the import finishes, and where to follow it
    request = ErasureRequest.objects.get(contact=cleo)
    assert page.status_code == 200
    [message] = list(page.context["messages"])
    words = str(message)
    assert message.level_tag == "warning"
    assert words.startswith("Not erased yet") and "the erasure is queued (asked by clara on" in words
    assert "It runs by itself as soon as the import finishes" in words
    assert f'Compliance › <a href="/admin/contacts/erasurerequest/{request.pk}/change/">Erasure requests</a>' in words
    assert "Erased the personal data" not in page.content.decode()
    # and the list says the erasure was already queued, naming the contact
    [message] = list(from_list.context["messages"])
    assert message.level_tag == "warning"
    assert str(message).startswith("Cleo: Not erased yet") and "already queued (asked by clara" in str(message)
    assert ErasureRequest.objects.filter(contact=cleo).count() == 1
    cleo.refresh_from_db()
    assert cleo.erased_at is None

    # and the compliance user follows it in the list of erasure requests
    listing = client.get("/admin/contacts/erasurerequest/")
    assert listing.status_code == 200 and "clara" in listing.content.decode()
    detail = client.get(f"/admin/contacts/erasurerequest/{request.pk}/change/")
    assert detail.status_code == 200 and "Ticket DPO-44" in detail.content.decode()


@pytest.mark.usefixtures("short_import_lock_wait")
@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_the_api_answers_202_when_the_erasure_is_queued(api_as, cleo, bo, monkeypatch):
    from omni.models import ApiScope

    upload = check_import(start_import("long.csv", BO_THEN_CLEO, actor=None))
    api = api_as(ApiScope.CONTACTS_ERASE)
    with all_or_nothing_import_running(upload, bo, monkeypatch):
        response = api.post("/api/v1/contacts/cleo/erase", {"reason": "Ticket DPO-45"})
        again = api.post("/api/v1/contacts/cleo/erase", {"reason": "Ticket DPO-45"})

    assert response.status_code == 202, response.content
    body = response.json()
    request = ErasureRequest.objects.get(contact=cleo)
    assert body["erasure"] == QUEUED and body["erasure_request"]["id"] == request.pk and body["erased_at"] is None
    assert again.status_code == 202 and again.json()["erasure"] == ALREADY_QUEUED
    assert request.actor_label.startswith("apikey:") and request.requested_by is None

    # and once the import has ended the queued erasure runs under the key's name
    assert carry_out_erasure_requests() == {ERASED: 1}
    assert AuditEntry.objects.get(action="contact.erased", contact_id=cleo.pk).actor_label == request.actor_label


# --- Carrying out (both databases) -----------------------------------------------------------------

def test_the_contact_page_says_an_erasure_is_queued_while_it_waits(client, cleo, compliance_user):
    client.force_login(compliance_user)
    assert "Not erased yet" not in client.get(f"/admin/contacts/contact/{cleo.pk}/change/").content.decode()
    request = pending_request(cleo, compliance_user)

    page = client.get(f"/admin/contacts/contact/{cleo.pk}/change/")

    [message] = list(page.context["messages"])
    assert message.level_tag == "warning" and "the erasure is queued (asked by clara on" in str(message)
    assert f"/admin/contacts/erasurerequest/{request.pk}/change/" in page.content.decode()


def test_a_contact_erased_meanwhile_marks_the_request_done_and_empties_its_reason(cleo, compliance_user):
    # given a pending request, and cleo erased meanwhile by another way (e.g. a direct erasure)
    request = pending_request(cleo, compliance_user)
    erase_contact(Contact.objects.get(pk=cleo.pk), None, "Ticket DPO-46")

    # when the task runs
    outcomes = carry_out_erasure_requests()

    # then
    request.refresh_from_db()
    assert outcomes == {ErasureOutcome.ERASED_BY_ANOTHER_REQUEST: 1}
    assert (request.status, request.outcome, request.why, request.attempts) == (
        ErasureRequestStatus.DONE, ErasureOutcome.ERASED_BY_ANOTHER_REQUEST, "", 1)
    assert AuditEntry.objects.filter(action="contact.erased", contact_id=cleo.pk).count() == 1


def test_a_pending_request_is_carried_out_by_the_task_with_its_requester_and_reason(cleo, compliance_user):
    # given a pending request
    request = pending_request(cleo, compliance_user, why="Ticket DPO-47")

    # when the beat task runs
    from contacts.tasks import carry_out_erasure_requests_task
    carry_out_erasure_requests_task()

    # then
    cleo.refresh_from_db()
    request.refresh_from_db()
    assert cleo.erased_at is not None and cleo.email == ""
    assert (request.status, request.outcome, request.why) == (ErasureRequestStatus.DONE, ErasureOutcome.ERASED, "")
    erased = AuditEntry.objects.get(action="contact.erased", contact_id=cleo.pk)
    assert erased.actor_id == compliance_user.pk and erased.personal.data == {"why": "Ticket DPO-47"}
    # and a second run finds nothing left to do
    assert carry_out_erasure_requests() == {}


def test_an_erasure_that_goes_through_at_once_settles_a_request_left_pending(cleo, compliance_user):
    # given a request left pending (the import it waited for has ended, the task has not run yet)
    request = pending_request(cleo, compliance_user)

    # when the contact is asked to be erased again
    answer = request_erasure(Contact.objects.get(pk=cleo.pk), compliance_user, "Ticket DPO-48")

    # then it is erased at once and the pending request is done, its reason emptied
    assert answer.outcome == ERASED and answer.counts
    request.refresh_from_db()
    assert (request.status, request.outcome, request.why) == (
        ErasureRequestStatus.DONE, ErasureOutcome.ERASED_BY_ANOTHER_REQUEST, "")
    assert carry_out_erasure_requests() == {}


def test_the_end_of_an_import_queues_the_task_that_carries_out_pending_requests(
        cleo, bo, compliance_user, eager_celery, django_capture_on_commit_callbacks):
    # given a pending request and an upload
    request = pending_request(cleo, compliance_user)
    upload = check_import(start_import("other.csv", "email,first_name\nbo@example.com,Bo\n", actor=None))

    # when the import ends and commits
    with django_capture_on_commit_callbacks(execute=True):
        run_import(upload, ContactImport.VALID_ONLY)

    # then the queued erasure was carried out
    request.refresh_from_db()
    assert request.status == ErasureRequestStatus.DONE
    cleo.refresh_from_db()
    assert cleo.erased_at is not None


def test_the_beat_runs_the_task_every_minute():
    from omni.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["omni-carry-out-erasure-requests"]
    assert entry["task"] == "contacts.tasks.carry_out_erasure_requests_task" and entry["task"] in app.tasks
    assert entry["schedule"] == 60.0


def test_at_most_one_request_is_pending_per_contact(cleo, compliance_user):
    from django.db import IntegrityError

    pending_request(cleo, compliance_user)
    with pytest.raises(IntegrityError), transaction.atomic():
        pending_request(cleo, compliance_user)
    ErasureRequest.objects.filter(contact=cleo).update(status=ErasureRequestStatus.DONE)
    pending_request(cleo, compliance_user)  # a done one does not count


# --- The admin list --------------------------------------------------------------------------------

def requests_for(count: int, user, start: int) -> None:
    for number in range(start, start + count):
        contact = Contact.objects.create(external_id=f"person-{number}", email=f"person-{number}@example.com")
        pending_request(contact, user)
        if number % 2:
            ErasureRequest.objects.filter(contact=contact).update(
                status=ErasureRequestStatus.DONE, outcome=ErasureOutcome.ERASED, why="", attempts=1,
                last_tried_at=timezone.now(), done_at=timezone.now())


def test_the_erasure_request_list_lists_pending_first_in_queries_that_do_not_grow_with_its_rows(
        client, compliance_user):
    client.force_login(compliance_user)
    requests_for(3, compliance_user, start=0)
    with CaptureQueriesContext(connection) as few:
        assert client.get("/admin/contacts/erasurerequest/").status_code == 200
    requests_for(60, compliance_user, start=3)

    with CaptureQueriesContext(connection) as many:
        page = client.get("/admin/contacts/erasurerequest/")

    assert page.status_code == 200
    assert len(many) == len(few), [query["sql"] for query in many]
    shown = list(page.context["cl"].result_list)
    statuses = [request.status for request in shown]
    assert statuses == sorted(statuses, key=lambda status: status != ErasureRequestStatus.PENDING)
    assert statuses[0] == ErasureRequestStatus.PENDING and ErasureRequestStatus.DONE in statuses


def test_nobody_adds_changes_or_deletes_an_erasure_request(admin_client, cleo, compliance_user):
    request = pending_request(cleo, compliance_user)
    assert admin_client.get("/admin/contacts/erasurerequest/add/").status_code == 403
    page = admin_client.post(f"/admin/contacts/erasurerequest/{request.pk}/change/", {"why": "changed"})
    assert page.status_code == 403
    request.refresh_from_db()
    assert request.why == "Ticket DPO-40"


def test_marketers_do_not_see_erasure_requests(client, user_in, cleo, compliance_user):
    client.force_login(user_in("mark", "Marketers"))
    assert client.get("/admin/contacts/erasurerequest/").status_code == 403
