"""The contact import with consent columns (contacts/imports.py and its admin pages): every row
checked, errors per row and column, the valid rows or none imported, consents written in bulk by
compliance with their rule (an older change never replaces a newer one), everything audited,
without a query per row; a large file on a real Celery worker."""
import csv
import io
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from compliance.actions import record_consent_change
from compliance.models import Consent, ConsentChange
from contacts.imports import check_import, run_import, start_import
from contacts.models import AttributeDefinition, Contact, ContactImport, ImportStatus
from omni.models import AuditEntry, AuditPersonalData

HEADER = ("external_id,email,phone,first_name,consent_email_marketing,lawful_basis_email_marketing,"
          "consent_sms_marketing,consent_evidence,consent_at")


def csv_of(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def good_row(n: int) -> str:
    return (f"crm-{n},p{n}@example.com,+1415555{n:04d},P{n},granted,consent,revoked,"
            f"Signed up at the fair (form v2),2026-11-01T10:00:00+00:00")


def imported(text: str, user, mode: str = ContactImport.VALID_ONLY) -> ContactImport:
    contact_import = check_import(start_import("contacts.csv", text, actor=user))
    return run_import(contact_import, mode)


def test_an_upload_left_unimported_loses_its_file_after_the_keep_hours(compliance_user, settings):
    settings.OMNI_IMPORT_KEEP_HOURS = 24
    now = timezone.now()
    left = check_import(start_import("left.csv", csv_of(good_row(1)), actor=compliance_user))
    recent = check_import(start_import("recent.csv", csv_of(good_row(2)), actor=compliance_user))
    done = imported(csv_of(good_row(3)), compliance_user)
    ContactImport.objects.filter(pk__in=[left.pk, done.pk]).update(created_at=now - timedelta(hours=25))

    from contacts.tasks import discard_unused_uploads_task
    assert discard_unused_uploads_task() == 1

    left.refresh_from_db()
    recent.refresh_from_db()
    assert (left.status, left.data) == (ImportStatus.CANCELLED, "")
    assert recent.status == ImportStatus.VALIDATED and "crm-2" in recent.data
    assert AuditEntry.objects.get(action="contact_import.discarded").data["cancelled"] == 1
    assert settings.CELERY_BEAT_SCHEDULE["omni-discard-unused-uploads"]["task"] == (
        "contacts.tasks.discard_unused_uploads_task")


# --- checking --------------------------------------------------------------------------------------

def test_a_bad_row_is_named_with_its_column_and_message(compliance_user):
    AttributeDefinition.objects.create(name="score", data_type="number")
    text = csv_of(
        good_row(1),
        "crm-2,not-an-email,+14155550002,Bo,granted,consent,,evidence,",
        "crm-3,c3@example.com,12,Cy,granted,,,evidence,",
        "crm-4,c4@example.com,,Di,maybe,,,,",
        "crm-5,c5@example.com,,Ed,granted,,,,",
        "crm-6,c6@example.com,,Fa,revoked,sometimes,,,",
        "crm-7,c7@example.com,,Gu,,,,,2026-13-01",
        "crm-1,dup@example.com,,Ha,,,,,",
    )

    checked = check_import(start_import("contacts.csv", text, actor=compliance_user))

    assert checked.status == ImportStatus.VALIDATED
    assert (checked.total_rows, checked.valid_rows) == (8, 1)
    where = [(error["row"], error["column"]) for error in checked.errors]
    assert where == [(3, "email"), (4, "phone"), (5, "consent_email_marketing"), (6, "consent_evidence"),
                     (7, "lawful_basis_email_marketing"), (8, "consent_at"), (9, "external_id")]
    messages = {error["row"]: error["message"] for error in checked.errors}
    assert "'not-an-email' is not a valid email address." in messages[3]
    assert "a grant needs evidence" in messages[6]
    assert "also in row 2" in messages[9]
    assert not Contact.objects.exists()


def test_a_declared_attribute_type_is_checked(compliance_user):
    AttributeDefinition.objects.create(name="score", data_type="number")
    text = csv_of('crm-1,"{""score"": ""high""}"', 'crm-2,"{""score"": 3}"', header="external_id,attributes")

    checked = check_import(start_import("contacts.csv", text, actor=compliance_user))

    assert [(e["row"], e["column"]) for e in checked.errors] == [(2, "attributes")]
    assert "attributes.score must be a number" in checked.errors[0]["message"]


def test_a_file_with_an_unknown_column_is_refused_as_a_whole(compliance_user):
    from contacts.imports import FileRefused

    with pytest.raises(FileRefused, match="Unknown column.*'consent_fax_marketing'"):
        start_import("contacts.csv", csv_of("x", header="external_id,consent_fax_marketing"), actor=compliance_user)
    assert not ContactImport.objects.exists()


# --- importing -------------------------------------------------------------------------------------

def test_valid_only_imports_the_valid_rows_with_their_consents(compliance_user):
    text = csv_of(good_row(1), "crm-2,bad@,,Bo,,,,,", good_row(3))

    done = imported(text, compliance_user)

    assert done.status == ImportStatus.DONE
    assert (done.imported_rows, done.valid_rows) == (2, 2)
    assert [e["row"] for e in done.errors] == [3]
    assert set(Contact.objects.values_list("external_id", flat=True)) == {"crm-1", "crm-3"}
    ada = Contact.objects.get(external_id="crm-1")
    assert ada.phone == "+14155550001"
    consents = {(c.channel, c.purpose): (c.status, c.lawful_basis) for c in Consent.objects.filter(contact=ada)}
    assert consents == {("email", "marketing"): ("granted", "consent"), ("sms", "marketing"): ("revoked", "")}
    change = ConsentChange.objects.get(contact=ada, channel="email")
    assert (change.source, change.actor, change.occurred_at.isoformat()) == (
        "import", compliance_user, "2026-11-01T10:00:00+00:00")
    assert change.evidence == {"row": 2, "text": "Signed up at the fair (form v2)", "import": done.pk,
                               "file": "contacts.csv"}
    assert done.data == ""  # the file is not kept once imported


def test_all_or_nothing_imports_nothing_when_a_row_is_bad(compliance_user):
    done = imported(csv_of(good_row(1), "crm-2,bad@,,Bo,,,,,"), compliance_user, ContactImport.ALL_OR_NOTHING)

    assert done.status == ImportStatus.FAILED
    assert done.imported_rows == 0
    assert [(e["row"], e["column"]) for e in done.errors] == [(3, "email")]
    assert not Contact.objects.exists()
    assert not ConsentChange.objects.exists()
    assert not AuditEntry.objects.filter(reason="import").exists()


def test_all_or_nothing_imports_everything_when_every_row_is_valid(compliance_user):
    done = imported(csv_of(good_row(1), good_row(2)), compliance_user, ContactImport.ALL_OR_NOTHING)

    assert (done.status, done.imported_rows) == (ImportStatus.DONE, 2)
    assert Contact.objects.count() == 2


def test_an_import_updates_a_contact_found_by_external_id_or_email(compliance_user):
    kept = Contact.objects.create(external_id="crm-1", email="old@example.com", first_name="Ada", country="US")
    by_email = Contact.objects.create(email="bo@example.com", first_name="Bo")
    text = csv_of("crm-1,new@example.com,(415) 555-0123,Ada", ",bo@example.com,,Bob",
                  header="external_id,email,phone,first_name")

    done = imported(text, compliance_user)

    assert (done.status, done.imported_rows, Contact.objects.count()) == (ImportStatus.DONE, 2, 2)
    kept.refresh_from_db()
    by_email.refresh_from_db()
    assert (kept.email, kept.phone, kept.first_name) == ("new@example.com", "+14155550123", "Ada")
    assert by_email.first_name == "Bob"
    assert sorted(AuditEntry.objects.filter(reason="import").values_list("action", "data"), key=str) == [
        ("contact.updated", {"fields": ["email", "phone"]}), ("contact.updated", {"fields": ["first_name"]})]


def test_a_row_for_an_erased_contact_is_refused(compliance_user):
    Contact.objects.create(external_id="crm-9", erased_at=timezone.now())

    done = imported(csv_of("crm-9,back@example.com", header="external_id,email"), compliance_user)

    assert [(e["row"], e["column"]) for e in done.errors] == [(2, "external_id")]
    assert "was erased" in done.errors[0]["message"]
    assert Contact.objects.get(external_id="crm-9").email == ""


def test_an_older_consent_change_does_not_override_a_newer_one(compliance_user):
    # given a contact who opted out of email marketing yesterday
    contact = Contact.objects.create(external_id="crm-1", email="p1@example.com")
    record_consent_change(contact, "email", "marketing", "revoked", "api", occurred_at=timezone.now() - timedelta(days=1))
    # when a file says they granted it a month ago, and granted SMS marketing then too
    text = csv_of("crm-1,granted,granted,form 2026-11,2026-11-01T10:00:00+00:00",
                  header="external_id,consent_email_marketing,consent_sms_marketing,consent_evidence,consent_at")

    done = imported(text, compliance_user)

    # then both changes join the history, but the email opt-out stands
    assert done.status == ImportStatus.DONE
    current = dict(Consent.objects.filter(contact=contact).values_list("channel", "status"))
    assert current == {"email": "revoked", "sms": "granted"}
    assert ConsentChange.objects.filter(contact=contact, source="import").count() == 2


def test_a_newer_consent_change_replaces_an_older_one(compliance_user):
    contact = Contact.objects.create(external_id="crm-1", email="p1@example.com")
    record_consent_change(contact, "email", "marketing", "revoked", "api",
                          occurred_at=datetime(2025, 10, 1, tzinfo=dt_timezone.utc))  # before the file's 2026-11-01
    text = csv_of("crm-1,granted,form 2026-11,2026-11-01", header="external_id,consent_email_marketing,"
                                                                   "consent_evidence,consent_at")

    imported(text, compliance_user)

    consent = Consent.objects.get(contact=contact, channel="email")
    assert consent.status == "granted"
    assert consent.last_change.source == "import"


def test_every_contact_and_consent_change_is_audited(compliance_user):
    done = imported(csv_of(good_row(1), good_row(2)), compliance_user)

    entries = AuditEntry.objects.filter(actor_id=compliance_user.pk)
    assert sorted(entries.values_list("action", flat=True)) == ["consent.changed"] * 4 + ["contact.created"] * 2
    created = entries.filter(action="contact.created").first()
    assert created.data == {"fields": ["email", "external_id", "first_name", "phone"]}
    change_ids = {str(pk) for pk in ConsentChange.objects.values_list("pk", flat=True)}
    consent_entries = entries.filter(action="consent.changed")
    assert {e.object_id for e in consent_entries} == change_ids
    assert {e.reason for e in consent_entries} == {"import:granted", "import:revoked"}
    # the evidence is personal data, kept outside the chain
    evidence = AuditPersonalData.objects.filter(entry__in=consent_entries).values_list("data", flat=True)
    assert {d["evidence"]["text"] for d in evidence} == {"Signed up at the fair (form v2)"}
    assert done.imported_rows == 2


def queries_to_import(user, rows: int, first: int) -> int:
    """Queries run_import() makes for `rows` new contacts, each with two consent changes, after
    one contact of each was updated."""
    Contact.objects.create(external_id=f"crm-{first}", email="old@example.com")
    text = csv_of(*(good_row(first + n) for n in range(rows)))
    contact_import = check_import(start_import("contacts.csv", text, actor=user))
    with CaptureQueriesContext(connection) as captured:
        done = run_import(contact_import, ContactImport.VALID_ONLY)
    assert done.imported_rows == rows
    return len(captured)


@pytest.mark.postgres
def test_the_import_makes_as_many_queries_for_200_rows_as_for_10(compliance_user):
    assert queries_to_import(compliance_user, 10, 0) == queries_to_import(compliance_user, 200, 1000)


def test_the_import_does_not_query_per_row_on_sqlite_either(compliance_user):
    # SQLite takes at most 999 values a statement, so Django's bulk_create splits the rows into
    # batches: a few more statements, still far from one a row.
    assert queries_to_import(compliance_user, 200, 1000) < queries_to_import(compliance_user, 10, 0) + 40


# --- the admin pages -------------------------------------------------------------------------------

def upload(client, text: str, name: str = "contacts.csv"):
    """Upload a file on the contact list's Import page, as CSV (the first format)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(reverse("admin:contacts_contact_import"), {
        "import_file": SimpleUploadedFile(name, text.encode(), content_type="text/csv"), "format": "0",
        "resource": "0"})


def test_the_admin_shows_errors_per_row_and_imports_the_valid_rows(client, compliance_user):
    client.force_login(compliance_user)

    response = upload(client, csv_of(good_row(1), "crm-2,bad@,,Bo,,,,,"))

    contact_import = ContactImport.objects.get()
    page = reverse("admin:contacts_contactimport_change", args=[contact_import.pk])
    assert response.status_code == 302 and response.url == page
    shown = client.get(page).content.decode()
    assert "<td>3</td><td>email</td><td>&#x27;bad@&#x27; is not a valid email address.</td>" in shown
    assert 'id="import-choice"' in shown

    response = client.post(reverse("admin:contacts_contactimport_choose", args=[contact_import.pk]),
                           {"mode": ContactImport.VALID_ONLY, "import": ""})

    assert response.status_code == 302
    contact_import.refresh_from_db()
    assert (contact_import.status, contact_import.imported_rows) == (ImportStatus.DONE, 1)
    assert list(Contact.objects.values_list("external_id", flat=True)) == ["crm-1"]
    assert "Imported 1 of 2 rows." in client.get(page).content.decode()


def test_choosing_to_import_nothing_cancels(client, compliance_user):
    client.force_login(compliance_user)
    upload(client, csv_of(good_row(1), "crm-2,bad@,,Bo,,,,,"))
    contact_import = ContactImport.objects.get()

    client.post(reverse("admin:contacts_contactimport_choose", args=[contact_import.pk]), {"cancel": ""})

    contact_import.refresh_from_db()
    assert contact_import.status == ImportStatus.CANCELLED
    assert not Contact.objects.exists()


def test_the_errors_download_as_csv(client, compliance_user):
    client.force_login(compliance_user)
    upload(client, csv_of(good_row(1), "crm-2,not-an-email,,,,,,,"))
    contact_import = ContactImport.objects.get()

    response = client.get(reverse("admin:contacts_contactimport_errors", args=[contact_import.pk]))

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(response.content.decode()))) == [
        ["row", "column", "message"], ["3", "email", "'not-an-email' is not a valid email address."]]


def test_the_errors_download_neutralizes_formula_cells(client, compliance_user):
    client.force_login(compliance_user)
    contact_import = ContactImport.objects.create(file_name="x.csv", status=ImportStatus.VALIDATED,
                                                  errors=[{"row": 2, "column": "=cmd", "message": "@SUM(A1)"}])

    response = client.get(reverse("admin:contacts_contactimport_errors", args=[contact_import.pk]))

    assert list(csv.reader(io.StringIO(response.content.decode())))[1] == ["2", "'=cmd", "'@SUM(A1)"]


def test_an_upload_too_large_or_not_csv_is_refused_with_a_clear_message(client, compliance_user, settings):
    client.force_login(compliance_user)
    settings.OMNI_IMPORT_MAX_BYTES = 100

    too_large = upload(client, csv_of(*(good_row(n) for n in range(5))))
    settings.OMNI_IMPORT_MAX_BYTES = 1024 * 1024
    not_csv = upload(client, "external_id\x00\x01\x02")
    unknown_column = upload(client, "external_id,shoe_size\ncrm-1,44\n")

    assert too_large.status_code == 200
    assert "at most 100 bytes is imported at once: split it." in too_large.content.decode()
    assert "The file is not a CSV text file" in not_csv.content.decode()
    assert "Unknown column(s): &#x27;shoe_size&#x27;" in unknown_column.content.decode()
    assert not ContactImport.objects.exists()


def test_only_roles_allowed_to_import_upload(client, db, role_groups, django_user_model):
    support = django_user_model.objects.create_user("sam", password="x", is_staff=True)
    support.groups.add(Group.objects.get(name="Support agents"))
    client.force_login(support)

    response = upload(client, csv_of(good_row(1)))

    assert response.status_code == 403
    assert not ContactImport.objects.exists()


def test_the_import_list_does_not_query_per_row(client, compliance_user, django_assert_max_num_queries):
    for n in range(30):
        ContactImport.objects.create(file_name=f"f{n}.csv", data="x", created_by=compliance_user)
    client.force_login(compliance_user)

    with django_assert_max_num_queries(16):
        response = client.get(reverse("admin:contacts_contactimport_changelist"))

    assert response.status_code == 200


# --- a large file, on a real worker ----------------------------------------------------------------

def test_the_pages_hand_a_large_file_to_celery_for_the_check_and_the_import(
        client, compliance_user, settings, eager_celery, django_capture_on_commit_callbacks):
    settings.OMNI_IMPORT_INLINE_ROWS = 5
    client.force_login(compliance_user)

    with django_capture_on_commit_callbacks(execute=True) as enqueued:
        upload(client, csv_of(*(good_row(n) for n in range(8)), "crm-x,bad@,,,,,,,"))
    assert len(enqueued) == 1
    contact_import = ContactImport.objects.get()
    assert (contact_import.status, contact_import.valid_rows) == (ImportStatus.VALIDATED, 8)

    with django_capture_on_commit_callbacks(execute=True) as enqueued:
        response = client.post(reverse("admin:contacts_contactimport_choose", args=[contact_import.pk]),
                               {"mode": ContactImport.VALID_ONLY, "import": ""}, follow=True)
    # the import, and at its end the task that carries out erasures queued behind it
    assert len(enqueued) == 2
    assert "runs in the background" in response.content.decode()
    contact_import.refresh_from_db()
    assert (contact_import.status, contact_import.imported_rows) == (ImportStatus.DONE, 8)


@pytest.mark.celery_worker
def test_a_large_file_is_checked_and_imported_by_a_celery_worker(client, transactional_db, role_groups,
                                                               django_user_model, settings, celery_worker,
                                                               finished_tasks):
    from contacts.tasks import check_contact_import_task, run_contact_import_task

    settings.OMNI_IMPORT_INLINE_ROWS = 5
    user = django_user_model.objects.create_user("clara", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Compliance"))
    client.force_login(user)

    # The test hands the tasks to the worker itself (the pages enqueue the same calls; their
    # background branch is tested with eager Celery) and waits on its finished tasks, touching
    # the database only in between: SQLite's shared in-memory test database locks a table
    # between connections, so a request still writing as the worker starts would fail it.
    contact_import = start_import("contacts.csv", csv_of(*(good_row(n) for n in range(40)), "crm-x,bad@,,,,,,,"),
                                  actor=user)
    check_contact_import_task.delay(contact_import.pk)
    finished_tasks.wait_for(check_contact_import_task, timeout=90)
    contact_import.refresh_from_db()
    assert contact_import.status == ImportStatus.VALIDATED
    assert (contact_import.valid_rows, len(contact_import.errors)) == (40, 1)
    page = client.get(reverse("admin:contacts_contactimport_change", args=[contact_import.pk])).content.decode()
    assert 'data-status="validated"' in page

    run_contact_import_task.delay(contact_import.pk, ContactImport.VALID_ONLY)
    finished_tasks.wait_for(run_contact_import_task, timeout=90)
    contact_import.refresh_from_db()
    assert contact_import.status == ImportStatus.DONE
    assert contact_import.imported_rows == 40
    assert Contact.objects.count() == 40
    assert ConsentChange.objects.count() == 80
    progress = client.get(reverse("admin:contacts_contactimport_progress", args=[contact_import.pk])).json()
    assert (progress["status"], progress["done"], progress["total"]) == ("done", 41, 41)


# --- what record_consent_change does on an opt-in, as far as it applies to imports ------------------

SMS_GRANT = csv_of("crm-1,+14155550101,granted,Signed at the counter,",
                   header="external_id,phone,consent_sms_marketing,consent_evidence,consent_at")


def test_an_imported_sms_opt_in_is_announced_only_when_asked(compliance_user, settings):
    from channels.models import Message

    imported(SMS_GRANT, compliance_user)
    assert not Message.objects.exists()

    settings.OMNI_CONFIRM_IMPORTED_OPT_INS = True
    imported(SMS_GRANT.replace("crm-1,+14155550101", "crm-2,+14155550102"), compliance_user)
    change = ConsentChange.objects.get(contact__external_id="crm-2")
    assert Message.objects.filter(idempotency_key=f"optin:{change.pk}").count() == 1


def test_an_imported_marketing_email_grant_waits_for_double_opt_in_when_imports_need_it(compliance_user, settings):
    from channels.models import Message

    settings.OMNI_DOUBLE_OPT_IN = True
    settings.OMNI_DOUBLE_OPT_IN_SOURCES = ["import"]
    text = csv_of("crm-1,ada@example.com,granted,Spring form", header="external_id,email,consent_email_marketing,"
                                                                      "consent_evidence")

    imported(text, compliance_user)

    consent = Consent.objects.get(contact__external_id="crm-1", channel="email", purpose="marketing")
    assert consent.status == "pending"
    assert consent.last_change.evidence["double_opt_in"] == {"previous_status": "unknown"}
    assert Message.objects.filter(contact=consent.contact).count() == 1


def test_an_exported_file_imports_back_unchanged(compliance_user):
    from contacts.resources import ContactResource

    formula = '=HYPERLINK("http://attacker.example/","x")'
    contact = Contact.objects.create(external_id="crm-1", email="eve@example.com", phone="+14155550100",
                                     first_name=formula, last_name="-minus")
    exported = ContactResource().export().export("csv")

    done = imported(exported, compliance_user)

    assert (done.status, done.errors) == (ImportStatus.DONE, [])
    contact.refresh_from_db()
    assert (contact.first_name, contact.last_name, contact.phone) == (formula, "-minus", "+14155550100")
    assert not AuditEntry.objects.filter(reason="import").exists()


def test_an_xlsx_file_is_read_like_a_csv(client, compliance_user):
    pytest.importorskip("openpyxl")
    import tablib
    from django.core.files.uploadedfile import SimpleUploadedFile

    sheet = tablib.Dataset(headers=["external_id", "email", "consent_email_marketing", "consent_evidence"])
    sheet.append(["crm-1", "ada@example.com", "granted", "Spring form"])
    sheet.append(["crm-2", "bad@", "", ""])
    client.force_login(compliance_user)

    client.post(reverse("admin:contacts_contact_import"), {
        "import_file": SimpleUploadedFile("contacts.xlsx", sheet.export("xlsx")), "format": "1"})

    contact_import = ContactImport.objects.get()
    assert (contact_import.total_rows, contact_import.valid_rows) == (2, 1)
    assert [(e["row"], e["column"]) for e in contact_import.errors] == [(3, "email")]
