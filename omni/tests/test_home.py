"""Each role's home: a panel per role the user holds, each figure the same as a direct count of
what its link lists, in a fixed number of queries, capped at 10,000."""
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.conf import settings as django_settings
from django.utils import timezone

from campaigns.models import Campaign
from channels.models import Conversation, Delivery, DeliveryStatus, InboundMessage, Message
from compliance.models import Decision
from contacts.models import Contact, ContactEvent
from omni.models import AuditEntry
from omni.web import home
from templates.models import Template

pytestmark = pytest.mark.django_db


@pytest.fixture
def login_as(client, django_user_model, role_groups):
    def log_in(group_name: str | None, **extra):
        user = django_user_model.objects.create_user(username=(group_name or "root").lower().replace(" ", "-"),
                                                     password="pw", is_staff=True, **extra)
        if group_name:
            user.groups.add(Group.objects.get(name=group_name))
        client.force_login(user)
        return user
    return log_in


@pytest.fixture
def busy_day():
    """Some of everything the homes count, and some that they must not."""
    now = timezone.now()
    contact = Contact.objects.create(external_id="c1", email="c1@example.com", phone="+14155550102")
    other = Contact.objects.create(external_id="c2", email="c2@example.com")
    template = Template.objects.create(key="spring", name="Spring")
    Campaign.objects.create(name="Spring", template=template, approval_requested_at=now)
    Campaign.objects.create(name="Draft", template=template)
    Conversation.objects.create(contact=contact, channel="sms")
    Conversation.objects.create(contact=other, channel="sms", status="closed")
    InboundMessage.objects.create(channel="sms", provider="sandbox", provider_message_id="in-1", from_address="+14155550102",
                                  contact=contact)
    InboundMessage.objects.create(channel="sms", provider="sandbox", provider_message_id="in-0", from_address="+14155550102",
                                  contact=contact, received_at=now - timedelta(days=2))
    message = Message.objects.create(contact=contact, purpose="marketing", source="api",
                                     content=[{"channel": "sms", "text_body": "Hi"}])
    for i, (status, failed, code) in enumerate([
        (DeliveryStatus.QUEUED, None, ""), (DeliveryStatus.QUEUED, None, ""), (DeliveryStatus.UNCERTAIN, None, ""),
        (DeliveryStatus.FAILED, now - timedelta(minutes=5), "30003"),
        (DeliveryStatus.UNDELIVERED, now - timedelta(minutes=9), "30003"),
        (DeliveryStatus.FAILED, now - timedelta(hours=3), "30005"),
    ]):
        Delivery.objects.create(message=message, contact=contact, channel="sms", provider="twilio",
                                to_address=contact.phone, status=status, failed_at=failed, error_code=code,
                                queued_at=now - timedelta(minutes=10 + i),
                                quarantined_at=now if i == 0 else None)
    ContactEvent.objects.create(contact=contact, name="signed_up", source="api", idempotency_key="e1")
    ContactEvent.objects.create(contact=contact, name="signed_up", source="api", idempotency_key="e2",
                                processed_at=now, quarantined_at=now)
    for outcome in ("suppress", "suppress", "defer", "allow"):
        Decision.objects.create(contact_id=contact.pk, channel="sms", purpose="marketing", outcome=outcome,
                                reason="test", consent_status="granted")
    return now


def figures(response) -> dict[str, dict[str, str]]:
    return {panel.role: {figure.label: figure.shown for figure in panel.figures} for panel in response.context["panels"]}


def test_each_role_sees_only_its_own_panel(client, login_as, busy_day):
    for group_name, roles in [("Marketers", ["marketing"]), ("Support agents", ["support"]),
                              ("Compliance", ["compliance"]),
                              ("Administrators", ["marketing", "support", "compliance", "administrators"])]:
        login_as(group_name)
        assert list(figures(client.get("/admin/"))) == roles, group_name


def test_the_home_counts_what_a_direct_count_finds_and_links_to_it(client, login_as, busy_day):
    # given an administrator (who holds every role)
    login_as(None, is_superuser=True)

    # when
    response = client.get("/admin/")
    shown = figures(response)

    # then every figure is the direct count
    day = busy_day.replace(hour=0, minute=0, second=0, microsecond=0)
    assert shown["marketing"]["Campaigns awaiting approval"] == str(Campaign.objects.filter(approval_requested_at__isnull=False, approved_at__isnull=True).count())
    assert shown["support"]["Open conversations"] == str(Conversation.objects.filter(status="open").count()) == "1"
    assert shown["support"]["Unassigned"] == "1"
    assert shown["support"]["Inbound messages, last 24 h"] == "1"
    assert shown["compliance"]["Suppressed today"] == str(Decision.objects.filter(outcome="suppress", decided_at__gte=day).count()) == "2"
    assert shown["compliance"]["Deferred today"] == "1"
    assert shown["compliance"]["Audit entries waiting to be sealed"] == str(AuditEntry.objects.filter(seq__isnull=True).count())
    admin = shown["administrators"]
    assert admin["Queued on send.bulk.sms"] == str(Delivery.objects.filter(status="queued").count()) == "2"
    assert admin["Uncertain deliveries"] == "1"
    assert admin["Events not yet processed"] == str(ContactEvent.objects.filter(processed_at__isnull=True).count())
    assert admin["Quarantined deliveries"] == "1" and admin["Quarantined contact events"] == "1"
    assert admin["Failed on twilio, last hour"] == "2"
    panel = next(p for p in response.context["panels"] if p.role == "administrators")
    assert next(f for f in panel.figures if f.label == "Failed on twilio, last hour").note == "30003 (2)"
    assert next(f for f in panel.figures if f.label == "Queued on send.bulk.sms").note == "oldest 11 min"

    # and each figure's link lists the same number of rows
    for panel in response.context["panels"]:
        for figure in panel.figures:
            if not figure.url or figure.value is None:
                continue
            listed = client.get(figure.url)
            assert listed.status_code == 200, figure.url
            if "cl" in listed.context:
                assert listed.context["cl"].result_count == figure.value, (figure.label, figure.url)
            else:  # the support inbox, on the tab the figure names
                assert listed.context["counts"][listed.context["filters"].tab] == figure.value, (figure.label,
                                                                                                figure.url)


def test_a_count_stops_at_the_cap(monkeypatch, busy_day):
    monkeypatch.setattr(home, "CAP", 1)

    assert home.capped_count(Delivery.objects.filter(status="queued")) == 2
    assert home.Figure("queued", 2).shown == "1+"


def test_the_home_takes_a_fixed_number_of_queries(client, login_as, busy_day, django_assert_max_num_queries):
    login_as(None, is_superuser=True)
    client.get("/admin/")  # warms the per-process caches (content types)
    # Session, user; marketing 2; support 3; compliance 4; administrators 10 (queues, due, events,
    # uncertain, one per quarantined model, failures); the sidebar's and header's permission
    # checks need none for a superuser; the two-factor check (one) and the idle-timeout renewal of
    # the session (an UPDATE in a savepoint: three).
    with django_assert_max_num_queries(HOME_MAX_QUERIES):
        client.get("/admin/")


HOME_MAX_QUERIES = 25


def test_verifying_the_chain_is_recorded_and_shown_on_the_compliance_home(client, login_as):
    # when
    call_command("verify_audit", stdout=__import__("io").StringIO())

    # then
    entry = AuditEntry.objects.get(action="audit.verified")
    assert entry.reason == "command" and entry.data["intact"] is True
    login_as("Compliance")
    note = next(f for p in client.get("/admin/").context["panels"] for f in p.figures
                if f.label == "Last verification of the audit chain").note
    assert note.startswith("intact")


def test_beat_verifies_the_chain_nightly():
    entry = django_settings.CELERY_BEAT_SCHEDULE["omni-verify-audit"]
    assert entry["task"] == "omni.tasks.verify_audit_task"
    assert entry["schedule"].hour == {3}
