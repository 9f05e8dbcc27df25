"""In a real browser, a compliance user's whole task of issue 22, on the demo data: she records a
contact's consent with its evidence and lawful basis, imports a contact file with one bad row
(the errors shown row by row, the valid rows imported), tightens a quiet-hours rule after reading
its replay, downloads a contact's trail, and erases a contact. The audit chain verifies after.
Screenshots at each step."""
import io
from datetime import time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.utils import timezone

from compliance import decisions, gate
from compliance.models import Consent, QuietHours
from compliance.tests.browser_steps_consent import record_consent_step
from compliance.tests.browser_steps_replay import replay_quiet_hours_step
from contacts.models import Contact, ContactImport
from contacts.tests.browser_steps_erase import erase_contact_step
from contacts.tests.browser_steps_import import import_contacts_step
from omni import audit
from omni.tests.browser_steps_export import export_contact_trail_step

pytestmark = pytest.mark.browser

CONTACT_FILE = (
    "external_id,email,phone,first_name,consent_email_marketing,lawful_basis_email_marketing,consent_evidence,"
    "consent_at\n"
    "walk-1,walk1@example.com,+14155550111,Wanda,granted,consent,Signed up at the spring fair,2026-11-20T10:00:00Z\n"
    "walk-2,not-an-email,+14155550112,Wally,granted,consent,Signed up at the spring fair,2026-11-20T10:05:00Z\n"
    "walk-3,walk3@example.com,,Wilma,revoked,,,2026-11-21T09:00:00Z\n"
)


def test_a_compliance_user_records_consent_imports_replays_exports_and_erases(
        demo_logins, eager_celery, live_server, page, log_in, screenshot):
    log_in("compliance", demo_logins["compliance"])

    # she records Dave's SMS marketing consent, with its evidence and lawful basis
    dave = Contact.objects.get(external_id="demo-dave")
    consent = record_consent_step(page, live_server.url, dave, channel="sms", purpose="marketing",
                                  lawful_basis="consent", screenshot=screenshot)
    assert (consent.status, consent.lawful_basis, consent.last_change.actor.username) == (
        "granted", "consent", "compliance")

    # she imports a file with one bad row: its error named by row and column, the rest imported
    import_contacts_step(page, live_server.url, CONTACT_FILE, screenshot=screenshot)
    job = ContactImport.objects.get()
    # rows are numbered as the file's lines, the header being line 1
    assert [(error["row"], error["column"]) for error in job.errors] == [(3, "email")]
    assert set(Contact.objects.filter(external_id__startswith="walk-").values_list("external_id", flat=True)) == {
        "walk-1", "walk-3"}
    assert Consent.objects.get(contact__external_id="walk-1", channel="email", purpose="marketing").status == "granted"

    # she moves the nights' quiet hours to start at 19:00 (an SMS went to Dave at 20:00 yesterday, his time),
    # reading the replay before it is saved
    rule = QuietHours.objects.create(name="Nights", start=time(22), end=time(7))
    evening = (timezone.now().astimezone(ZoneInfo(dave.timezone)) - timedelta(days=1)).replace(
        hour=20, minute=0, second=0, microsecond=0)
    verdict = gate.check(dave, "sms", "informational", dave.phone, now=evening, message_id=1)
    decisions.record([decisions.Ruling(verdict, 1, dave.pk)], evening)
    said = replay_quiet_hours_step(page, live_server.url, rule, start=time(19), screenshot=screenshot)
    assert any("-1 allowed" in row and "+1 deferred" in row for row in said["differences"])
    rule.refresh_from_db()
    assert rule.start == time(19)

    # she downloads Bob's whole trail as one workbook
    bob = Contact.objects.get(external_id="demo-bob")
    workbook = export_contact_trail_step(page, live_server.url, bob, screenshot=screenshot)
    assert len(workbook) == 5

    # she erases Bob, giving the reason
    erase_contact_step(page, live_server.url, bob, "Erasure request by email, ticket 4411", screenshot=screenshot)
    bob.refresh_from_db()
    assert bob.erased_at is not None and bob.email == "" and bob.first_name == ""

    # and the audit chain still verifies
    audit.seal_pending()
    call_command("verify_audit", stdout=io.StringIO())
