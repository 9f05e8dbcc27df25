"""Erasure meets an import that is already checking or writing its file: the running import,
which read the file before the erasure, must not make the erased person again (a row naming them
by email no longer finds their blanked contact) nor write back the values erasure took out of its
errors. Their rows are refused "erased on request", quoting nothing."""
import threading
import time
from contextlib import contextmanager

import pytest
from django.db import connection, connections, transaction

from contacts import imports
from contacts.actions import erase_contact
from contacts.imports import check_import, run_import, start_import
from contacts.models import Contact, ContactImport, ImportStatus

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="row locks between two connections need PostgreSQL; set DATABASE_URL to run it (SQLite serializes writers)",
)

# Bo's row comes first, so that Cleo is erased while her row is still to come.
BY_EMAIL = "email,first_name,phone,consent_email_marketing,consent_evidence\n" \
           "bo@example.com,Bo,,,\n" \
           "cleo@example.com,Cleo,+14155550123,granted,web form\n"
CLEOS_VALUES = ("cleo@example.com", "Cleo", "+14155550123", "555-cleo-555")


@pytest.fixture
def cleo(db):
    return Contact.objects.create(email="cleo@example.com", first_name="Cleo", phone="+14155550123")


@pytest.fixture
def one_row_chunks(monkeypatch):
    monkeypatch.setattr(imports, "CHUNK", 1)


def erase_after_first_chunk(monkeypatch, contact):
    """Erase `contact` once the first chunk of the next check or import is done (its progress set)."""
    set_progress = imports._set_progress
    done = []

    def erasing(contact_import, **figures):
        set_progress(contact_import, **figures)
        if not done:
            done.append(erase_contact(Contact.objects.get(pk=contact.pk), None, "Ticket DPO-20"))

    monkeypatch.setattr(imports, "_set_progress", erasing)
    return done


def assert_erased_and_not_made_again(contact):
    contact.refresh_from_db()
    assert contact.erased_at is not None and contact.email == ""
    assert not Contact.objects.filter(email="cleo@example.com").exists()
    assert not Contact.objects.filter(first_name="Cleo").exists()
    assert not Contact.objects.filter(phone="+14155550123").exists()


def assert_refused_as_erased(contact_import, row, column):
    contact_import.refresh_from_db()
    about_row = [error for error in contact_import.errors if error["row"] == row]
    assert [error["column"] for error in about_row] == [column]
    assert "erased on request" in about_row[0]["message"]
    text = str(contact_import.errors).lower()
    for value in CLEOS_VALUES:
        assert value.lower() not in text


def test_a_contact_erased_between_checking_and_importing_is_refused_as_erased(cleo, compliance_user):
    # given: a checked upload naming cleo by email only
    waiting = check_import(start_import("waiting.csv", BY_EMAIL, actor=compliance_user))

    # when: she is erased, then the upload imported
    erase_contact(cleo, compliance_user, "Ticket DPO-20")
    done = run_import(waiting, ContactImport.VALID_ONLY)

    # then
    assert done.status == ImportStatus.DONE and done.imported_rows == 1
    assert_erased_and_not_made_again(cleo)
    assert_refused_as_erased(done, 3, "email")
    assert Contact.objects.filter(email="bo@example.com").exists()


def test_a_contact_erased_while_the_import_runs_is_not_made_again_from_their_email(
        cleo, compliance_user, one_row_chunks, monkeypatch):
    # given: a checked upload naming cleo by email only, imported a row at a time
    waiting = check_import(start_import("running.csv", BY_EMAIL, actor=compliance_user))
    erasures = erase_after_first_chunk(monkeypatch, cleo)

    # when: she is erased once bo's row is written, before hers
    done = run_import(waiting, ContactImport.VALID_ONLY)

    # then: her row is refused, and no contact holds her email, name, phone or consent
    assert erasures and erasures[0]["contacts.import_files"] == 1
    assert_erased_and_not_made_again(cleo)
    assert done.status == ImportStatus.DONE and done.imported_rows == 1
    assert_refused_as_erased(done, 3, "email")
    assert Contact.objects.get(email="bo@example.com").first_name == "Bo"


def test_a_row_keyed_by_external_id_erased_while_the_import_runs_is_refused_as_erased(
        db, compliance_user, one_row_chunks, monkeypatch):
    # given: cleo with an external id, and a file naming her by it
    cleo = Contact.objects.create(external_id="cleo", email="cleo@example.com", first_name="Cleo")
    waiting = check_import(start_import("running.csv", "external_id,email,first_name\nbo,bo@example.com,Bo\n"
                                                       "cleo,cleo@example.com,Cleo\n", actor=compliance_user))
    erase_after_first_chunk(monkeypatch, cleo)

    # when
    done = run_import(waiting, ContactImport.VALID_ONLY)

    # then
    assert_erased_and_not_made_again(cleo)
    assert_refused_as_erased(done, 3, "external_id")


def test_an_all_or_nothing_import_of_a_file_naming_an_erased_contact_imports_nothing(cleo, compliance_user):
    # given: a checked upload of bo and cleo, then cleo erased before it is imported all or nothing
    # (erasure during such an import waits for it: see the PostgreSQL tests below)
    waiting = check_import(start_import("waiting.csv", BY_EMAIL, actor=compliance_user))
    erase_contact(cleo, compliance_user, "Ticket DPO-21")

    # when
    done = run_import(waiting, ContactImport.ALL_OR_NOTHING)

    # then: her row is refused, so nothing is imported
    assert_erased_and_not_made_again(cleo)
    assert done.status == ImportStatus.FAILED and done.imported_rows == 0
    assert_refused_as_erased(done, 3, "email")
    assert not Contact.objects.filter(email="bo@example.com").exists()


def test_errors_of_a_row_refused_before_its_contact_was_erased_are_not_written_back(
        cleo, compliance_user, one_row_chunks, monkeypatch):
    # given: cleo's row comes first and is refused for its phone number, quoting it
    waiting = check_import(start_import("running.csv", "email,first_name,phone\ncleo@example.com,Cleo,555-cleo-555\n"
                                                       "bo@example.com,Bo,\n", actor=compliance_user))
    assert "555-cleo-555" in str(waiting.errors)
    erase_after_first_chunk(monkeypatch, cleo)

    # when: she is erased once her row was refused, before the import writes its errors
    done = run_import(waiting, ContactImport.VALID_ONLY)

    # then: the errors it writes at its end do not bring her values back
    assert done.imported_rows == 1
    assert_refused_as_erased(done, 2, "email")


def test_a_check_running_when_the_contact_is_erased_keeps_none_of_their_values(
        cleo, compliance_user, one_row_chunks, monkeypatch):
    # given: an upload being checked a row at a time, cleo's row (refused for its phone) first
    upload = start_import("checking.csv", "email,first_name,phone\ncleo@example.com,Cleo,555-cleo-555\n"
                                          "bo@example.com,Bo,\n", actor=compliance_user)
    erase_after_first_chunk(monkeypatch, cleo)

    # when
    checked = check_import(upload)

    # then: her row is refused as erased, counted as such, and nothing of hers is kept
    assert checked.status == ImportStatus.VALIDATED and checked.valid_rows == 1
    assert_refused_as_erased(checked, 2, "email")
    checked.refresh_from_db()
    assert checked.valid_rows == 1 and "cleo" not in checked.data.lower()


def test_a_valid_row_checked_before_its_contact_was_erased_is_no_longer_counted_valid(
        cleo, compliance_user, one_row_chunks, monkeypatch):
    # given: an upload being checked a row at a time, cleo's valid row first
    upload = start_import("checking.csv", "email,first_name\ncleo@example.com,Cleo\nbo@example.com,Bo\n",
                          actor=compliance_user)
    erase_after_first_chunk(monkeypatch, cleo)

    # when
    checked = check_import(upload)

    # then
    assert checked.valid_rows == 1
    assert_refused_as_erased(checked, 2, "email")


# --- Two connections (PostgreSQL) ----------------------------------------------------------------

def side_by_side(first, second, *, first_pauses_in, monkeypatch, hold=1.5) -> list:
    """Run `first` in a thread until it reaches `first_pauses_in` (an attribute of contacts.imports
    wrapped to stop there), then `second` in another thread while `first` waits `hold` seconds
    there; the errors either raised."""
    reached, errors = threading.Event(), []
    original = getattr(imports, first_pauses_in)

    def pausing(*args, **kwargs):
        if not reached.is_set():
            reached.set()
            time.sleep(hold)  # `second` runs meanwhile
        return original(*args, **kwargs)

    monkeypatch.setattr(imports, first_pauses_in, pausing)

    def run(function, wait):
        try:
            if wait:
                reached.wait(10)
            function()
        except Exception as exc:  # surfaced through `errors`
            errors.append(exc)
        finally:
            reached.set()
            connections.close_all()

    threads = [threading.Thread(target=run, args=(first, False)), threading.Thread(target=run, args=(second, True))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    return errors


@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", [ContactImport.VALID_ONLY, ContactImport.ALL_OR_NOTHING])
def test_an_erasure_committed_while_a_chunk_waits_for_the_contact_refuses_the_row(db, monkeypatch, mode):
    # given: an import that has read its file (cleo named by email) and is about to check it,
    # and an erasure of cleo that holds its transaction open meanwhile
    cleo = Contact.objects.create(email="cleo@example.com", first_name="Cleo", phone="+14155550123")
    upload = check_import(start_import("racing.csv", BY_EMAIL, actor=None))

    def erase_and_hold():
        with transaction.atomic():
            erase_contact(Contact.objects.get(pk=cleo.pk), None, "Ticket DPO-22")
            time.sleep(1.5)  # the import's chunk reaches the contacts meanwhile

    reached, errors = threading.Event(), []
    load = imports.CheckContext.load

    def loading():
        context = load()
        reached.set()
        time.sleep(0.5)  # the erasure has blanked the contact, not committed yet
        return context

    monkeypatch.setattr(imports.CheckContext, "load", staticmethod(loading))

    def importing():
        try:
            run_import(ContactImport.objects.get(pk=upload.pk), mode)
        except Exception as exc:  # surfaced through `errors`
            errors.append(exc)
        finally:
            reached.set()
            connections.close_all()

    def erasing():
        try:
            reached.wait(10)
            erase_and_hold()
        except Exception as exc:  # surfaced through `errors`
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=importing), threading.Thread(target=erasing)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # then: the import waited for the erasure and refused her row
    assert not errors
    assert_erased_and_not_made_again(cleo)
    done = ContactImport.objects.get(pk=upload.pk)
    assert done.status in (ImportStatus.DONE, ImportStatus.FAILED)
    assert_refused_as_erased(done, 3, "email")


@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", [ContactImport.VALID_ONLY, ContactImport.ALL_OR_NOTHING])
def test_an_erasure_while_a_chunk_is_being_written_waits_for_it_rather_than_deadlocking(
        db, monkeypatch, one_row_chunks, mode):
    # given: an import a row at a time writing bo's row (its upload locked) when cleo, named by
    # the next row, is erased: the erasure must not lock her contact and then wait for the upload
    # while the import, holding the upload, waits for her contact
    cleo = Contact.objects.create(email="cleo@example.com", first_name="Cleo", phone="+14155550123")
    upload = check_import(start_import("racing.csv", "email,first_name\nbo@example.com,Bo\n"
                                                     "cleo@example.com,Cleo Updated\n", actor=None))

    errors = side_by_side(
        lambda: run_import(ContactImport.objects.get(pk=upload.pk), mode),
        lambda: erase_contact(Contact.objects.get(pk=cleo.pk), None, "Ticket DPO-23"),
        first_pauses_in="write_rows", monkeypatch=monkeypatch)

    # then: both went through, one after the other, and she is not made again
    assert not errors
    assert_erased_and_not_made_again(cleo)
    assert not Contact.objects.filter(first_name="Cleo Updated").exists()
    done = ContactImport.objects.get(pk=upload.pk)
    assert done.status == ImportStatus.DONE
    if mode == ContactImport.VALID_ONLY:
        # the erasure went between the chunks: her row is refused
        assert done.imported_rows == 1
        assert_refused_as_erased(done, 3, "email")
    else:
        # the erasure waited for the whole import (one transaction), then blanked what it wrote
        assert done.imported_rows == 2 and done.errors == []


@contextmanager
def upload_held(upload):
    """A transaction of another connection holding `upload`'s row, as an all-or-nothing import
    does until it ends, while the block runs."""
    holding, release = threading.Event(), threading.Event()

    def long_import():
        try:
            with transaction.atomic():
                ContactImport.objects.select_for_update().get(pk=upload.pk)
                holding.set()
                release.wait(20)
        finally:
            holding.set()
            connections.close_all()

    thread = threading.Thread(target=long_import)
    thread.start()
    try:
        holding.wait(10)
        yield
    finally:
        release.set()
        thread.join(20)


@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_an_erasure_behind_a_long_import_is_queued_after_a_few_seconds_and_erases_nothing_until_it_ends(api_as):
    from contacts.erasure_requests import carry_out_erasure_requests
    from contacts.models import ErasureRequest
    from omni.models import ApiScope

    # given an all-or-nothing import naming cleo that holds its upload for longer than an erasure waits
    cleo = Contact.objects.create(external_id="cleo", email="cleo@example.com", first_name="Cleo")
    upload = check_import(start_import("long.csv", BY_EMAIL, actor=None))
    api = api_as(ApiScope.CONTACTS_ERASE)

    # when the erasure is asked for over the API
    with upload_held(upload):
        started = time.monotonic()
        response = api.post("/api/v1/contacts/cleo/erase", {"reason": "Ticket DPO-24"})
        waited = time.monotonic() - started

    # then after about five seconds it is queued, and nothing was erased yet
    assert response.status_code == 202, response.content
    assert response.json()["erasure"] == "queued"
    assert 4 < waited < 15
    cleo.refresh_from_db()
    assert cleo.erased_at is None and cleo.email == "cleo@example.com"

    # and once the import has ended, the queued erasure goes through
    assert carry_out_erasure_requests() == {"erased": 1}
    cleo.refresh_from_db()
    assert cleo.erased_at is not None and ErasureRequest.objects.get(contact=cleo).why == ""
