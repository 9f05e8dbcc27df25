"""Handoff with journeys: a contact's reply pauses, exits or leaves alone their enrollments as
each journey's on_reply says, and the closing of the conversation that paused one resumes it or
ends it, through the real tick. Staff pause and resume one enrollment in the admin.

Channels stores the two events (inbound.replied, conversation.closed); these tests store them
the same way, through contacts.ingest.ingest_event with source "channels".
"""
import re
import threading
import time
from datetime import datetime, time as clock_time, timedelta, timezone as dt_timezone

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns import advancing, enrolling
from campaigns.actions import (
    activate_journey,
    enroll_contact,
    has_unpublished_changes,
    pause_enrollment,
    publish_journey,
    resume_enrollment,
)
from campaigns.models import Enrollment, EnrollmentState, Journey, JourneyStep, OnReply, StepKind
from campaigns.tick import tick
from campaigns.tick_report import TickReport
from channels import conversations
from channels.models import Channel, Conversation, Delivery, Message, MessageStatus
from compliance.models import QuietHours
from contacts.ingest import ingest_event
from contacts.models import Contact, ContactEvent
from omni import audit

from .conftest import build_welcome_journey, make_contact, make_journey

pytestmark = pytest.mark.django_db

WAIT = 60


def replied(contact, conversation, message_id: int):
    ingest_event(contact=contact, name="inbound.replied", idempotency_key=f"inbound:twilio:SM{message_id}",
                 properties={"conversation_id": conversation.pk, "channel": conversation.channel,
                             "inbound_message_id": message_id}, source="channels")


def closed(contact, conversation, closed_at):
    ingest_event(contact=contact, name="conversation.closed",
                 idempotency_key=f"conversation.closed:{conversation.pk}:{closed_at.isoformat()}",
                 properties={"conversation_id": conversation.pk, "channel": conversation.channel,
                             "resolved_by": "agent"}, source="channels")


def conversation_with(contact):
    return Conversation.objects.create(contact=contact, channel=Channel.SMS)


@pytest.fixture
def journey_replying(welcome_templates):
    """A welcome journey (email, wait a minute, SMS if the email was not opened) that does `on_reply`."""

    def build(on_reply):
        return build_welcome_journey(*welcome_templates, wait_seconds=WAIT, on_reply=on_reply)

    return build


@pytest.fixture
def now():
    """A moment just ahead of the clock: contacts enrolled in a test are due at it."""
    return timezone.now() + timedelta(seconds=1)


@pytest.fixture
def ann():
    return make_contact("ann", email="ann@example.com", phone="+14155550101")


def waiting(journey, contact, now) -> Enrollment:
    """The contact enrolled and sent the welcome email by the tick at `now`: waiting until now + WAIT."""
    enrollment = enroll_contact(journey, contact)
    # Setting up the test's other fixtures may have taken longer than `now` is ahead of the clock.
    tick(max(now, enrollment.next_run_at))
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.current_step_key) == (EnrollmentState.ACTIVE, "opened")
    return enrollment


def sent_sms(contact) -> int:
    return Message.objects.filter(contact=contact, template_version__template__key="welcome-sms").count()


def test_a_reply_pauses_the_journey_and_closing_the_conversation_resumes_it(journey_replying, ann, now):
    # given ann waits in a journey that pauses while she talks with an agent
    enrollment = waiting(journey_replying(OnReply.PAUSE_RESUME), ann, now)
    conversation = conversation_with(ann)

    # when she writes in
    replied(ann, conversation, 1)
    report = tick(now + timedelta(seconds=10))

    # then her enrollment is paused for that conversation, audited
    enrollment.refresh_from_db()
    assert report.paused == 1
    assert (enrollment.state, enrollment.pause_reason, enrollment.paused_for_conversation_id) == (
        EnrollmentState.PAUSED, "conversation_open", conversation.pk)
    entry = audit.for_object(enrollment).get(action="journey.enrollment_paused")
    assert (entry.reason, entry.data["conversation"]) == ("conversation_open", conversation.pk)

    # and while the conversation is open her wait runs out, and nothing is sent
    tick(now + timedelta(seconds=WAIT * 2))
    enrollment.refresh_from_db()
    assert enrollment.state == EnrollmentState.PAUSED and sent_sms(ann) == 0

    # when the agent closes the conversation
    closed(ann, conversation, now + timedelta(seconds=WAIT * 3))
    report = tick(now + timedelta(seconds=WAIT * 3))

    # then she is resumed, and the wait that ran out meanwhile runs at once: the SMS goes out
    enrollment.refresh_from_db()
    assert report.resumed == 1
    assert sent_sms(ann) == 1
    assert (enrollment.state, enrollment.end_reason) == (EnrollmentState.EXITED, "exit:done")
    assert enrollment.paused_for_conversation_id is None and enrollment.pause_reason == ""
    resumed = audit.for_object(enrollment).get(action="journey.enrollment_resumed")
    assert (resumed.reason, resumed.data["conversation"], resumed.data["overdue"]) == (
        "conversation_closed", conversation.pk, True)


def test_a_reply_in_the_same_batch_as_the_sign_up_pauses_the_enrollment_the_sign_up_made(journey_replying, ann,
                                                                                           now):
    # given a journey that pauses while the contact talks with an agent
    journey = journey_replying(OnReply.PAUSE_RESUME)
    conversation = conversation_with(ann)

    # when ann signs up and writes in before the tick runs
    ingest_event(contact=ann, name=journey.trigger_event, idempotency_key="signup-ann", source="api")
    replied(ann, conversation, 11)
    tick(now)

    # then she was enrolled, then paused for that conversation, and nothing went out
    enrollment = Enrollment.objects.get(contact=ann, journey=journey)
    assert (enrollment.state, enrollment.paused_for_conversation_id) == (EnrollmentState.PAUSED, conversation.pk)
    assert not Message.objects.filter(contact=ann).exists()


def test_pause_exit_ends_the_journey_when_the_conversation_closes(journey_replying, ann, now):
    enrollment = waiting(journey_replying(OnReply.PAUSE_EXIT), ann, now)
    conversation = conversation_with(ann)
    replied(ann, conversation, 1)
    tick(now + timedelta(seconds=10))

    closed(ann, conversation, now + timedelta(seconds=20))
    report = tick(now + timedelta(seconds=20))

    enrollment.refresh_from_db()
    assert report.exited_on_reply == 1
    assert (enrollment.state, enrollment.end_reason, enrollment.next_run_at) == (
        EnrollmentState.EXITED, "conversation_closed", None)
    assert audit.for_object(enrollment).get(action="journey.exited").data["conversation"] == conversation.pk
    assert sent_sms(ann) == 0


def test_exit_ends_the_journey_on_the_reply(journey_replying, ann, now):
    enrollment = waiting(journey_replying(OnReply.EXIT), ann, now)

    replied(ann, conversation_with(ann), 1)
    tick(now + timedelta(seconds=10))

    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.end_reason) == (EnrollmentState.EXITED, "replied")
    assert audit.for_object(enrollment).get(action="journey.exited").reason == "replied"


def test_exit_on_the_reply_cancels_what_the_journey_still_held_for_the_contact(journey_replying, ann):
    # given quiet nights: Ann enrolled at 23:00 on her phone's clock, her welcome email waits for morning
    QuietHours.objects.create(name="Nights", start=clock_time(21), end=clock_time(8))
    night = datetime(2026, 6, 2, 6, tzinfo=dt_timezone.utc)  # 23:00 in Los Angeles
    enroll_contact(journey_replying(OnReply.EXIT), ann, now=night)
    tick(night)
    held = Message.objects.get(contact=ann)
    assert held.status == MessageStatus.DEFERRED

    # when she writes in, which ends the journey for her
    replied(ann, conversation_with(ann), 1)
    tick(night + timedelta(seconds=10))

    # then the journey's email is not sent to her in the morning
    held.refresh_from_db()
    assert (held.status, held.status_reason) == (MessageStatus.CANCELLED, "journey_exited")
    tick(night + timedelta(hours=12))
    assert not Delivery.objects.filter(message=held).exists()


def test_a_journey_that_continues_ignores_replies(journey_replying, ann, now):
    enrollment = waiting(journey_replying(OnReply.CONTINUE), ann, now)
    conversation = conversation_with(ann)

    replied(ann, conversation, 1)
    report = tick(now + timedelta(seconds=10))

    enrollment.refresh_from_db()
    assert (report.events, report.paused, report.exited_on_reply) == (1, 0, 0)
    assert enrollment.state == EnrollmentState.ACTIVE
    assert not audit.for_object(enrollment).filter(action__in=["journey.enrollment_paused", "journey.exited"]).exists()
    # and the wait runs out as usual
    tick(now + timedelta(seconds=WAIT + 1))
    assert sent_sms(ann) == 1


def test_existing_journeys_continue_by_default(welcome_journey):
    assert welcome_journey.on_reply == OnReply.CONTINUE
    assert welcome_journey.live_version.on_reply == OnReply.CONTINUE


def test_closing_another_conversation_resumes_nothing(journey_replying, ann, now):
    # given ann paused by her SMS conversation
    enrollment = waiting(journey_replying(OnReply.PAUSE_RESUME), ann, now)
    sms = conversation_with(ann)
    replied(ann, sms, 1)
    tick(now + timedelta(seconds=10))
    whatsapp = Conversation.objects.create(contact=ann, channel=Channel.WHATSAPP, status="closed")

    # when another conversation of hers closes
    closed(ann, whatsapp, now + timedelta(seconds=20))
    report = tick(now + timedelta(seconds=20))

    # then she stays paused for the first one
    enrollment.refresh_from_db()
    assert report.resumed == 0
    assert (enrollment.state, enrollment.paused_for_conversation_id) == (EnrollmentState.PAUSED, sms.pk)


def talking_on_two_channels(contact, first_message_id: int) -> tuple[Conversation, Conversation]:
    """The contact writes in on SMS, then on WhatsApp: two conversations open at once."""
    sms = conversation_with(contact)
    whatsapp = Conversation.objects.create(contact=contact, channel=Channel.WHATSAPP)
    replied(contact, sms, first_message_id)
    replied(contact, whatsapp, first_message_id + 1)
    return sms, whatsapp


def test_closing_one_of_two_open_conversations_keeps_the_journey_paused_until_the_last_closes(journey_replying,
                                                                                              ann, now):
    # given ann paused by her SMS conversation while she also talks with us on WhatsApp
    enrollment = waiting(journey_replying(OnReply.PAUSE_RESUME), ann, now)
    sms, whatsapp = talking_on_two_channels(ann, 1)
    tick(now + timedelta(seconds=10))

    # when the agent closes the SMS conversation after her wait ran out
    conversations.close([sms], now=now + timedelta(seconds=WAIT * 2))
    report = tick(now + timedelta(seconds=WAIT * 2))

    # then she stays paused, now for the WhatsApp conversation, audited, and nothing is sent
    enrollment.refresh_from_db()
    assert report.resumed == 0 and sent_sms(ann) == 0
    assert (enrollment.state, enrollment.pause_reason, enrollment.paused_for_conversation_id) == (
        EnrollmentState.PAUSED, "conversation_open", whatsapp.pk)
    entry = audit.for_object(enrollment).get(action="journey.enrollment_pause_handed_over")
    assert (entry.reason, entry.data["closed"], entry.data["conversation"]) == (
        "conversation_open", sms.pk, whatsapp.pk)

    # when the WhatsApp conversation closes too
    conversations.close([whatsapp], now=now + timedelta(seconds=WAIT * 3))
    report = tick(now + timedelta(seconds=WAIT * 3))

    # then she is resumed, and the wait that ran out meanwhile runs at once: the SMS goes out
    enrollment.refresh_from_db()
    assert report.resumed == 1 and sent_sms(ann) == 1
    assert audit.for_object(enrollment).get(action="journey.enrollment_resumed").data["conversation"] == whatsapp.pk


def test_pause_exit_ends_the_journey_only_when_the_last_open_conversation_closes(journey_replying, ann, now):
    # given ann paused, to exit on the closing, while she talks with us on SMS and WhatsApp
    enrollment = waiting(journey_replying(OnReply.PAUSE_EXIT), ann, now)
    sms, whatsapp = talking_on_two_channels(ann, 1)
    tick(now + timedelta(seconds=10))

    # when the SMS conversation closes
    conversations.close([sms], now=now + timedelta(seconds=20))
    report = tick(now + timedelta(seconds=20))

    # then she is still in the journey, paused
    enrollment.refresh_from_db()
    assert report.exited_on_reply == 0
    assert (enrollment.state, enrollment.paused_for_conversation_id) == (EnrollmentState.PAUSED, whatsapp.pk)

    # when the WhatsApp conversation closes too
    conversations.close([whatsapp], now=now + timedelta(seconds=30))
    report = tick(now + timedelta(seconds=30))

    # then she leaves the journey
    enrollment.refresh_from_db()
    assert report.exited_on_reply == 1
    assert (enrollment.state, enrollment.end_reason) == (EnrollmentState.EXITED, "conversation_closed")
    assert audit.for_object(enrollment).get(action="journey.exited").data["conversation"] == whatsapp.pk


def test_an_enrollment_paused_by_staff_is_not_resumed_by_a_closing(journey_replying, ann, now, admin_user):
    # given staff paused ann's enrollment, then she wrote in (which changes nothing: she is paused)
    enrollment = waiting(journey_replying(OnReply.PAUSE_RESUME), ann, now)
    pause_enrollment(enrollment, actor=admin_user, reason="Asked us to hold off until March")
    conversation = conversation_with(ann)
    replied(ann, conversation, 1)
    tick(now + timedelta(seconds=10))

    # when her conversation closes
    closed(ann, conversation, now + timedelta(seconds=20))
    report = tick(now + timedelta(seconds=WAIT * 2))

    # then she stays paused as staff left her, and nothing was sent
    enrollment.refresh_from_db()
    assert report.resumed == 0
    assert (enrollment.state, enrollment.paused_by_label, enrollment.pause_reason,
            enrollment.paused_for_conversation_id) == (EnrollmentState.PAUSED, admin_user.username,
                                                       "Asked us to hold off until March", None)
    assert sent_sms(ann) == 0


def test_a_wait_that_ran_out_while_paused_runs_at_the_next_tick_after_resuming(journey_replying, ann, now,
                                                                                admin_user):
    # given ann paused by staff while waiting, and her wait ran out meanwhile
    enrollment = waiting(journey_replying(OnReply.CONTINUE), ann, now)
    due_at = enrollment.next_run_at
    pause_enrollment(enrollment, actor=admin_user, reason="Checking her order", now=now + timedelta(seconds=5))
    tick(now + timedelta(seconds=WAIT * 2))
    assert sent_sms(ann) == 0

    # when staff resume her
    resume_enrollment(enrollment, actor=admin_user, now=now + timedelta(seconds=WAIT * 3))

    # then her step is due when it was (not pushed later), and the next tick runs it
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.next_run_at) == (EnrollmentState.ACTIVE, due_at)
    tick(now + timedelta(seconds=WAIT * 3))
    assert sent_sms(ann) == 1


def test_a_reply_and_its_closing_in_one_batch_leave_the_enrollment_running(journey_replying, ann, now):
    # given a reply on one conversation, its closing, then a reply on a new one, all before a tick
    enrollment = waiting(journey_replying(OnReply.PAUSE_RESUME), ann, now)
    first = conversation_with(ann)
    replied(ann, first, 1)
    Conversation.objects.filter(pk=first.pk).update(status="closed", closed_at=now)
    closed(ann, first, now)
    second = conversation_with(ann)
    replied(ann, second, 2)

    # when one tick takes them in
    report = tick(now + timedelta(seconds=10))

    # then they act in the order they happened: paused, resumed, paused for the second conversation
    enrollment.refresh_from_db()
    assert (report.paused, report.resumed) == (2, 1)
    assert (enrollment.state, enrollment.paused_for_conversation_id) == (EnrollmentState.PAUSED, second.pk)


def test_events_of_the_same_names_from_other_sources_move_no_enrollment(journey_replying, ann, now):
    enrollment = waiting(journey_replying(OnReply.PAUSE_RESUME), ann, now)

    ingest_event(contact=ann, name="inbound.replied", idempotency_key="api-1", source="api",
                 properties={"conversation_id": 1})
    tick(now + timedelta(seconds=10))

    enrollment.refresh_from_db()
    assert enrollment.state == EnrollmentState.ACTIVE


def test_an_event_without_a_conversation_id_is_quarantined_and_the_rest_of_its_batch_goes_on(journey_replying, now):
    # given two contacts waiting; channels' event for one has no usable conversation id
    journey = journey_replying(OnReply.PAUSE_RESUME)
    ann, bob = make_contact("ann", email="ann@example.com"), make_contact("bob", email="bob@example.com")
    enroll_contact(journey, ann)
    enroll_contact(journey, bob)
    tick(now)
    ingest_event(contact=ann, name="inbound.replied", idempotency_key="inbound:twilio:SMbad", source="channels",
                 properties={"conversation_id": "7"})
    replied(bob, conversation_with(bob), 2)

    # when the tick takes them in
    report = tick(now + timedelta(seconds=10))

    # then ann's event is set aside with the reason, and bob's paused him
    bad = ContactEvent.objects.get(idempotency_key="inbound:twilio:SMbad")
    assert report.quarantined == 1 and bad.quarantined_at is not None
    assert "properties.conversation_id" in bad.quarantine_reason
    states = dict(Enrollment.objects.values_list("contact__external_id", "state"))
    assert states == {"ann": EnrollmentState.ACTIVE, "bob": EnrollmentState.PAUSED}


# The event stage's batch, whatever the number of contacts: the claim, the events' audit entries,
# the live enrollments of their contacts (locked), their moves and audit entries, the versions the
# events trigger, marking the events processed, and two savepoints opened and released.
REPLY_BATCH_MAX_QUERIES = 11


def test_a_batch_of_replies_costs_a_fixed_number_of_queries(journey_replying, now, django_assert_max_num_queries):
    # given contacts waiting in a pausing journey
    journey = journey_replying(OnReply.PAUSE_RESUME)
    contacts = [make_contact(f"c{n}", email=f"c{n}@example.com", consents=()) for n in range(43)]
    for contact in contacts:
        enroll_contact(journey, contact)
    tick(now)

    def stage_queries(batch, first_message_id) -> int:
        for n, contact in enumerate(batch):
            replied(contact, conversation_with(contact), first_message_id + n)
        report = TickReport()
        with django_assert_max_num_queries(REPLY_BATCH_MAX_QUERIES) as queries:
            enrolling.process_events_batch(now + timedelta(seconds=10), report)
        assert report.paused == len(batch)
        return len(queries)

    # when three write in, then forty
    few = stage_queries(contacts[:3], 0)
    many = stage_queries(contacts[3:], 100)

    # then forty cost what three did, and all are paused
    assert many == few
    assert Enrollment.objects.filter(state=EnrollmentState.PAUSED).count() == 43


# A batch of closings reads, besides, the conversations of its contacts still open.
CLOSE_BATCH_MAX_QUERIES = REPLY_BATCH_MAX_QUERIES + 1


def test_a_batch_of_closings_keeps_paused_whoever_still_talks_in_a_fixed_number_of_queries(
        journey_replying, now, django_assert_max_num_queries):
    # given contacts paused while each talks with us on SMS and WhatsApp
    journey = journey_replying(OnReply.PAUSE_RESUME)
    contacts = [make_contact(f"c{n}", email=f"c{n}@example.com", consents=()) for n in range(23)]
    for contact in contacts:
        enroll_contact(journey, contact)
    tick(now)
    for n, contact in enumerate(contacts):
        talking_on_two_channels(contact, 10 * n)
    tick(now + timedelta(seconds=10))

    def stage_queries(batch) -> int:
        conversations.close(Conversation.objects.filter(contact__in=batch, channel=Channel.SMS),
                            now=now + timedelta(seconds=20))
        report = TickReport()
        with django_assert_max_num_queries(CLOSE_BATCH_MAX_QUERIES) as queries:
            enrolling.process_events_batch(now + timedelta(seconds=20), report)
        assert (report.events, report.resumed) == (len(batch), 0)
        return len(queries)

    # when the SMS conversations of three close, then of twenty
    few = stage_queries(contacts[:3])
    many = stage_queries(contacts[3:])

    # then twenty cost what three did, and all stay paused for their WhatsApp conversations
    assert many == few
    assert set(Enrollment.objects.values_list("state", flat=True)) == {EnrollmentState.PAUSED}
    assert set(Enrollment.objects.values_list("paused_for_conversation_id", flat=True)) == set(
        Conversation.objects.filter(channel=Channel.WHATSAPP).values_list("pk", flat=True))


def test_events_of_other_names_do_not_read_enrollments(journey_replying, ann, now):
    waiting(journey_replying(OnReply.PAUSE_RESUME), ann, now)
    ingest_event(contact=ann, name="page.viewed", idempotency_key="view-1", source="api")

    with CaptureQueriesContext(connection) as queries:
        enrolling.process_events_batch(now, TickReport())

    assert not [q["sql"] for q in queries if "campaigns_enrollment" in q["sql"]]


# --- Versions -----------------------------------------------------------------------------

def test_on_reply_is_published_into_versions_and_a_change_is_a_change_to_publish(journey_replying, ann, now):
    # given a journey published as pausing, with ann on version 1
    journey = journey_replying(OnReply.PAUSE_RESUME)
    enrollment = waiting(journey, ann, now)
    assert journey.live_version.on_reply == OnReply.PAUSE_RESUME
    assert not has_unpublished_changes(journey)

    # when the draft says exit, it is a change, published as version 2
    Journey.objects.filter(pk=journey.pk).update(on_reply=OnReply.EXIT)
    journey.refresh_from_db()
    assert has_unpublished_changes(journey)
    version = publish_journey(journey)
    assert (version.number, version.on_reply) == (2, OnReply.EXIT)

    # then ann, on version 1, still pauses on a reply
    replied(ann, conversation_with(ann), 1)
    tick(now + timedelta(seconds=10))
    enrollment.refresh_from_db()
    assert enrollment.state == EnrollmentState.PAUSED


# --- Admin ----------------------------------------------------------------------------------

ENROLLMENTS = reverse("admin:campaigns_enrollment_changelist")


@pytest.fixture
def marketer(client, django_user_model, role_groups):
    """A marketer, allowed to pause enrollments, logged in."""
    user = django_user_model.objects.create_user(username="mia", password="not-used", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketers"))
    user.user_permissions.add(Permission.objects.get(codename="pause_enrollment"))
    client.force_login(user)
    return user


def run_action(client, action, enrollments, reason=""):
    response = client.post(ENROLLMENTS, {"action": action, "_selected_action": [e.pk for e in enrollments],
                                         "reason": reason}, follow=True)
    assert response.status_code == 200
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


def test_staff_pause_and_resume_selected_enrollments_with_a_reason_audited(client, marketer, welcome_journey, now):
    # given two contacts in a journey, one of whom has finished it
    ann = make_contact("ann", email="ann@example.com")
    bob = make_contact("bob", email="bob@example.com")
    running = enroll_contact(welcome_journey, ann)
    finished = enroll_contact(welcome_journey, bob)
    Enrollment.objects.filter(pk=finished.pk).update(state=EnrollmentState.COMPLETED)

    # when the marketer pauses both, with a reason
    messages = run_action(client, "pause_selected", [running, finished], reason="Order dispute")

    # then the running one is paused with who and why, audited with the words kept aside
    assert messages == [
        ("success", "1 enrollment(s) paused: each stays at its step until resumed here; a conversation closing "
                    "does not resume them."),
        ("warning", "1 not paused, being no longer active: Bob in Welcome (completed)."),
    ]
    running.refresh_from_db()
    assert (running.state, running.paused_by_label, running.pause_reason, running.paused_for_conversation_id) == (
        EnrollmentState.PAUSED, "mia", "Order dispute", None)
    entry = audit.for_object(running).get(action="journey.enrollment_paused")
    assert (entry.actor_id, entry.reason, entry.personal.data) == (marketer.pk, "manual", {"reason": "Order dispute"})

    # and the list shows why it is paused
    page = client.get(ENROLLMENTS, {"state__exact": "paused"}).content.decode()
    assert "by mia: Order dispute" in page
    assert 'name="reason"' in page and 'value="resume_selected"' in page

    # when the marketer resumes it
    messages = run_action(client, "resume_selected", [running])

    # then it runs again, audited
    assert messages == [("success", "1 enrollment(s) resumed: each runs its step at the next tick if its time has "
                                    "come.")]
    running.refresh_from_db()
    assert (running.state, running.pause_reason) == (EnrollmentState.ACTIVE, "")
    assert audit.for_object(running).get(action="journey.enrollment_resumed").actor_id == marketer.pk


def test_the_enrollment_list_shows_pauses_in_a_fixed_number_of_queries(client, marketer, welcome_journey, admin_user,
                                                                        django_assert_max_num_queries):
    def paused_list_queries(count: int, start: int) -> int:
        for n in range(start, start + count):
            pause_enrollment(enroll_contact(welcome_journey, make_contact(f"c{n}", consents=())), actor=admin_user,
                             reason="Holding")
        client.get(ENROLLMENTS)  # warms the per-process caches (content types)
        with django_assert_max_num_queries(40) as queries:
            assert client.get(ENROLLMENTS).status_code == 200
        return len(queries)

    assert paused_list_queries(1, 0) == paused_list_queries(20, 1)


def test_pausing_without_a_reason_pauses_nothing_and_says_why(client, marketer, welcome_journey):
    enrollment = enroll_contact(welcome_journey, make_contact("ann", email="ann@example.com"))

    messages = run_action(client, "pause_selected", [enrollment], reason="  ")

    assert messages == [("error", "Nothing was paused. Say why the enrollment is paused: the reason stays on it "
                                  "until it resumes.")]
    enrollment.refresh_from_db()
    assert enrollment.state == EnrollmentState.ACTIVE
    assert not audit.for_object(enrollment).filter(action="journey.enrollment_paused").exists()


def test_staff_without_the_permission_are_not_offered_pausing(client, django_user_model, role_groups,
                                                              welcome_journey):
    user = django_user_model.objects.create_user(username="max", password="not-used", is_staff=True)
    user.groups.add(Group.objects.get(name="Compliance"))
    client.force_login(user)
    enrollment = enroll_contact(welcome_journey, make_contact("ann", email="ann@example.com"))

    page = client.get(ENROLLMENTS).content.decode()
    client.post(ENROLLMENTS, {"action": "pause_selected", "_selected_action": [enrollment.pk], "reason": "x"})

    assert "pause_selected" not in page
    enrollment.refresh_from_db()
    assert enrollment.state == EnrollmentState.ACTIVE


def test_the_journey_page_offers_on_reply_as_a_choice_and_versions_show_theirs(admin_client, journey_replying):
    # given version 1 pauses then exits, and the draft now exits on a reply
    journey = journey_replying(OnReply.PAUSE_EXIT)
    Journey.objects.filter(pk=journey.pk).update(on_reply=OnReply.EXIT)

    page = admin_client.get(reverse("admin:campaigns_journey_change", args=[journey.pk])).content.decode()

    # then the draft's setting is a select with its help, the version's is read-only
    assert re.search(r'<select name="on_reply"[^>]*>', page)
    assert '<option value="exit" selected>Exit the journey</option>' in page
    assert "Enrollments paused by staff are never resumed by a closing." in page
    assert re.search(r'class="readonly[^"]*">Pause until the conversation closes, then exit</div>', page)


# --- Concurrency ------------------------------------------------------------------------------

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="row locks between two connections need PostgreSQL; set DATABASE_URL to run it (SQLite serializes writers)",
)


@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_reply_waits_for_the_tick_running_the_contact_and_pauses_her_where_it_left_her():
    # given Ann due at a wait step of a journey that pauses on replies
    journey = make_journey(name="Drip", slug="drip", trigger_event="x", on_reply=OnReply.PAUSE_RESUME)
    JourneyStep.objects.create(journey=journey, position=1, key="first", kind=StepKind.WAIT, config={"seconds": 60})
    JourneyStep.objects.create(journey=journey, position=2, key="second", kind=StepKind.WAIT, config={"seconds": 60})
    activate_journey(journey)
    ann = Contact.objects.create(external_id="ann")
    enrollment = enroll_contact(journey, ann)
    replied(ann, conversation_with(ann), 1)

    # when a tick runs her first step, and before it commits the event stage takes in her reply
    ran, errors = threading.Event(), []
    later = timezone.now() + timedelta(seconds=1)

    def run_her_step():
        try:
            with transaction.atomic():
                advancing.advance_enrollments_batch(later, TickReport())
                ran.set()
                time.sleep(1)  # the event stage runs meanwhile, and has to wait for this commit
        except Exception as exc:  # surfaced through `errors`
            errors.append(exc)
        finally:
            ran.set()
            connections.close_all()

    def take_in_the_reply():
        try:
            ran.wait(10)
            enrolling.process_events_batch(later, TickReport())
        except Exception as exc:  # surfaced through `errors`
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run_her_step), threading.Thread(target=take_in_the_reply)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # then she is paused at the step the tick moved her to, due when that step's wait ends
    assert not errors
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.current_step_key, enrollment.next_run_at) == (
        EnrollmentState.PAUSED, "second", later + timedelta(seconds=60))
