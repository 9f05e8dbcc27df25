"""A contact's timeline: every kind merged by time with keyset pages, hidden kinds by permission,
one audit entry per opening, and a fixed number of queries per page."""
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Enrollment, EnrollmentState, Journey, JourneyStepVisit
from channels.models import Delivery, DeliveryEvent, DeliveryStatus, InboundMessage, Message
from compliance.models import ConsentChange, Decision
from contacts.models import Contact, ContactEvent
from omni.models import AuditEntry
from omni.web import timeline

AT = timezone.now().replace(microsecond=0) - timedelta(days=1)


def a_message(contact, at, channel="email", **delivery):
    message = Message.objects.create(
        contact=contact, purpose="transactional", source="api", created_at=at,
        content=[{"channel": channel, "subject": "Hi", "text_body": "Hello"}],
        channel_plan=[{"channel": channel}])
    Delivery.objects.create(message=message, contact=contact, channel=channel, provider="sandbox",
                            to_address="alice@example.com" if channel == "email" else "+14155550101",
                            queued_at=at, **delivery)
    return message


def a_decision(contact, at, channel="email", outcome="allow", reason="allowed", rules=()):
    return Decision.objects.create(decided_at=at, contact_id=contact.pk, channel=channel, purpose="marketing",
                                   outcome=outcome, reason=reason, consent_status="granted",
                                   inputs={"rules": list(rules)})


@pytest.fixture
def contact(db):
    return Contact.objects.create(external_id="alice", email="alice@example.com", phone="+14155550101",
                                  first_name="Alice")


@pytest.fixture
def every_kind_at_one_time(contact):
    """Two entries of every kind, all at the same instant, plus a few before and after."""
    journey = Journey.objects.create(name="Welcome", slug="welcome")
    for at in (AT - timedelta(minutes=1), AT, AT, AT + timedelta(minutes=1)):
        ContactEvent.objects.create(contact=contact, name="signed_up", occurred_at=at, idempotency_key=uuid.uuid4().hex)
        ConsentChange.objects.create(contact=contact, channel="sms", purpose="marketing", status="granted",
                                     source="api", occurred_at=at)
        enrollment = Enrollment.objects.create(journey=journey, contact=contact, entered_at=at, ended_at=at,
                                               state=EnrollmentState.COMPLETED)
        JourneyStepVisit.objects.create(enrollment=enrollment, journey=journey, step_key="email", step_kind="send",
                                        visit_number=1, visited_at=at)
        a_decision(contact, at)
        a_message(contact, at)
        InboundMessage.objects.create(contact=contact, channel="sms", provider="sandbox",
                                      provider_message_id=uuid.uuid4().hex, from_address="+14155550101",
                                      body="hi", received_at=at)
    return contact


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root", "root@example.com", "pw")


def walk(contact, user, **options):
    seen, cursor = [], None
    for _ in range(100):
        page = timeline.read_page(contact, user, cursor=cursor, **options)
        seen += [(entry.kind, str(entry.id), entry.at) for entry in page.entries]
        cursor = page.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("the pages never ended")


@pytest.mark.parametrize("order", ["newest", "oldest"])
@pytest.mark.parametrize("size", [1, 3, 7, 50])
def test_pages_with_equal_times_show_every_entry_once_in_order(every_kind_at_one_time, superuser, order, size):
    # given 8 kinds x 4 entries, 8 x 2 of them at the same instant

    # when the timeline is read page by page
    seen = walk(every_kind_at_one_time, superuser, order=order, size=size)

    # then nothing is skipped or repeated, and times never go back
    assert len(seen) == len(set((kind, id_) for kind, id_, _ in seen)) == 8 * 4
    times = [at for _, _, at in seen]
    assert times == sorted(times, reverse=order == "newest")


def test_a_channel_filter_keeps_the_kinds_with_that_channel(every_kind_at_one_time, superuser):
    kinds = {kind for kind, _, _ in walk(every_kind_at_one_time, superuser, channel="sms")}

    # the SMS consent changes and replies; messages and decisions here are all email
    assert kinds == {"consent", "inbound"}


def test_a_kind_filter_shows_only_that_kind(every_kind_at_one_time, superuser):
    assert {kind for kind, _, _ in walk(every_kind_at_one_time, superuser, kinds=["decision"])} == {"decision"}


@pytest.fixture
def staff(role_groups):
    def make(group_name):
        user = User.objects.create_user(group_name.split()[0].lower(), password="pw", is_staff=True)
        user.groups.add(Group.objects.get(name=group_name))
        return user
    return make


def test_a_marketer_sees_no_decisions_and_the_page_says_so(every_kind_at_one_time, staff, client):
    # given a marketer (who may not view the gate's decisions nor replies)
    marketer = staff("Marketers")
    client.force_login(marketer)

    # when
    response = client.get(reverse("omni-web:timeline", args=[every_kind_at_one_time.pk]))

    # then
    assert response.status_code == 200
    kinds = {kind for kind, _, _ in walk(every_kind_at_one_time, marketer)}
    assert "decision" not in kinds and "inbound" not in kinds and "message" in kinds
    assert 'data-kind="decision"' not in response.content.decode()
    assert "Not shown to you (you may not view them)" in response.content.decode()
    assert "Gate decisions" in response.content.decode().split('id="timeline-hidden"')[1]


def test_a_support_agent_sees_decisions_with_each_rule(contact, staff, client):
    a_decision(contact, AT, outcome="suppress", reason="quiet_hours",
               rules=[{"rule": "quiet_hours:3", "result": "defer", "reason": "US nights"}])
    client.force_login(staff("Support agents"))

    text = client.get(reverse("omni-web:timeline", args=[contact.pk])).content.decode()

    assert 'data-kind="decision"' in text and "quiet_hours:3" in text and "US nights" in text


def test_staff_without_view_contact_are_refused(contact, client):
    user = User.objects.create_user("nobody", password="pw", is_staff=True)
    client.force_login(user)

    assert client.get(reverse("omni-web:timeline", args=[contact.pk])).status_code == 403


def test_each_opening_writes_one_audit_entry_and_paging_or_filtering_none(every_kind_at_one_time, superuser, client):
    client.force_login(superuser)
    url = reverse("omni-web:timeline", args=[every_kind_at_one_time.pk])
    viewed = AuditEntry.objects.filter(action="contact.timeline_viewed")

    # when opened twice
    client.get(url)
    first = client.get(url)
    # and paged and filtered
    cursor = timeline.read_page(every_kind_at_one_time, superuser, size=5).next_cursor
    client.get(url, {"order": "newest", "cursor": cursor})
    client.get(url, {"order": "oldest", "channel": "sms"})
    client.get(url, {"kind": "message"})

    # then
    assert first.status_code == 200
    assert viewed.count() == 2
    entry = viewed.first()
    assert (entry.contact_id, entry.actor_id) == (every_kind_at_one_time.pk, superuser.pk)


def test_a_message_shows_its_content_delivery_events_and_what_error_codes_mean(contact, superuser, client):
    message = a_message(contact, AT, channel="sms", status=DeliveryStatus.UNDELIVERED, error_code="30003",
                        text_body="Your code is 1234")
    delivery = message.deliveries.get()
    DeliveryEvent.objects.create(delivery=delivery, provider="twilio", provider_event_id="e1",
                                 event_type="undelivered", detail="undelivered: error 30003", occurred_at=AT)
    email = a_message(contact, AT + timedelta(seconds=1), html_body='<p onclick="x()">Welcome <b>Alice</b></p>',
                      subject="Welcome to Omni")
    client.force_login(superuser)

    text = client.get(reverse("omni-web:timeline", args=[contact.pk])).content.decode()

    assert "Your code is 1234" in text
    assert "unreachable destination handset" in text
    assert "Welcome to Omni" in text
    # the email's HTML only inside a sandboxed frame that may not run scripts, escaped into srcdoc
    assert 'sandbox=""' in text and "allow-scripts" not in text
    assert 'srcdoc="&lt;p onclick=&quot;x()&quot;&gt;Welcome &lt;b&gt;Alice&lt;/b&gt;&lt;/p&gt;"' in text
    assert f"Message {email.pk}" in text


def test_error_meanings_read_twilio_and_ses_details():
    assert timeline.error_meaning("undelivered: error 30007")[0] == "30007"
    assert timeline.error_meaning("hard: NoEmail")[1].startswith("SES")
    assert timeline.error_meaning("delivered") == ("", "")


def test_a_timeline_page_takes_a_fixed_number_of_queries(every_kind_at_one_time, superuser, client,
                                                          django_assert_max_num_queries):
    for index in range(30):
        a_message(every_kind_at_one_time, AT - timedelta(hours=index), channel="sms")
    client.force_login(superuser)
    url = reverse("omni-web:timeline", args=[every_kind_at_one_time.pk])
    cursor = timeline.read_page(every_kind_at_one_time, superuser, size=10).next_cursor

    # session, user and contact; 8 sources, deliveries and their events; the audit entry; the
    # side panel: last delivered and clicked, enrollments, conversations, the WhatsApp window and
    # the gate's reachability for every purpose in one read (devices, rules, consents); the
    # two-factor check and the session's idle-time renewal: the same whatever the number of entries
    with django_assert_max_num_queries(29):
        client.get(url)
    with django_assert_max_num_queries(29):
        client.get(url, {"cursor": cursor, "channel": "sms"})


def test_the_contact_list_and_page_link_to_the_timeline(contact, superuser, client):
    client.force_login(superuser)
    url = reverse("omni-web:timeline", args=[contact.pk])

    assert url in client.get(reverse("admin:contacts_contact_changelist")).content.decode()
    assert url in client.get(reverse("admin:contacts_contact_change", args=[contact.pk])).content.decode()
