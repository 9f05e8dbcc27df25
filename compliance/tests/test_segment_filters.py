"""The consent filter compliance registers in contacts.segments."""
import pytest
from django.utils import timezone

from compliance.actions import record_consent_change
from contacts.models import Contact
from contacts.segments import compile, definition_problems


def _members(status, channel="email", purpose="marketing"):
    definition = {"filters": [{"kind": "consent", "status": status, "channel": channel, "purpose": purpose}]}
    return set(compile(definition, timezone.now()).values_list("external_id", flat=True))


@pytest.fixture
def people(db):
    """in: opted in to marketing email; out: opted out of it; sms: opted in by SMS only; none."""
    contacts = {name: Contact.objects.create(external_id=name) for name in ("in", "out", "sms", "none")}
    record_consent_change(contacts["in"], "email", "marketing", "granted", "form", announce=False)
    record_consent_change(contacts["out"], "email", "marketing", "granted", "form", announce=False)
    record_consent_change(contacts["out"], "email", "marketing", "revoked", "unsubscribe_link", announce=False)
    record_consent_change(contacts["sms"], "sms", "marketing", "granted", "form", announce=False)
    return contacts


def test_consent_keeps_the_opted_in_the_opted_out_or_those_with_no_record(people):
    assert _members("opted_in") == {"in"}
    assert _members("opted_out") == {"out"}
    assert _members("no_record") == {"sms", "none"}
    assert _members("opted_in", channel="sms") == {"sms"}


def test_a_bad_consent_filter_names_its_fields(db):
    problems = definition_problems({"filters": [{"kind": "consent", "status": "maybe", "channel": "fax",
                                                 "purpose": "marketing"}]})

    assert problems == ["filters[0].channel must be one of email, sms, whatsapp, rcs, push",
                        "filters[0].status must be one of opted_in, opted_out, no_record"]
