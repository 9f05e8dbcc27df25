"""create_and_dispatch: new messages created and routed in one step. On PostgreSQL they are
routed before they are stored and written once, already where routing sent them; the outcome
is the one create_messages() then dispatch_many() gives."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels import routing
from channels.models import Delivery, Message, MessageSource, MessageStatus
from compliance.models import CapAction, Decision, FrequencyCap, SendLedger
from contacts.models import Contact
from omni.models import AuditEntry


def _batch(contacts, prefix: str) -> list[Message]:
    """One unsaved message per contact: SMS then email, marketing, and one informational."""
    return [Message(contact=contact, source=MessageSource.API, purpose=purpose,
                    channel_plan=[{"channel": "sms"}, {"channel": "email"}],
                    content=[{"channel": c, "text_body": "Hello"} for c in ("sms", "email")],
                    idempotency_key=f"{prefix}:{contact.pk}:{purpose}", intent_key=f"{prefix}:{purpose}")
            for contact in contacts for purpose in ("marketing", "informational")]


def _outcome(messages) -> list[tuple]:
    """What routing made of each message, in order, keyed by its contact and purpose."""
    rows = []
    for message in messages:
        stored = Message.objects.get(pk=message.pk)
        decisions = list(Decision.objects.filter(message_id=message.pk).order_by("plan_step")
                         .values_list("channel", "outcome", "reason"))
        deliveries = list(Delivery.objects.filter(message_id=message.pk).values_list("channel", "status"))
        ledger = list(SendLedger.objects.filter(message_id=message.pk).values_list("channel", "plan_step"))
        rows.append((stored.contact.first_name, stored.purpose, stored.status, stored.status_reason,
                     stored.plan_step, stored.said_at,
                     decisions, deliveries, ledger))
    return rows


def _people(path: str) -> list[Contact]:
    """One reachable by SMS, one with only an email address, one who opted out of informational
    SMS (first names say which); and a cap of one message an hour, deferring the next."""
    from compliance.actions import record_consent_change

    sms = Contact.objects.create(external_id=f"{path}-sms", first_name="sms", phone=f"+1415555{len(path):04}",
                                 email=f"{path}-sms@example.com")
    email = Contact.objects.create(external_id=f"{path}-email", first_name="email", email=f"{path}-email@example.com")
    out = Contact.objects.create(external_id=f"{path}-out", first_name="out", phone=f"+1415556{len(path):04}",
                                 email=f"{path}-out@example.com")
    for contact in (sms, email):
        for channel in ("sms", "email"):
            record_consent_change(contact, channel, "marketing", "granted", "form", announce=False)
    record_consent_change(out, "sms", "informational", "revoked", "form", announce=False)
    FrequencyCap.objects.get_or_create(name="One an hour", limit=1, window_seconds=3600, action=CapAction.DEFER)
    return [sms, email, out]


@pytest.fixture
def people(db):
    return _people("people")


def test_new_messages_end_as_create_messages_then_dispatch_many_leaves_them(db, now):
    _, created = routing.create_messages(_batch(_people("two-steps"), "two-steps"))
    routing.dispatch_many(created, now=now)
    two_steps = _outcome(created)

    every, created = routing.create_and_dispatch(_batch(_people("one-step"), "one-step"), now=now)

    assert every == created and all(m.pk for m in created)
    assert _outcome(created) == two_steps
    # sms and email: the marketing message goes (email skips SMS: no phone), the cap defers the
    # next; out: marketing has no opt-in on either channel, and the SMS opt-out ends the
    # informational one (it never moves to email).
    assert [(row[0], row[1], row[2], row[3], row[7]) for row in two_steps] == [
        ("sms", "marketing", "queued", "consent:granted", [("sms", "queued")]),
        ("sms", "informational", "deferred", "frequency_cap", []),
        ("email", "marketing", "queued", "consent:granted", [("email", "queued")]),
        ("email", "informational", "deferred", "frequency_cap", []),
        ("out", "marketing", "suppressed", "no_eligible_channel", []),
        ("out", "informational", "suppressed", "opted_out", []),
    ]
    assert AuditEntry.objects.filter(action__startswith="gate.").count() == Decision.objects.count()


def test_a_message_whose_key_is_taken_is_returned_as_stored_and_not_dispatched_again(people, now):
    [first], _ = routing.create_and_dispatch(_batch(people[:1], "again")[:1], now=now)
    decisions = Decision.objects.count()

    every, created = routing.create_and_dispatch(_batch(people[:1], "again"), now=now)

    assert [m.pk for m in every][0] == first.pk and len(created) == 1
    assert Decision.objects.filter(message_id=first.pk).count() == decisions
    assert Message.objects.count() == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="keys are reserved before the insert on PostgreSQL")
def test_on_postgresql_a_new_message_is_written_once_in_the_status_routing_gave_it(people, now):
    with CaptureQueriesContext(connection) as queries:
        _, created = routing.create_and_dispatch(_batch(people, "once"), now=now)

    statements = [q["sql"] for q in queries.captured_queries]
    assert not [sql for sql in statements if sql.startswith('UPDATE "channels_message"')], statements
    assert all(Message.objects.get(pk=m.pk).status == m.status != MessageStatus.PENDING for m in created)
