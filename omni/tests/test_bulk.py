from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from contacts.models import Contact
from omni.lib.bulk import bulk_update

pytestmark = pytest.mark.django_db


def test_bulk_update_writes_each_rows_own_values_including_json_and_nulls():
    contacts = Contact.objects.bulk_create(Contact(external_id=f"c{i}", email=f"c{i}@example.com") for i in range(5))
    when = timezone.now() - timedelta(days=1)
    for i, contact in enumerate(contacts):
        contact.first_name = f"Name {i}"
        contact.attributes = {"rank": i, "tags": ["a", "b"][: i % 3]}
        contact.erased_at = when if i % 2 else None
        contact.messaging_paused = bool(i % 2)

    bulk_update(contacts, ["first_name", "attributes", "erased_at", "messaging_paused"], chunk=2)

    stored = {c.external_id: c for c in Contact.objects.all()}
    for i in range(5):
        contact = stored[f"c{i}"]
        assert contact.first_name == f"Name {i}"
        assert contact.attributes == {"rank": i, "tags": ["a", "b"][: i % 3]}
        assert contact.erased_at == (when if i % 2 else None)
        assert contact.messaging_paused is bool(i % 2)


@pytest.mark.postgres
def test_bulk_update_on_postgresql_is_one_statement_per_chunk():
    contacts = Contact.objects.bulk_create(Contact(external_id=f"c{i}") for i in range(10))
    for contact in contacts:
        contact.first_name = "x"

    with CaptureQueriesContext(connection) as queries:
        bulk_update(contacts, ["first_name"], chunk=4)

    assert len(queries) == 3


def test_bulk_insert_stores_every_field_including_json_nulls_and_foreign_keys():
    from compliance.models import ConsentChange
    from omni.lib.bulk import bulk_insert

    ann = Contact.objects.create(external_id="ann")
    when = timezone.now() - timedelta(hours=1)
    changes = [
        ConsentChange(contact=ann, channel="sms", purpose="marketing", status="granted", source="form",
                      evidence={"until": None, "tags": ["a", "é"], "n": 1}, occurred_at=when),
        ConsentChange(contact=ann, channel="email", purpose="marketing", status="revoked", source="form",
                      actor_label="tab\tnewline\n backslash \\ end"),
    ]

    bulk_insert(changes)

    first, second = ConsentChange.objects.order_by("id")
    assert (first.contact, first.channel, first.occurred_at) == (ann, "sms", when)
    assert first.evidence == {"until": None, "tags": ["a", "é"], "n": 1}
    assert (second.actor, second.actor_label, second.evidence) == (None, "tab\tnewline\n backslash \\ end", {})


@pytest.mark.parametrize("copy", [True, False])
def test_insert_rows_writes_the_given_values_and_each_other_columns_default(copy):
    from compliance.models import ConsentChange
    from omni.lib.bulk import insert_rows

    ann = Contact.objects.create(external_id="ann")
    when = timezone.now() - timedelta(hours=1)

    ids = insert_rows(ConsentChange, ["contact_id", "channel", "purpose", "status", "source", "evidence", "occurred_at"], [
        (ann.pk, "sms", "marketing", "granted", "form", {"until": None, "tags": ["a", "é"]}, when),
        (ann.pk, "email", "marketing", "revoked", "form", {"note": "tab\tnewline\n backslash \\"}, when),
    ], set_ids=True, copy=copy)

    first, second = ConsentChange.objects.order_by("id")
    assert ids == [first.pk, second.pk]
    assert (first.contact, first.channel, first.status, first.occurred_at) == (ann, "sms", "granted", when)
    assert first.evidence == {"until": None, "tags": ["a", "é"]}
    assert second.evidence == {"note": "tab\tnewline\n backslash \\"}
    # columns not given hold their field's default
    assert (second.actor_id, second.actor_label) == (None, ConsentChange._meta.get_field("actor_label").get_default())


def test_insert_rows_takes_a_key_made_in_python():
    import uuid

    from compliance.models import Decision
    from omni.lib.bulk import insert_rows

    key = uuid.uuid4()
    ids = insert_rows(Decision, ["id", "channel", "purpose", "outcome", "reason", "consent_status", "digest"],
                      [(key, "sms", "marketing", "allow", "consent:granted", "granted", "d" * 64)], set_ids=True)

    stored = Decision.objects.get()
    assert ids == [key] and stored.pk == key
    assert (stored.suppressions, stored.inputs, stored.plan_step) == ([], {}, 0)


@pytest.mark.parametrize("write", ["bulk_insert", "insert_rows"])
def test_a_taken_unique_key_is_djangos_integrity_error_whatever_writes_it(write):
    from django.db import IntegrityError, transaction

    from omni.lib.bulk import bulk_insert, insert_rows

    Contact.objects.create(external_id="taken")

    with pytest.raises(IntegrityError), transaction.atomic():
        if write == "bulk_insert":
            bulk_insert([Contact(external_id="taken")])
        else:
            insert_rows(Contact, ["external_id"], [("taken",)])
    assert Contact.objects.filter(external_id="taken").count() == 1


def test_insert_unless_taken_inserts_once_and_says_when_a_unique_row_was_there():
    from omni.lib.bulk import insert_unless_taken

    first, second = Contact(external_id="once"), Contact(external_id="once")

    assert insert_unless_taken(first) is True
    assert insert_unless_taken(second) is False
    assert first.pk == Contact.objects.get(external_id="once").pk and second.pk is None
    assert Contact.objects.filter(external_id="once").count() == 1


def test_insert_unless_taken_respects_a_partial_unique_constraint():
    from channels.models import Conversation
    from omni.lib.bulk import insert_unless_taken

    contact = Contact.objects.create(external_id="c")
    now = timezone.now()

    def conversation(status):
        return Conversation(contact=contact, channel="sms", status=status, opened_at=now, last_inbound_at=now,
                            last_activity_at=now)

    assert insert_unless_taken(conversation("closed")) and insert_unless_taken(conversation("open"))
    assert insert_unless_taken(conversation("open")) is False
    with CaptureQueriesContext(connection) as captured:
        insert_unless_taken(conversation("closed"))
    assert len(captured) == 1


# --- insert_from_json: the INSERTs of a statement of several ----------------------------------------

def insert_json(row, **options):
    """Run insert_from_json()'s INSERT of `row` (a list: its rows in one array) on its own."""
    from omni.lib.bulk import insert_from_json, row_json

    rows = row if isinstance(row, list) else [row]
    sql = insert_from_json(rows[0], connection, many=isinstance(row, list), **options)
    with connection.cursor() as cursor:
        cursor.execute(sql, ["[" + ", ".join(map(row_json, rows)) + "]" if isinstance(row, list) else row_json(row)])


@pytest.mark.postgres
def test_insert_from_json_writes_rows_in_order_each_other_column_its_default():
    from omni.lib.bulk import row_of, row_of_values

    when = timezone.now().replace(microsecond=123456)
    first = Contact(external_id="first", first_name="Zoë \"A\"", attributes={"tags": ["a", None], "n": 1.5},
                    erased_at=when)

    insert_json(row_of(first))
    insert_json([row_of_values(Contact, ("external_id", "last_name"), (name, "Lee")) for name in ("second", "third")])

    stored = {c.external_id: c for c in Contact.objects.order_by("pk")}
    assert list(stored) == ["first", "second", "third"]  # keys in the array's order
    assert (stored["first"].first_name, stored["first"].attributes) == ('Zoë "A"', {"tags": ["a", None], "n": 1.5})
    assert stored["first"].erased_at == when  # to the microsecond
    assert (stored["third"].last_name, stored["third"].first_name, stored["third"].attributes) == ("Lee", "", {})
    assert stored["third"].created_at is not None


@pytest.mark.postgres
def test_insert_from_json_puts_each_value_in_its_own_column_whatever_order_the_table_has():
    # Contact's table has the columns later migrations added at its end, not in the model's order.
    from omni.lib.bulk import row_of, table_columns

    assert table_columns(Contact, connection) != [f.column for f in Contact._meta.concrete_fields]
    texts = {field.attname: f"{field.attname}-value" for field in Contact._meta.concrete_fields
             if field.get_internal_type() == "CharField" and not field.choices and field.max_length >= 40}
    contact = Contact(**texts, unknown_sender=True, messaging_paused=False, is_test=True)

    insert_json(row_of(contact))

    stored = Contact.objects.get(external_id=texts["external_id"])
    assert {name: getattr(stored, name) for name in texts} == texts
    assert (stored.unknown_sender, stored.messaging_paused, stored.is_test) == (True, False, True)


@pytest.mark.postgres
def test_insert_from_json_takes_computed_columns_from_the_statements_other_relations():
    from omni.lib.bulk import row_of

    insert_json(row_of(Contact(external_id="computed", first_name="from JSON")),
                source="(SELECT 'from the statement' AS name) n", computed=(("first_name", "n.name"),))

    assert Contact.objects.get(external_id="computed").first_name == "from the statement"


@pytest.mark.postgres
def test_insert_from_json_fails_on_a_row_taken_unless_it_skips_it():
    from django.db import IntegrityError, transaction

    from omni.lib.bulk import row_of

    Contact.objects.create(external_id="taken")

    with pytest.raises(IntegrityError), transaction.atomic():
        insert_json(row_of(Contact(external_id="taken")))
    insert_json(row_of(Contact(external_id="taken", first_name="Other"), skip_taken=True))

    assert Contact.objects.get(external_id="taken").first_name == ""


AWKWARD_TEXTS = ['plain', 'two words', 'a,b', '{braces}', 'say "hi"', 'back\\slash', '\\"', 'NULL', '', ' padded ',
                 'tab\tand\nnewline', 'Zoë 👍']


def test_filter_in_finds_every_value_however_awkward_its_text():
    from omni.lib.bulk import filter_in

    contacts = Contact.objects.bulk_create(Contact(external_id=text or "empty", first_name=text)
                                           for text in AWKWARD_TEXTS)
    Contact.objects.create(external_id="other", first_name="plain too")

    found = filter_in(Contact.objects.all(), "first_name", AWKWARD_TEXTS)
    by_id = filter_in(Contact.objects.all(), "id", [c.pk for c in contacts[:3]])

    assert sorted(found.values_list("first_name", flat=True)) == sorted(AWKWARD_TEXTS)
    assert sorted(by_id.values_list("pk", flat=True)) == [c.pk for c in contacts[:3]]
    assert not filter_in(Contact.objects.all(), "id", []).exists()


def test_bulk_update_writes_awkward_text_as_given():
    contacts = Contact.objects.bulk_create(Contact(external_id=f"c{i}") for i in range(len(AWKWARD_TEXTS)))
    for contact, text in zip(contacts, AWKWARD_TEXTS):
        contact.first_name = text

    bulk_update(contacts, ["first_name"])

    assert [Contact.objects.get(pk=c.pk).first_name for c in contacts] == AWKWARD_TEXTS


def test_filter_in_does_not_cut_a_value_longer_than_its_column_to_match():
    from omni.lib.bulk import filter_in

    limit = Contact._meta.get_field("first_name").max_length
    Contact.objects.create(external_id="short", first_name="x" * limit)

    longer = filter_in(Contact.objects.all(), "first_name", ["x" * (limit + 5)])

    assert not longer.exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite keeps text of any length in any column")
def test_bulk_update_refuses_a_value_longer_than_its_column_rather_than_cutting_it():
    from django.db import DataError, transaction

    contact = Contact.objects.create(external_id="long")
    limit = Contact._meta.get_field("first_name").max_length
    contact.first_name = "y" * (limit + 5)

    with pytest.raises(DataError), transaction.atomic():
        bulk_update([contact], ["first_name"])
    assert Contact.objects.get(pk=contact.pk).first_name == ""
