"""Erasure reaches contact imports: the erased person's values leave the errors of every import
that named them (the rest of each import stays readable), and an upload still holding its file
loses their row before anyone imports it."""
import pytest

from contacts.actions import erase_contact
from contacts.imports import check_import, run_import, start_import
from contacts.models import Contact, ContactImport, ImportStatus

HEADER = "external_id,email,phone,first_name,region,consent_at"


def csv_of(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def imported(text: str, user) -> ContactImport:
    return run_import(check_import(start_import("contacts.csv", text, actor=user)), ContactImport.VALID_ONLY)


@pytest.fixture
def ann(db):
    return Contact.objects.create(external_id="ann", email="ann@example.com", phone="+14155550111",
                                  first_name="Annabel", last_name="Quist", country="US", region="US-CA")


def messages_of(contact_import: ContactImport) -> dict:
    contact_import.refresh_from_db()
    found = {}
    for error in contact_import.errors:
        found.setdefault(error["row"], []).append(error["message"])
    return found


def test_erasure_takes_the_erased_persons_values_out_of_import_errors(ann, compliance_user):
    # given: an import whose row for ann quoted what she gave, and a row for bob with an error
    done = imported(csv_of("ann,ann@@example,call-me-annabel,Annabel,,2999-01-01",
                           "bob,bob@@example,,Bob,,"), compliance_user)
    before = messages_of(done)
    assert any("ann@@example" in message for message in before[2])
    assert any("call-me-annabel" in message for message in before[2])

    # when
    erase_contact(ann, compliance_user, "Ticket DPO-7")

    # then: none of ann's values is left, the reasons and columns are
    after = messages_of(done)
    text = " ".join(after[2])
    for value in ("ann@@example", "call-me-annabel", "2999-01-01"):
        assert value not in text
    assert "[erased]" in text
    assert any("is not a valid email address" in message for message in after[2])
    assert len(after[2]) == len(before[2])
    # bob's row is untouched
    assert after[3] == before[3] and "bob@@example" in after[3][0]


def test_a_row_matched_by_email_is_found_though_its_error_does_not_quote_the_email(db, compliance_user):
    # given: a contact without an external id, updated by email with a bad phone number
    cleo = Contact.objects.create(email="cleo@example.com", first_name="Cleo")
    done = imported(csv_of(",cleo@example.com,555-cleo-555,Cleo,,"), compliance_user)
    assert "555-cleo-555" in " ".join(messages_of(done)[2])

    # when
    erase_contact(cleo, compliance_user, "Ticket DPO-8")

    # then
    assert "555-cleo-555" not in " ".join(messages_of(done)[2])


def test_a_refused_row_for_a_person_who_became_a_contact_later_is_found_by_external_id(db, compliance_user):
    # given: a row refused before the contact existed, then the contact made through the API
    done = imported(csv_of("dan,dan@@example,,Dan,,"), compliance_user)
    assert "dan@@example" in " ".join(messages_of(done)[2])
    dan = Contact.objects.create(external_id="dan", email="dan@example.com")

    # when
    erase_contact(dan, compliance_user, "Ticket DPO-9")

    # then
    assert "dan@@example" not in " ".join(messages_of(done)[2])


def test_errors_written_before_they_named_their_contact_are_found_by_the_persons_values(ann, compliance_user):
    # given: an import from before error entries named their row's contact
    old = ContactImport.objects.create(file_name="old.csv", data="", status=ImportStatus.DONE, errors=[
        {"row": 4, "column": "email", "message": "email 'ANN@example.com' is also in row 2: one row per contact."},
        {"row": 4, "column": "phone", "message": "'+1 415 555 0111 x9' has an extension, which messages cannot "
                                                 "reach; give a direct number."},
        {"row": 4, "column": "region", "message": "Region GB-LND is not in the country US."},
        {"row": 5, "column": "email", "message": "'eve@@example' is not a valid email address."}])

    # when
    erase_contact(ann, compliance_user, "Ticket DPO-10")

    # then: every error of ann's row lost its values; eve's kept hers
    old.refresh_from_db()
    assert [e["message"] for e in old.errors] == [
        "email [erased] is also in row 2: one row per contact.",
        "[erased] has an extension, which messages cannot reach; give a direct number.",
        "Region [erased] is not in the country [erased].",
        "'eve@@example' is not a valid email address."]


def test_an_upload_waiting_for_a_choice_loses_the_erased_persons_row(ann, compliance_user):
    # given: a checked upload, not imported yet, with a row for ann and one for bob
    waiting = check_import(start_import("waiting.csv", csv_of(
        "ann,ann@example.com,+14155550111,Annabel,,", "bob,bob@example.com,,Bob,,"), actor=compliance_user))
    assert waiting.status == ImportStatus.VALIDATED

    # when
    erase_contact(ann, compliance_user, "Ticket DPO-11")

    # then: her values are gone from the kept file, bob's row is as it was
    waiting.refresh_from_db()
    for value in ("ann@example.com", "+14155550111", "Annabel"):
        assert value not in waiting.data
    assert "bob,bob@example.com,,Bob" in waiting.data
    # and importing it later refuses her row rather than filling her in again
    done = run_import(waiting, ContactImport.VALID_ONLY)
    assert [(e["row"], e["column"]) for e in done.errors] == [(2, "external_id")]
    assert Contact.objects.get(external_id="bob").first_name == "Bob"
    ann.refresh_from_db()
    assert (ann.email, ann.first_name) == ("", "")


def test_an_upload_without_external_ids_loses_the_row_found_by_email(db, compliance_user):
    # given: a contact found by email, and a waiting upload naming her by email only
    cleo = Contact.objects.create(email="cleo@example.com", first_name="Cleo")
    waiting = check_import(start_import("waiting.csv", "email,first_name\nCLEO@example.com,Cleo\nbo@example.com,Bo\n",
                                        actor=compliance_user))

    # when
    erase_contact(cleo, compliance_user, "Ticket DPO-12")

    # then: importing it later does not make her again
    waiting.refresh_from_db()
    assert "cleo" not in waiting.data.lower() and "bo@example.com,Bo" in waiting.data
    done = run_import(waiting, ContactImport.VALID_ONLY)
    assert [(e["row"], e["column"]) for e in done.errors] == [(2, "email")]
    assert not Contact.objects.filter(email="cleo@example.com").exists()
    assert Contact.objects.filter(email="bo@example.com").exists()
