"""Suppressions in the admin: the form refuses an address that does not fit its channel and
links the contact with the address; lifting asks why (kept outside the chain); CSV import
(every row checked, bad rows named by row and column, set-based writes) and export (cells
neutralized)."""
import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from compliance.actions import suppress
from compliance.models import Suppression, hash_address
from contacts.models import Contact
from omni import audit
from omni.models import AuditEntry, AuditPersonalData

CHANGELIST = reverse("admin:compliance_suppression_changelist")
ADD = reverse("admin:compliance_suppression_add")
IMPORT = reverse("admin:compliance_suppression_import_csv")


@pytest.fixture
def officer(django_user_model, role_groups):
    user = django_user_model.objects.create_user(username="cora", password="not-used", is_staff=True)
    user.groups.add(Group.objects.get(name="Compliance"))
    return user


@pytest.fixture
def officer_client(client, officer):
    client.force_login(officer)
    return client


@pytest.fixture
def ann(db):
    return Contact.objects.create(external_id="ann", email="ann@example.com", phone="+14155550101", country="US")


# --- the form ------------------------------------------------------------------------------------

@pytest.mark.parametrize("address, channel", [
    ("ann@example.com", "sms"), ("ann@example.com", "whatsapp"), ("ann@example.com", "rcs"),
    ("+14155550101", "email"), ("not an address", "email"), ("12", "sms"), ("not an address", ""),
])
def test_the_form_refuses_an_address_that_does_not_fit_its_channel(officer_client, address, channel):
    response = officer_client.post(ADD, {"address": address, "channel": channel, "reason": "manual"})

    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["address"]
    assert not Suppression.objects.exists()
    assert not AuditEntry.objects.filter(action="suppression.added").exists()


@pytest.mark.parametrize("address, channel, stored", [
    ("+1 (415) 555-0101", "sms", "+14155550101"), ("+1 415 555 0101", "whatsapp", "+14155550101"),
    ("Ann@Example.com", "email", "ann@example.com"), ("ANN@example.com", "", "ann@example.com"),
    ("+14155550101", "", "+14155550101"),
])
def test_the_form_links_the_contact_with_that_address(officer_client, ann, address, channel, stored):
    response = officer_client.post(ADD, {"address": address, "channel": channel, "reason": "manual"})

    assert response.status_code == 302
    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.contact) == (stored, ann)


# --- lifting -------------------------------------------------------------------------------------

def test_lifting_asks_why_and_keeps_it_outside_the_chain(officer_client, officer, ann):
    suppression, _ = suppress("ann@example.com", channel="email", reason="manual", contact=ann)
    selected = {"action": "lift_suppressions", "_selected_action": [suppression.pk]}

    # when the action is chosen: a form asks why, nothing is lifted yet
    asked = officer_client.post(CHANGELIST, selected)
    # when sent without a reason: asked again
    empty = officer_client.post(CHANGELIST, {**selected, "why": "  "})

    assert asked.status_code == 200 and 'name="why"' in asked.content.decode()
    assert empty.status_code == 200 and "why" in empty.context["form"].errors
    assert Suppression.objects.filter(pk=suppression.pk).exists()

    # when a reason is given
    done = officer_client.post(CHANGELIST, {**selected, "why": "Ann phoned: she wants the newsletter again"})

    # then
    assert done.status_code == 302
    assert not Suppression.objects.exists()
    entry = AuditEntry.objects.get(action="suppression.lifted")
    assert entry.actor_id == officer.pk and entry.contact_id == ann.pk
    assert "phoned" not in str(entry.data)
    assert AuditPersonalData.objects.get(entry=entry).data == {"why": "Ann phoned: she wants the newsletter again"}


# --- import --------------------------------------------------------------------------------------

def upload(text: str, name="suppressions.csv"):
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


GOOD_AND_BAD = (
    "address,channel,purpose,reason,detail,expires_at\n"
    "ann@example.com,email,marketing,unsubscribe,asked at the desk,\n"
    "ann@example.com,sms,,manual,,\n"                          # row 3: an email for SMS
    "(415) 555-0102,sms,,,,2030-01-01\n"                        # national numbers need a country
    "+14155550103,whatsapp,,complaint,=HYPERLINK(\"x\"),\n"
    "bob@example.com,fax,,,,\n"                                 # row 6: no such channel
    "carl@example.com,,,manual,,next week\n"                    # row 7: not a date
)


def test_an_import_with_a_bad_row_names_row_and_column_and_imports_nothing(officer_client):
    response = officer_client.post(IMPORT, {"file": upload(GOOD_AND_BAD)})

    assert response.status_code == 400
    problems = [(e.row, e.column) for e in response.context["errors"]]
    assert problems == [(3, "address"), (4, "address"), (6, "channel"), (7, "expires_at")]
    assert "Nothing was imported" in response.content.decode()
    assert not Suppression.objects.exists()
    assert not AuditEntry.objects.filter(action__startswith="suppression.").exists()


def test_an_import_may_skip_the_bad_rows_and_audits_each_row_written(officer_client, officer, ann):
    response = officer_client.post(IMPORT, {"file": upload(GOOD_AND_BAD), "skip_bad_rows": "on"})

    assert response.status_code == 200
    assert "2 added" in response.context["imported"]
    email = Suppression.objects.get(address="ann@example.com")
    assert (email.channel, email.purpose, email.reason, email.contact, email.created_by) == (
        "email", "marketing", "unsubscribe", ann, officer)
    assert email.address_hash == hash_address("ann@example.com")
    whatsapp = Suppression.objects.get(address="+14155550103")
    assert whatsapp.detail == '=HYPERLINK("x")' and whatsapp.contact is None
    added = AuditEntry.objects.filter(action="suppression.added")
    assert sorted(added.values_list("object_id", flat=True)) == sorted([str(email.pk), str(whatsapp.pk)])
    assert not any("example.com" in str(data) for data in added.values_list("data", flat=True))
    assert AuditPersonalData.objects.get(entry__object_id=str(email.pk))\
        .data == {"address": "ann@example.com", "detail": "asked at the desk"}
    assert AuditEntry.objects.get(action="suppression.imported").data["added"] == 2


def test_an_import_renews_what_it_outlasts_and_leaves_what_stands(officer_client):
    soon = timezone.now() + timedelta(days=1)
    temporary, _ = suppress("ann@example.com", channel="email", reason="manual", expires_at=soon)
    standing, _ = suppress("bob@example.com", channel="email", reason="hard_bounce")

    response = officer_client.post(IMPORT, {"file": upload(
        "address,channel,reason\nann@example.com,email,complaint\nbob@example.com,email,manual\n")})

    assert response.status_code == 302
    temporary.refresh_from_db()
    assert (temporary.reason, temporary.expires_at) == ("complaint", None)
    assert Suppression.objects.get(pk=standing.pk).reason == "hard_bounce"
    assert audit.for_object(temporary).filter(action="suppression.renewed").count() == 1
    assert not audit.for_object(standing).filter(action="suppression.renewed").exists()


@pytest.mark.parametrize("text, column", [
    ("channel,reason\nemail,manual\n", "file"),
    ("address,colour\nann@example.com,red\n", "colour"),
])
def test_a_file_without_address_or_with_an_unknown_column_is_refused(officer_client, text, column):
    response = officer_client.post(IMPORT, {"file": upload(text)})

    assert response.status_code == 400
    if column == "file":
        assert "address" in response.context["form"].errors["file"][0]
    else:
        assert [(e.row, e.column) for e in response.context["errors"]] == [(1, "colour")]
    assert not Suppression.objects.exists()


def test_the_import_writes_set_based(officer_client, ann, django_assert_max_num_queries):
    rows = "".join(f"user{n}@example.com,email,marketing,manual,,\n" for n in range(300))
    small = "address,channel,purpose,reason,detail,expires_at\n" + rows[:rows.index("\n") + 1]
    officer_client.post(IMPORT, {"file": upload(small)})

    # the same few queries for 299 more rows as for one: none per row
    with django_assert_max_num_queries(25):
        response = officer_client.post(IMPORT, {"file": upload("address,channel,purpose,reason,detail,expires_at\n"
                                                                + rows)})

    assert response.status_code == 302
    assert Suppression.objects.count() == 300
    assert AuditEntry.objects.filter(action="suppression.added").count() == 300


def test_staff_without_the_right_to_add_suppressions_cannot_import(client, django_user_model, role_groups):
    agent = django_user_model.objects.create_user(username="sam", password="not-used", is_staff=True)
    agent.groups.add(Group.objects.get(name="Support agents"))
    client.force_login(agent)

    response = client.post(IMPORT, {"file": upload("address,channel\nann@example.com,email\n")})

    assert response.status_code == 403
    assert not Suppression.objects.exists()


# --- export --------------------------------------------------------------------------------------

def test_the_export_neutralizes_formula_cells_audits_and_imports_back(officer_client, officer, ann):
    suppress("ann@example.com", channel="email", reason="manual", contact=ann, detail='=HYPERLINK("http://x")')
    suppress("+14155550101", channel="sms", reason="stop", contact=ann)

    response = officer_client.post(CHANGELIST, {"action": "export_csv", "_selected_action":
                                                list(Suppression.objects.values_list("pk", flat=True))})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    exported_file = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(exported_file)))
    by_address = {row["address"]: row for row in rows}
    assert by_address["ann@example.com"]["detail"] == "'=HYPERLINK(\"http://x\")"
    assert by_address["+14155550101"]["contact"] == "ann"  # a phone number is a number, left as written
    exported = AuditEntry.objects.get(action="suppression.exported")
    assert (exported.actor_id, exported.data["rows"]) == (officer.pk, 2)

    # and the file imports back unchanged
    Suppression.objects.all().delete()
    response = officer_client.post(IMPORT, {"file": upload(exported_file)})
    assert response.status_code == 302
    assert Suppression.objects.get(address="ann@example.com").detail == '=HYPERLINK("http://x")'
    assert Suppression.objects.get(address="+14155550101").reason == "stop"
