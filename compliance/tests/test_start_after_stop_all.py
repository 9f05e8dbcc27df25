"""A START on one channel after an all-channel stop suppression (a STOPALL, a carrier) opens that
channel only: the suppression is narrowed, the other channels stay suppressed (record_opt_back_in)."""
from datetime import timedelta

import pytest
from django.utils import timezone

from compliance import gate
from compliance.actions import record_opt_back_in, suppress
from compliance.models import Suppression, hash_address
from contacts.models import Contact
from omni.models import AuditEntry

PHONE = "+14155550100"
OTHER_CHANNELS = {"email", "whatsapp", "rcs", "push"}


@pytest.fixture
def contact(db):
    return Contact.objects.create(external_id="alice", email="alice@example.com", phone=PHONE, first_name="Alice")


@pytest.fixture
def stopped_everywhere(contact):
    """The number suppressed on every channel by a stop that lasts a year, as a carrier left it."""
    suppression, _ = suppress(PHONE, reason="stop", contact=contact, detail="carrier 21610",
                              expires_at=timezone.now() + timedelta(days=365))
    return suppression


def verdict(contact, channel):
    return gate.check(contact, channel, "transactional", PHONE)


def test_start_on_sms_opens_sms_and_keeps_whatsapp_and_rcs_suppressed(contact, stopped_everywhere):
    # when
    record_opt_back_in(contact, "sms", address=PHONE, evidence={"keyword": "start"}, actor_label="provider:twilio")

    # then the gate lets SMS through and still stops the other phone channels
    assert verdict(contact, "sms").allowed
    assert verdict(contact, "whatsapp").reason == "suppressed:stop"
    assert verdict(contact, "rcs").reason == "suppressed:stop"
    # and every other channel keeps a stop of its own, with what the all-channel one kept
    rows = Suppression.objects.filter(address_hash=hash_address(PHONE))
    assert {row.channel for row in rows} == OTHER_CHANNELS
    assert {(row.reason, row.purpose, row.contact_id, row.detail, row.created_at, row.expires_at, row.address)
            for row in rows} == {("stop", "", contact.pk, "carrier 21610", stopped_everywhere.created_at,
                                  stopped_everywhere.expires_at, PHONE)}


def test_narrowing_is_audited_as_a_lift_and_an_addition_per_channel(contact, stopped_everywhere):
    # when
    record_opt_back_in(contact, "sms", address=PHONE, evidence={"keyword": "start"}, actor_label="provider:twilio")

    # then
    entries = AuditEntry.objects.filter(action__startswith="suppression.", actor_label="provider:twilio")
    assert sorted((entry.action, entry.channel, entry.reason) for entry in entries) == sorted([
        ("suppression.lifted", "", "stop"),
        *(("suppression.added", channel, "stop") for channel in OTHER_CHANNELS),
    ])


def test_a_later_start_on_whatsapp_opens_whatsapp_too_and_rcs_stays_suppressed(contact, stopped_everywhere):
    # given
    record_opt_back_in(contact, "sms", address=PHONE, evidence={"keyword": "start"})

    # when
    record_opt_back_in(contact, "whatsapp", address=PHONE, evidence={"keyword": "start"})

    # then
    assert verdict(contact, "sms").allowed
    assert verdict(contact, "whatsapp").allowed
    assert verdict(contact, "rcs").reason == "suppressed:stop"


def test_a_suppression_of_another_channel_already_there_is_kept(contact, stopped_everywhere):
    # given WhatsApp also refused the number for good
    suppress(PHONE, channel="whatsapp", reason="invalid_address", contact=contact)

    # when
    record_opt_back_in(contact, "sms", address=PHONE, evidence={"keyword": "start"})

    # then
    assert Suppression.objects.get(channel="whatsapp").reason == "invalid_address"
    assert verdict(contact, "whatsapp").reason == "suppressed:invalid_address"


def test_an_all_channel_suppression_for_another_reason_stands(contact):
    # given
    suppress(PHONE, reason="complaint", contact=contact)

    # when
    record_opt_back_in(contact, "sms", address=PHONE, evidence={"keyword": "start"})

    # then
    assert verdict(contact, "sms").reason == "suppressed:complaint"
    assert list(Suppression.objects.values_list("channel", "reason")) == [("", "complaint")]


def test_a_suppression_kept_by_its_hash_only_is_narrowed_by_its_hash_only(contact, stopped_everywhere):
    # given erasure emptied the address of the stop, keeping its hash
    Suppression.objects.filter(pk=stopped_everywhere.pk).update(address="", detail="")

    # when
    record_opt_back_in(contact, "sms", address=PHONE, evidence={"keyword": "start"})

    # then the narrowed rows do not write the address back
    rows = Suppression.objects.filter(address_hash=hash_address(PHONE))
    assert {(row.channel, row.address) for row in rows} == {(channel, "") for channel in OTHER_CHANNELS}
    assert verdict(contact, "whatsapp").reason == "suppressed:stop"
