"""Edges of the audit log, its export and erasure that compliance staff rely on: the changelist's
filters still hold when a contact is searched for, and erasure reaches every audit entry and
row that names one of the contact's addresses."""
import csv
import io
import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from channels.provider_reports import record_delivery_event
from compliance.actions import suppress
from contacts.actions import erase_contact
from contacts.models import Contact
from omni import audit
from omni.models import AuditEntry, AuditPersonalData

pytestmark = pytest.mark.django_db

EMAIL = "erin.edges@example.com"
PHONE = "+14155550177"


def exported_rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_searching_the_audit_log_for_a_contact_keeps_the_other_filters(admin_client):
    # given a contact with entries of two actions, and an entry of the filtered action about no one
    erin = Contact.objects.create(external_id="erin-edges", email=EMAIL)
    audit.record("consent.changed", contact=erin, reason="granted")
    audit.record("contact.updated", contact=erin, reason="api")
    audit.record("contact.updated", reason="other")

    # when the changelist is filtered by action and searched by the contact's email
    filters = {"action__exact": "consent.changed", "q": EMAIL}
    page = admin_client.get(reverse("admin:omni_auditentry_changelist"), filters)
    export = admin_client.get(reverse("admin:omni_auditentry_export"), filters)

    # then only the contact's entries of that action are listed, and exported
    assert [e.action for e in page.context["cl"].result_list] == ["consent.changed"]
    assert [row["action"] for row in exported_rows(export)] == ["consent.changed"]


def test_erasure_empties_the_renewal_of_a_suppression_made_before_the_contact_existed(db):
    # given a temporary suppression of a number no contact has yet, renewed by a lasting one
    suppress(PHONE, channel="sms", reason="manual", detail=f"caller {PHONE} asked for a pause",
             expires_at=timezone.now() + timedelta(days=1))
    suppression, renewed = suppress(PHONE, channel="sms", reason="manual", detail="asked again, for good")
    assert renewed
    # ...and later a contact with that number, erased on request
    erin = Contact.objects.create(external_id="erin-edges", phone=PHONE)

    erase_contact(erin, None, "Ticket DPO-77")

    # then no audit entry's personal data still names the number
    left = [row for row in AuditPersonalData.objects.values_list("data", flat=True) if PHONE in json.dumps(row)]
    assert left == []


def test_erasure_empties_provider_events_about_the_address_that_matched_no_delivery(db):
    # given a bounce for the contact's address that matched no delivery (kept for reconciliation)
    erin = Contact.objects.create(external_id="erin-edges", email=EMAIL)
    event, _ = record_delivery_event("ses", "ev-unlinked-1", "pm-unknown", "bounced", timezone.now(),
                                     recipient=EMAIL, detail=f"550 {EMAIL} mailbox unknown",
                                     raw={"mail": {"destination": [EMAIL]}}, channel="email",
                                     protect_unlinked=False)
    assert event.delivery_id is None

    erase_contact(erin, None, "Ticket DPO-78")

    # then the event keeps its type and time, not the address, and neither does its audit entry
    event.refresh_from_db()
    assert (event.recipient, event.detail, event.raw) == ("", "", {})
    entry = AuditEntry.objects.get(action="delivery.bounced", object_id=str(event.pk))
    assert entry.contact_id is None and AuditPersonalData.objects.get(entry=entry).data == {}


def test_erasure_empties_why_the_tick_set_a_contacts_rows_aside(db):
    # given rows of the contact in every app quarantined by the tick, the failure's text naming
    # the person (the audit log keeps that text as personal data for that reason)
    from channels.models import Delivery, InboundMessage, Message
    from contacts.models import ContactEvent
    from contacts.tests.erasure_fixtures import contact_with_everything
    from omni.lib.quarantine import quarantine

    erin = contact_with_everything(external_id="erin-edges", email=EMAIL, phone=PHONE)
    now = timezone.now()
    models = [ContactEvent, InboundMessage, Message, Delivery]
    for model in models:
        row = model.objects.filter(contact=erin).first()
        quarantine(model, [(row, f"ValueError: cannot handle {EMAIL} or {PHONE}")], now, stage="test")

    erase_contact(erin, None, "Ticket DPO-79")

    # then the rows stay set aside, without the text
    for model in models:
        assert list(model.objects.filter(contact=erin, quarantined_at__isnull=False)
                    .values_list("quarantined_at", "quarantine_reason")) == [(now, "")], model
