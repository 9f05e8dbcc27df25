"""Erasure: a contact's personal data emptied in every app in one transaction, history kept,
addresses suppressed by hash, unsent messages cancelled, journeys ended, the chain intact."""
import io
import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext

from campaigns.models import Enrollment, EnrollmentState
from channels.conversations import block_sender
from channels.models import (
    BlockedSender,
    ConversationNote,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    InboundMessage,
    Message,
    MessageStatus,
    OutboxMessage,
)
from channels.provider_reports import record_inbound_message
from compliance import gate
from compliance.models import ConsentChange, Suppression, SuppressionReason, hash_address
from contacts.actions import ContactAlreadyErased, ContactErased, InvalidField, erase_contact, upsert_contact
from contacts.models import Contact, ContactEvent, Device
from omni import audit
from omni.models import AuditEntry, AuditPersonalData, WebhookCall

from .erasure_fixtures import EMAIL, PHONE, SECRET_WORDS, contact_with_everything

HASHES = [hash_address(EMAIL), hash_address(PHONE)]


@pytest.fixture
def erin(db):
    return contact_with_everything()


@pytest.fixture
def compliance_officer(django_user_model, role_groups):
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user(username="cora", password="not-used", is_staff=True)
    user.groups.add(Group.objects.get(name="Compliance"))
    return user


def personal_data_left(contact_id: int) -> dict:
    """Every field erasure blanks, where it still holds something, by table."""
    left = {
        "contact": list(Contact.objects.filter(pk=contact_id).exclude(
            email="", phone="", first_name="", last_name="", timezone="", country="", attributes={})
            .values("email", "phone", "first_name", "last_name", "timezone", "country", "attributes")),
        "events": list(ContactEvent.objects.filter(contact_id=contact_id).exclude(properties={})
                       .values_list("properties", flat=True)),
        "devices": list(Device.objects.filter(contact_id=contact_id, token__startswith="device-token")
                        .values_list("token", flat=True))
        + list(Device.objects.filter(contact_id=contact_id).exclude(provider_endpoint="")
               .values_list("provider_endpoint", flat=True)),
        "consent_evidence": list(ConsentChange.objects.filter(contact_id=contact_id).exclude(evidence={})
                                 .values_list("evidence", flat=True)),
        "suppressions": list(Suppression.objects.filter(Q(contact_id=contact_id) | Q(address_hash__in=HASHES))
                             .exclude(address="", detail="").values_list("address", "detail")),
        "blocked_senders": list(BlockedSender.objects.filter(address_hash__in=HASHES).exclude(address="", note="")
                                .values_list("address", "note")),
        "message_variables": list(Message.objects.filter(contact_id=contact_id).exclude(variables={})
                                  .values_list("variables", flat=True)),
        "own_content": list(Message.objects.filter(contact_id=contact_id, content__isnull=False).exclude(content=[])
                            .values_list("content", flat=True)),
        "deliveries": list(Delivery.objects.filter(contact_id=contact_id).exclude(
            to_address="", subject="", text_body="", html_body="", content={}, error_message="")
            .values("to_address", "subject", "text_body", "html_body", "content", "error_message")),
        "delivery_events": list(DeliveryEvent.objects.filter(delivery__contact_id=contact_id)
                                .exclude(raw={}, recipient="", detail="").values("raw", "recipient", "detail")),
        "outbox": list(OutboxMessage.objects.filter(delivery__contact_id=contact_id)
                       .exclude(to_address="", subject="", text_body="", html_body="", content={})
                       .values("to_address", "text_body")),
        "inbound": list(InboundMessage.objects.filter(contact_id=contact_id)
                        .exclude(from_address="", body="", media=[], raw={}).values("from_address", "body", "media")),
        "notes": list(ConversationNote.objects.filter(conversation__contact_id=contact_id).exclude(body="")
                      .values_list("body", flat=True)),
        "enrollment_context": list(Enrollment.objects.filter(contact_id=contact_id).exclude(context={})
                                   .values_list("context", flat=True)),
        "webhook_calls": list(WebhookCall.objects.exclude(response_excerpt="").values_list("response_excerpt", flat=True)),
        "audit_personal_data": list(AuditPersonalData.objects.filter(contact_id=contact_id, erased_at__isnull=True)
                                    .exclude(entry__action="contact.erased").values_list("data", flat=True)),
        "audit_personal_data_by_address": list(AuditPersonalData.objects.filter(
            contact_id__isnull=True, data__address__in=[EMAIL, PHONE]).exclude(data={}).values_list("data", flat=True)),
    }
    return {table: rows for table, rows in left.items() if rows}


def test_after_erasure_no_personal_data_is_left_in_any_app(erin, compliance_officer):
    # given: something personal in every app
    assert set(personal_data_left(erin.pk)) == {
        "contact", "events", "devices", "consent_evidence", "suppressions", "message_variables", "own_content",
        "deliveries", "delivery_events", "outbox", "inbound", "notes", "enrollment_context", "webhook_calls",
        "audit_personal_data", "blocked_senders", "audit_personal_data_by_address"}

    # when
    counts = erase_contact(erin, compliance_officer, "Ticket DPO-42: erasure request by email")

    # then
    assert personal_data_left(erin.pk) == {}
    erin.refresh_from_db()
    assert erin.erased_at is not None and erin.external_id == "erin"
    assert counts["channels.deliveries"] == 3 and counts["compliance.consent_evidence"] == 2
    # the history stays: the rows, their statuses and times
    assert Message.objects.filter(contact=erin).count() == 5
    assert Delivery.objects.filter(contact=erin, status=DeliveryStatus.SENT).count() == 2
    assert ConsentChange.objects.filter(contact=erin).count() == 2
    erased_personal = AuditPersonalData.objects.filter(contact_id=erin.pk).exclude(entry__action="contact.erased")
    assert erased_personal.exists() and set(erased_personal.values_list("key", flat=True)) == {""}


def test_a_blocked_address_stays_blocked_once_erased(erin, compliance_officer):
    erase_contact(erin, compliance_officer, "Ticket DPO-43")
    # the block keeps only the hash of the number...
    block = BlockedSender.objects.get(address_hash=hash_address(PHONE))
    assert (block.address, block.note, block.unblocked_at) == ("", "", None)

    # ...and a message from it on WhatsApp is still stored as blocked: it opens nothing
    inbound, created = record_inbound_message("twilio", "SM-after-erasure", "whatsapp", PHONE, body="It's me again")
    assert created and inbound.blocked and inbound.conversation_id is None
    # a block is still refused twice over, by its hash
    assert block_sender("whatsapp", PHONE, reason="spam", actor=None).pk == block.pk


def test_unsent_messages_are_cancelled_and_live_enrollments_exit(erin):
    erase_contact(erin, None, "Ticket DPO-43", actor_label="test")

    statuses = sorted(Message.objects.filter(contact=erin).values_list("status", flat=True))
    assert statuses == sorted([MessageStatus.SENT, MessageStatus.SENT] + [MessageStatus.CANCELLED] * 3)
    assert set(Message.objects.filter(contact=erin, status=MessageStatus.CANCELLED)
               .values_list("status_reason", flat=True)) == {"contact_erased"}
    assert Delivery.objects.get(contact=erin, channel="sms").status == DeliveryStatus.CANCELLED
    enrollment = Enrollment.objects.get(contact=erin)
    assert (enrollment.state, enrollment.end_reason, enrollment.next_run_at) == (
        EnrollmentState.EXITED, "contact_erased", None)
    assert AuditEntry.objects.filter(action="journey.exited", object_id=str(enrollment.pk)).exists()


@pytest.mark.parametrize("channel, address", [("email", EMAIL), ("sms", PHONE), ("whatsapp", PHONE)])
def test_a_new_contact_with_an_erased_address_is_still_suppressed_by_the_gate(erin, channel, address):
    erase_contact(erin, None, "Ticket DPO-44", actor_label="test")
    assert not Suppression.objects.filter(address__in=[EMAIL, PHONE]).exists()

    newcomer = Contact.objects.create(external_id="new-erin", email=EMAIL, phone=PHONE)
    verdict = gate.check(newcomer, channel, "transactional", address)

    assert verdict.outcome == "suppress"
    assert Suppression.objects.filter(address_hash=hash_address(address), channel="", purpose="",
                                      reason=SuppressionReason.ERASURE).exists()


def test_a_contact_without_suppressions_is_suppressed_once_erased(db):
    contact = Contact.objects.create(external_id="plain", email="plain@example.com")
    assert gate.check(contact, "email", "transactional", "plain@example.com").allowed

    erase_contact(contact, None, "Ticket DPO-45", actor_label="test")

    again = Contact.objects.create(external_id="plain-again", email="plain@example.com")
    assert gate.check(again, "email", "transactional", "plain@example.com").outcome == "suppress"


def test_verify_audit_passes_after_erasure_and_the_chain_holds_no_personal_data(erin):
    audit.seal_pending()  # the entries written before, sealed with their personal data's keyed hashes

    erase_contact(erin, None, "Ticket DPO-46 for Erin Erasmus", actor_label="test")
    audit.seal_pending()

    call_command("verify_audit", stdout=io.StringIO())
    chained = json.dumps(list(AuditEntry.objects.filter(contact_id=erin.pk).values(
        "actor_label", "object_id", "reason", "data")))
    assert [word for word in SECRET_WORDS if word in chained] == []
    # the reason is kept, outside the chain
    [erased] = AuditEntry.objects.filter(action="contact.erased", contact_id=erin.pk)
    assert erased.personal.data == {"why": "Ticket DPO-46 for Erin Erasmus"}
    assert erased.data["counts"]["channels.messages_cancelled"] == 3


def test_erasing_twice_is_refused_and_changes_nothing(erin):
    erase_contact(erin, None, "Ticket DPO-47", actor_label="test")
    entries = AuditEntry.objects.count()

    with pytest.raises(ContactAlreadyErased, match="external_id 'erin' was already erased on"):
        erase_contact(erin, None, "Ticket DPO-47 again", actor_label="test")

    assert AuditEntry.objects.count() == entries


@pytest.mark.parametrize("why", ["", "   ", None, "x" * 1001, "bad\x00reason"])
def test_a_missing_or_bad_reason_is_refused_naming_it_and_nothing_is_erased(erin, why):
    with pytest.raises(InvalidField) as refused:
        erase_contact(erin, None, why, actor_label="test")

    assert refused.value.field == "reason"
    erin.refresh_from_db()
    assert erin.erased_at is None and erin.email == EMAIL
    assert Message.objects.filter(contact=erin, status=MessageStatus.PENDING).exists()


def test_a_failing_app_rolls_the_whole_erasure_back(erin):
    from contacts import hooks

    def refuse(sender, **kwargs):
        raise RuntimeError("disk full")

    hooks.erase_contact.connect(refuse, dispatch_uid="test.refuse")
    try:
        with pytest.raises(RuntimeError):
            erase_contact(erin, None, "Ticket DPO-48", actor_label="test")
    finally:
        hooks.erase_contact.disconnect(dispatch_uid="test.refuse")

    erin.refresh_from_db()
    assert erin.erased_at is None
    assert set(personal_data_left(erin.pk)) >= {"contact", "deliveries", "consent_evidence", "enrollment_context"}


def test_the_api_cannot_fill_an_erased_contact_in_again(erin):
    erase_contact(erin, None, "Ticket DPO-49", actor_label="test")

    with pytest.raises(ContactErased):
        upsert_contact("erin", {"email": EMAIL}, actor_label="test")


@pytest.mark.parametrize("messages", [2, 50])
def test_erasure_takes_the_same_queries_for_2_and_50_messages(db, messages):
    contact = contact_with_everything(external_id=f"many-{messages}", email=f"many{messages}@example.com",
                                      phone=f"+1415555{messages:04d}", messages=messages)

    with CaptureQueriesContext(connection) as queries:
        erase_contact(contact, None, "Ticket DPO-50", actor_label="test")

    # A fixed number whatever the number of rows: one statement per table, no query per row.
    assert len(queries) == EXPECTED_ERASURE_QUERIES[connection.vendor], "\n".join(q["sql"][:150] for q in queries)


# One more than before blocks were erased too, one more for the audit entries of provider
# reports that matched no delivery; on PostgreSQL two more to bound the wait for a running import.
EXPECTED_ERASURE_QUERIES = {"sqlite": 33, "postgresql": 34}
