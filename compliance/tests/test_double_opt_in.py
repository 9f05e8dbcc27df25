"""Double opt-in for marketing email: a grant is pending (no consent to the gate) until the
contact follows the link in the confirmation email; unconfirmed, it expires."""
import re
import time
from datetime import datetime, timedelta, timezone as dt_timezone
from urllib.parse import urlsplit

import pytest
from django.core import signing
from django.test import Client
from django.utils import timezone

from channels.delivery import send_delivery
from channels.models import Message, MessageSource, OutboxMessage
from compliance import gate, links
from compliance.actions import record_consent_change
from compliance.models import Consent, ConsentChange, ConsentStatus
from compliance.preferences import expire_double_opt_ins
from contacts.models import Contact

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=dt_timezone.utc)
CONFIRM_LINK = re.compile(r"https://omni\.example\.com/u/confirm/\S+")


@pytest.fixture
def contact(db):
    return Contact.objects.create(external_id="ann", email="ann@example.com", phone="+14155550101")


@pytest.fixture
def client():
    return Client(enforce_csrf_checks=True)


def consent_of(contact, channel="email", purpose="marketing") -> Consent | None:
    return Consent.objects.filter(contact=contact, channel=channel, purpose=purpose).first()


def confirmation_link(contact) -> str:
    """Send the confirmation email through the sandbox and read the link out of it, as the contact would."""
    message = Message.objects.get(contact=contact, idempotency_key__startswith="double_opt_in:")
    send_delivery(message.deliveries.get().pk)
    [link] = CONFIRM_LINK.findall(OutboxMessage.objects.get(delivery__message=message).text_body)
    return urlsplit(link).path


@pytest.mark.parametrize("status", [ConsentStatus.PENDING, ConsentStatus.UNKNOWN])
def test_the_gate_reads_a_pending_marketing_consent_as_none(status):
    facts = gate.SendFacts(channel="email", purpose="marketing", address="ann@example.com", consent_status=status)

    verdict = gate.decide(facts, NOW)

    assert verdict.outcome == gate.SUPPRESS and verdict.reason == "no_marketing_consent"


def test_a_pending_consent_does_not_stop_transactional_email():
    facts = gate.SendFacts(channel="email", purpose="transactional", address="ann@example.com",
                           consent_status=ConsentStatus.PENDING)

    assert gate.decide(facts, NOW).allowed


def test_without_the_setting_a_grant_is_a_grant_and_nothing_is_sent(contact):
    record_consent_change(contact, "email", "marketing", "granted", "form")

    assert consent_of(contact).status == "granted"
    assert not Message.objects.exists()


def test_with_double_opt_in_a_signup_is_pending_and_a_confirmation_email_is_queued(contact, double_opt_in):
    # when
    change = record_consent_change(contact, "email", "marketing", "granted", "form", evidence={"form": "signup"})

    # then the consent waits, and the gate sees no consent
    assert change.status == "pending"
    assert change.evidence == {"form": "signup", "double_opt_in": {"previous_status": "unknown"}}
    assert consent_of(contact).status == "pending"
    verdict = gate.check(contact, "email", "marketing", contact.email, now=timezone.now())
    assert verdict.reason == "no_marketing_consent"
    # and one transactional system email is queued for the contact
    message = Message.objects.get(contact=contact)
    assert (message.source, message.purpose, message.idempotency_key) == (
        MessageSource.SYSTEM, "transactional", f"double_opt_in:{change.pk}")
    assert message.status == "queued" and message.deliveries.get().channel == "email"


@pytest.mark.parametrize("channel, purpose, source", [
    ("sms", "marketing", "form"), ("email", "informational", "form"), ("email", "marketing", "import"),
    ("email", "marketing", "admin"), ("email", "marketing", "preference_page"),
])
def test_other_scopes_and_sources_are_granted_at_once(contact, double_opt_in, channel, purpose, source):
    record_consent_change(contact, channel, purpose, "granted", source)

    assert consent_of(contact, channel, purpose).status == "granted"
    # no confirmation is asked for (an SMS opt-in is confirmed by its own first message, not here)
    assert not Message.objects.filter(idempotency_key__startswith="double_opt_in:").exists()


def test_a_consent_already_granted_stays_granted(contact, double_opt_in):
    record_consent_change(contact, "email", "marketing", "granted", "import")

    record_consent_change(contact, "email", "marketing", "granted", "api")

    assert consent_of(contact).status == "granted"
    assert not Message.objects.exists()


def test_following_the_link_and_confirming_grants_with_double_opt_in_as_source(contact, double_opt_in, client):
    # given
    pending = record_consent_change(contact, "email", "marketing", "granted", "form")
    path = confirmation_link(contact)

    # when the link is opened (a mail scanner would stop here)
    shown = client.get(path)

    # then nothing changed yet
    assert shown.status_code == 200
    assert "Confirm your subscription" in shown.content.decode()
    assert consent_of(contact).status == "pending"

    # when the contact presses the button
    confirmed = client.post(path)

    # then
    assert confirmed.status_code == 200
    assert "Subscription confirmed" in confirmed.content.decode()
    consent = consent_of(contact)
    assert consent.status == "granted"
    assert consent.last_change.source == "double_opt_in"
    assert consent.last_change.evidence["pending_change_id"] == pending.pk
    assert gate.check(contact, "email", "marketing", contact.email).allowed

    # and the link works once
    again = client.post(path)
    assert again.status_code == 409
    assert ConsentChange.objects.filter(source="double_opt_in").count() == 1


def test_a_confirmation_after_an_opt_out_changes_nothing(contact, double_opt_in, client):
    record_consent_change(contact, "email", "marketing", "granted", "form")
    path = confirmation_link(contact)
    record_consent_change(contact, "email", "marketing", "revoked", "unsubscribe_link")

    response = client.post(path)

    assert response.status_code == 409
    assert "no longer needed" in response.content.decode()
    assert consent_of(contact).status == "revoked"


def test_a_forged_or_expired_confirmation_changes_nothing(contact, double_opt_in, client):
    pending = record_consent_change(contact, "email", "marketing", "granted", "form")
    token = links.confirmation_token(contact.pk, pending.pk)

    class EightDaysAgo(signing.TimestampSigner):
        def timestamp(self):
            return signing.b62_encode(int(time.time() - 8 * 86400))

    expired = EightDaysAgo(salt=links.CONFIRM_SALT).sign_object({"c": contact.pk, "x": pending.pk})
    # an unsubscribe link's token under the confirmation's address
    other_kind = links.unsubscribe_token(contact.pk, 1, 1)

    for bad, status in [(token[:-2] + "zz", 400), (expired, 410), (other_kind, 400)]:
        assert client.post(f"/u/confirm/{bad}").status_code == status
    assert consent_of(contact).status == "pending"


def test_an_unconfirmed_consent_expires_back_to_what_it_was(contact, double_opt_in):
    # given one contact who opted out before signing up again, another who never had a consent
    other = Contact.objects.create(external_id="bob", email="bob@example.com")
    record_consent_change(contact, "email", "marketing", "revoked", "unsubscribe_link")
    record_consent_change(contact, "email", "marketing", "granted", "form")
    record_consent_change(other, "email", "marketing", "granted", "api")
    signed_up = timezone.now()

    # when the hourly task runs before and after the seven days
    assert expire_double_opt_ins(now=signed_up + timedelta(days=6)) == 0
    expired = expire_double_opt_ins(now=signed_up + timedelta(days=7, minutes=1))

    # then
    assert expired == 2
    assert consent_of(contact).status == "revoked"
    assert consent_of(other).status == "unknown"
    assert consent_of(other).last_change.source == "double_opt_in"
    assert consent_of(other).last_change.evidence["double_opt_in"] == "expired"
    assert expire_double_opt_ins(now=signed_up + timedelta(days=8)) == 0


def test_the_expiry_runs_hourly_in_the_beat_schedule(settings):
    from compliance.tasks import expire_double_opt_ins_task

    entry = settings.CELERY_BEAT_SCHEDULE["omni-expire-double-opt-ins"]
    assert entry["task"] == expire_double_opt_ins_task.name == "compliance.tasks.expire_double_opt_ins_task"
    assert entry["schedule"] == 3600.0

