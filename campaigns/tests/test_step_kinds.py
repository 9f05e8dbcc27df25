"""Every kind of journey step through the real tick: waits (a duration, a time of day on the
contact's clock across DST, relative to a date, for an event or an engagement with a timeout),
branches, random splits, updates of the contact, exits on opt-out, and each one honouring a
paused enrollment."""
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import enrolling, steps, timing
from campaigns.actions import activate_journey, enroll_contact, pause_enrollment, resume_enrollment
from campaigns.models import (
    AwaitedEvent,
    Enrollment,
    EnrollmentState,
    JourneyStep,
    JourneyStepVisit,
    JourneyVersion,
    StepKind,
)
from campaigns.tick import tick
from campaigns.tick_report import TickReport
from channels.models import Delivery, EventType
from channels.provider_reports import record_delivery_event
from compliance.actions import record_consent_change
from contacts.ingest import ingest_event
from contacts.models import AttributeDefinition, Contact, ContactEvent
from omni.models import AuditEntry, WebhookEndpoint

from .conftest import make_contact, make_journey

pytestmark = pytest.mark.django_db

NEW_YORK = ZoneInfo("America/New_York")


def build_journey(*specs, slug="steps", **fields):
    """A journey of steps given as (key, kind, settings) in order, settings holding config,
    template, channel_plan, and next/else as step keys; activated."""
    journey = make_journey(name=slug.title(), slug=slug, trigger_event="signed_up", **fields)
    made = {}
    for position, (key, kind, settings) in enumerate(specs, start=1):
        settings = dict(settings)
        settings.pop("next", None), settings.pop("else", None)
        made[key] = JourneyStep.objects.create(journey=journey, key=key, position=position, kind=kind, **settings)
    for key, _, settings in specs:
        if "next" in settings or "else" in settings:
            step = made[key]
            step.next_step = made.get(settings.get("next"))
            step.else_step = made.get(settings.get("else"))
            step.save()
    return activate_journey(journey)


def enroll(journey, contact, at, **fields):
    """`contact` enrolled at `at`, due then at the journey's first step."""
    values = {"journey_version": journey.live_version, "current_step_key": journey.live_version.first_step_key,
              "next_run_at": at, "entered_at": at, **fields}
    return Enrollment.objects.create(journey=journey, contact=contact, **values)


def visits_of(enrollment):
    return list(JourneyStepVisit.objects.filter(enrollment=enrollment).order_by("visit_number")
                .values_list("step_key", "outcome"))


def event(contact, name, key, at=None, source="api", **properties):
    return ingest_event(contact=contact, name=name, properties=properties, idempotency_key=key, source=source,
                        occurred_at=at)[0]


EXIT = ("done", StepKind.EXIT, {})
OTHER_EXIT = ("other", StepKind.EXIT, {})


# --- wait until a time of day on the contact's clock -------------------------------------------

def test_wait_until_runs_at_the_next_local_time_in_the_contacts_zone_across_the_spring_dst_change():
    # given Ann in New York, at 10:00 on the Saturday before clocks go forward (Sunday 8 March 2026)
    journey = build_journey(("morning", StepKind.WAIT_UNTIL, {"config": {"time": "09:00"}}), EXIT)
    ann = Contact.objects.create(external_id="ann", timezone="America/New_York")
    saturday = datetime(2026, 3, 7, 15, 0, tzinfo=UTC)
    enrollment = enroll(journey, ann, saturday)

    # when the tick runs her wait
    tick(saturday)

    # then she waits until 09:00 on Sunday, New York time: 13:00 UTC (EDT), not 14:00 (EST)
    enrollment.refresh_from_db()
    assert enrollment.next_run_at == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)
    assert enrollment.next_run_at.astimezone(NEW_YORK).time() == time(9, 0)
    assert visits_of(enrollment) == [("morning", "until:2026-03-08T13:00:00+00:00")]
    # and at that moment she goes on
    tick(datetime(2026, 3, 8, 13, 0, tzinfo=UTC))
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.end_reason) == (EnrollmentState.EXITED, "exit:done")


@pytest.mark.parametrize("now, at, days, expected", [
    # later today (08:00 in New York now)
    (datetime(2026, 6, 1, 12, 0, tzinfo=UTC), "09:00", None, datetime(2026, 6, 1, 13, 0, tzinfo=UTC)),
    (datetime(2026, 6, 1, 12, 0, tzinfo=UTC), "18:30", None, datetime(2026, 6, 1, 22, 30, tzinfo=UTC)),
    # a time the clocks skip (02:30 on 8 March) runs as much later as they skip: 03:30 EDT
    (datetime(2026, 3, 7, 20, 0, tzinfo=UTC), "02:30", None, datetime(2026, 3, 8, 7, 30, tzinfo=UTC)),
    # a time the clocks pass twice (01:30 on 1 November) runs the first time: EDT
    (datetime(2026, 10, 31, 20, 0, tzinfo=UTC), "01:30", None, datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
    # after the autumn change, 09:00 is EST again
    (datetime(2026, 10, 31, 20, 0, tzinfo=UTC), "09:00", None, datetime(2026, 11, 1, 14, 0, tzinfo=UTC)),
    # Monday 1 June 2026: the next Wednesday or Friday
    (datetime(2026, 6, 1, 12, 0, tzinfo=UTC), "09:00", ["wed", "fri"], datetime(2026, 6, 3, 13, 0, tzinfo=UTC)),
    # exactly at 09:00 it is the next day's
    (datetime(2026, 6, 1, 13, 0, tzinfo=UTC), "09:00", None, datetime(2026, 6, 2, 13, 0, tzinfo=UTC)),
])
def test_the_next_local_time(now, at, days, expected):
    assert timing.next_local_time(now, NEW_YORK, timing.parse_time_of_day(at), days) == expected


def test_a_contact_without_a_zone_waits_on_the_default_clock(settings):
    settings.OMNI_DEFAULT_TIMEZONE = "Europe/Paris"
    journey = build_journey(("morning", StepKind.WAIT_UNTIL, {"config": {"time": "09:00"}}), EXIT)
    now = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    enrollment = enroll(journey, Contact.objects.create(external_id="bo"), now)

    tick(now)

    enrollment.refresh_from_db()
    assert enrollment.next_run_at == datetime(2026, 7, 2, 7, 0, tzinfo=UTC)  # 09:00 CEST


# --- wait relative to a date ---------------------------------------------------------------------

def reminder_journey(source="attribute"):
    return build_journey(
        ("day-before", StepKind.WAIT_DATE, {"config": {source: "appointment_at", "offset_seconds": -86400},
                                            "else": "other"}),
        EXIT, OTHER_EXIT)


def test_wait_date_waits_until_24_hours_before_the_contacts_appointment():
    journey = reminder_journey()
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    ann = Contact.objects.create(external_id="ann", attributes={"appointment_at": "2026-05-10T15:30:00+02:00"})
    enrollment = enroll(journey, ann, now)

    tick(now)

    enrollment.refresh_from_db()
    assert enrollment.next_run_at == datetime(2026, 5, 9, 13, 30, tzinfo=UTC)
    assert enrollment.current_step_key == "done" and enrollment.state == EnrollmentState.ACTIVE


def test_wait_date_goes_on_at_once_when_the_moment_has_passed_and_takes_else_without_a_date():
    journey = reminder_journey()
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    soon = enroll(journey, Contact.objects.create(external_id="soon", attributes={"appointment_at": "2026-05-01T18:00:00Z"}), now)
    dateless = enroll(journey, Contact.objects.create(external_id="none", attributes={"appointment_at": "not a date"}), now)

    tick(now)

    soon.refresh_from_db(), dateless.refresh_from_db()
    assert (soon.state, soon.end_reason) == (EnrollmentState.EXITED, "exit:done")
    assert visits_of(soon)[0] == ("day-before", "date:past")
    assert (dateless.state, dateless.end_reason) == (EnrollmentState.EXITED, "exit:other")
    assert visits_of(dateless)[0] == ("day-before", "date:missing")


def test_wait_date_reads_a_property_of_the_trigger_event_and_a_bare_date_is_midnight_on_the_contacts_clock():
    journey = reminder_journey(source="property")
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    ann = Contact.objects.create(external_id="ann", timezone="America/New_York")
    booked = event(ann, "booked", "b-1", appointment_at="2026-05-10")
    enrollment = enroll(journey, ann, now, trigger_event=booked)

    tick(now)

    enrollment.refresh_from_db()
    # midnight on 10 May in New York is 04:00 UTC; a day before
    assert enrollment.next_run_at == datetime(2026, 5, 9, 4, 0, tzinfo=UTC)


# --- wait for an event, with a timeout branch ----------------------------------------------------

def purchase_journey():
    return build_journey(
        ("await-purchase", StepKind.WAIT_EVENT, {"config": {"event": "purchased", "timeout_seconds": 3600},
                                                 "else": "other"}),
        EXIT, OTHER_EXIT)


def test_an_event_wakes_only_its_contacts_waiting_enrollment_which_goes_on_to_its_next_step(now):
    # given Ann and Bob waiting for a purchase
    journey = purchase_journey()
    ann, bob = Contact.objects.create(external_id="ann"), Contact.objects.create(external_id="bob")
    waiting_ann, waiting_bob = enroll(journey, ann, now), enroll(journey, bob, now)
    tick(now)
    waiting_ann.refresh_from_db()
    assert (waiting_ann.waiting_for, waiting_ann.current_step_key) == ("event:purchased", "await-purchase")
    assert waiting_ann.next_run_at == now + timedelta(seconds=3600)
    assert visits_of(waiting_ann) == []
    assert list(AwaitedEvent.objects.values_list("event", flat=True)) == ["purchased"]

    # when Ann purchases (and Bob only browses)
    event(ann, "purchased", "p-ann")
    event(bob, "viewed", "v-bob")
    report = tick(now + timedelta(seconds=10))

    # then Ann's wait ends on the event, in the same tick; Bob still waits
    waiting_ann.refresh_from_db(), waiting_bob.refresh_from_db()
    assert report.woken == 1
    assert (waiting_ann.state, waiting_ann.end_reason, waiting_ann.waiting_for) == (EnrollmentState.EXITED,
                                                                                    "exit:done", "")
    assert visits_of(waiting_ann) == [("await-purchase", "event:purchased"), ("done", "exit")]
    assert (waiting_bob.waiting_for, waiting_bob.state) == ("event:purchased", EnrollmentState.ACTIVE)


def test_an_event_wakes_no_other_contact_waiting_for_it_nor_its_own_contact_waiting_for_another(now):
    # given Ann waits for a cancellation and Bob for a purchase, each in their own journey
    purchases = purchase_journey()
    cancellations = build_journey(
        ("await-cancel", StepKind.WAIT_EVENT, {"config": {"event": "cancelled", "timeout_seconds": 3600}}), EXIT,
        slug="cancellations")
    ann, bob = Contact.objects.create(external_id="ann"), Contact.objects.create(external_id="bob")
    ann_waits, bob_waits = enroll(cancellations, ann, now), enroll(purchases, bob, now)
    tick(now)

    # when Ann purchases and Bob cancels, in one batch of events
    event(ann, "purchased", "p-ann")
    event(bob, "cancelled", "c-bob")
    report = tick(now + timedelta(seconds=1))

    # then nobody was woken: neither did what they wait for
    ann_waits.refresh_from_db(), bob_waits.refresh_from_db()
    assert report.woken == 0
    assert (ann_waits.waiting_for, bob_waits.waiting_for) == ("event:cancelled", "event:purchased")
    assert ann_waits.woken_at is None and bob_waits.woken_at is None


def test_a_wait_that_times_out_takes_its_timeout_branch(now):
    journey = purchase_journey()
    enrollment = enroll(journey, Contact.objects.create(external_id="ann"), now)
    tick(now)

    tick(now + timedelta(seconds=3599))
    enrollment.refresh_from_db()
    assert enrollment.state == EnrollmentState.ACTIVE
    tick(now + timedelta(seconds=3600))

    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.end_reason) == (EnrollmentState.EXITED, "exit:other")
    assert visits_of(enrollment) == [("await-purchase", "timeout"), ("other", "exit")]


def test_waking_costs_the_same_queries_for_3_or_30_contacts(now):
    journey = purchase_journey()
    contacts = Contact.objects.bulk_create(Contact(external_id=f"c{n}") for n in range(33))
    for contact in contacts:
        enroll(journey, contact, now)
    tick(now)

    def stage_queries(batch, tag) -> int:
        for contact in batch:
            event(contact, "purchased", f"{tag}-{contact.pk}")
        report = TickReport()
        with CaptureQueriesContext(connection) as queries:
            enrolling.process_events_batch(now + timedelta(seconds=1), report)
        assert report.woken == len(batch)
        # the waiting enrollments read (and locked) in one query, and woken in one
        assert len([q for q in queries if "campaigns_enrollment" in q["sql"]]) == 2
        return len(queries)

    assert stage_queries(contacts[:3], "few") == stage_queries(contacts[3:], "many")
    assert Enrollment.objects.filter(woken_at__isnull=False).count() == 33


def test_events_nobody_waits_for_read_no_enrollments(now):
    enroll(purchase_journey(), Contact.objects.create(external_id="ann"), now)
    tick(now)
    ann = Contact.objects.get()
    event(ann, "viewed", "v-1")

    with CaptureQueriesContext(connection) as queries:
        enrolling.process_events_batch(now, TickReport())

    assert not [q["sql"] for q in queries if "campaigns_enrollment" in q["sql"]]


# --- wait for engagement with an earlier send --------------------------------------------------

@pytest.fixture
def engagement_journey(welcome_templates):
    email, _ = welcome_templates
    return build_journey(
        ("welcome", StepKind.SEND, {"template": email, "channel_plan": [{"channel": "email"}]}),
        ("await-open", StepKind.WAIT_EVENT, {"config": {"engagement": "opened", "step": "welcome",
                                                        "timeout_seconds": 86400}, "else": "other"}),
        EXIT, OTHER_EXIT)


def opened(delivery, at, kind=EventType.OPENED):
    record_delivery_event(delivery.provider, f"{kind}-{delivery.pk}", "", kind, at, delivery_id=delivery.pk)


def test_an_open_of_the_earlier_email_wakes_the_wait_through_a_contact_event(engagement_journey, now):
    # given Ann sent the welcome email and waiting for it to be opened
    ann = make_contact("ann", email="ann@example.com")
    enrollment = enroll(engagement_journey, ann, now)
    tick(now)
    enrollment.refresh_from_db()
    message_id = enrollment.context["messages"]["welcome"]
    assert enrollment.waiting_for == f"engagement:{message_id}:opened"

    # when the provider reports it delivered, then opened (twice)
    delivery = Delivery.objects.get(contact=ann)
    opened(delivery, now, EventType.DELIVERED)
    tick(now + timedelta(seconds=1))
    enrollment.refresh_from_db()
    assert enrollment.waiting_for  # delivered is not opened
    opened(delivery, now)
    record_delivery_event(delivery.provider, "opened-again", "", EventType.OPENED, now, delivery_id=delivery.pk)
    tick(now + timedelta(seconds=2))

    # then one contact event per kind was stored, and the wait ended on the open
    assert sorted(ContactEvent.objects.filter(source="channels").values_list("name", flat=True)) == [
        "message.delivered", "message.opened"]
    assert ContactEvent.objects.get(name="message.opened").properties["message_id"] == message_id
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.end_reason) == (EnrollmentState.EXITED, "exit:done")
    assert visits_of(enrollment)[1] == ("await-open", "engagement:opened")


def test_an_engagement_that_already_happened_does_not_wait(welcome_templates, now):
    email, _ = welcome_templates
    journey = build_journey(
        ("welcome", StepKind.SEND, {"template": email, "channel_plan": [{"channel": "email"}]}),
        ("pause", StepKind.WAIT, {"config": {"seconds": 60}}),
        ("await-click", StepKind.WAIT_EVENT, {"config": {"engagement": "engaged", "step": "welcome",
                                                         "timeout_seconds": 86400}, "else": "other"}),
        EXIT, OTHER_EXIT)
    ann = make_contact("ann", email="ann@example.com")
    enrollment = enroll(journey, ann, now)
    tick(now)
    opened(Delivery.objects.get(contact=ann), now, EventType.CLICKED)

    tick(now + timedelta(seconds=60))

    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.end_reason) == (EnrollmentState.EXITED, "exit:done")
    assert visits_of(enrollment)[2] == ("await-click", "engagement:engaged")


def test_an_engagement_whose_wake_was_missed_is_found_at_the_timeout(engagement_journey, now):
    # given Ann waiting for her email's opening, whose event was stored and processed while her
    # wait was still starting (so it woke nothing)
    ann, bob = make_contact("ann", email="ann@example.com"), make_contact("bob", email="bob@example.com")
    enrollment, unopened = enroll(engagement_journey, ann, now), enroll(engagement_journey, bob, now)
    tick(now)
    opened(Delivery.objects.get(contact=ann), now)
    ContactEvent.objects.update(processed_at=now)

    # when her wait (and Bob's, whose email nobody opened) times out
    tick(now + timedelta(days=1))

    # then the opening is found, and she goes on as if woken; Bob takes the timeout branch
    enrollment.refresh_from_db(), unopened.refresh_from_db()
    assert (enrollment.end_reason, visits_of(enrollment)[1]) == ("exit:done", ("await-open", "engagement:opened"))
    assert (unopened.end_reason, visits_of(unopened)[1]) == ("exit:other", ("await-open", "timeout"))


def test_an_api_event_named_like_channels_engagement_wakes_nothing(engagement_journey, now):
    ann = make_contact("ann", email="ann@example.com")
    enrollment = enroll(engagement_journey, ann, now)
    tick(now)
    enrollment.refresh_from_db()
    message_id = enrollment.context["messages"]["welcome"]

    event(ann, "message.opened", "forged", message_id=message_id)
    tick(now + timedelta(seconds=1))

    enrollment.refresh_from_db()
    assert enrollment.waiting_for == f"engagement:{message_id}:opened"


# --- branches ------------------------------------------------------------------------------------

def branch_journey(config, slug="steps", *extra):
    return build_journey(("check", StepKind.CONDITION, {"config": config, "else": "other"}), EXIT, OTHER_EXIT,
                         *extra, slug=slug)


def end_reason_after_tick(journey, contact, now, **fields):
    enrollment = enroll(journey, contact, now, **fields)
    tick(now)
    enrollment.refresh_from_db()
    return enrollment.end_reason


@pytest.mark.parametrize("config, attributes, expected", [
    ({"check": "attribute", "name": "score", "operator": "at_least", "value": 10}, {"score": 12}, "exit:done"),
    ({"check": "attribute", "name": "score", "operator": "at_least", "value": 10}, {"score": 9.5}, "exit:other"),
    # only a JSON number is a number
    ({"check": "attribute", "name": "score", "operator": "less_than", "value": 10}, {"score": "9"}, "exit:other"),
    ({"check": "attribute", "name": "plan", "equals": "pro"}, {"plan": "pro"}, "exit:done"),
    ({"check": "attribute", "name": "plan", "operator": "not_equals", "value": "pro"}, {}, "exit:done"),
    ({"check": "attribute", "name": "plan", "operator": "is_set"}, {"plan": None}, "exit:other"),
    ({"check": "attribute", "name": "plan", "operator": "starts_with", "value": "PR"}, {"plan": "pro"}, "exit:done"),
    ({"check": "attribute", "name": "renews", "operator": "before", "value": "2026-06-01"}, {"renews": "2026-05-31"},
     "exit:done"),
    ({"check": "attribute", "name": "tags", "operator": "contains", "value": "vip"}, {"tags": ["new", "vip"]},
     "exit:done"),
])
def test_an_attribute_branch_compares_with_the_typed_operator_of_its_declared_type(config, attributes, expected, now):
    for name, data_type in (("score", "number"), ("renews", "date"), ("tags", "list")):
        AttributeDefinition.objects.create(name=name, data_type=data_type)
    contact = Contact.objects.create(external_id="ann", attributes=attributes)

    assert end_reason_after_tick(branch_journey(config), contact, now) == expected


def test_publishing_refuses_an_attribute_branch_whose_operator_or_value_does_not_fit_the_declared_type():
    AttributeDefinition.objects.create(name="score", data_type="number")
    with pytest.raises(ValidationError) as refused:
        build_journey(("a", StepKind.CONDITION, {"config": {"check": "attribute", "name": "score",
                                                            "operator": "at_least", "value": "ten"}}),
                      ("b", StepKind.CONDITION, {"config": {"check": "attribute", "name": "plan",
                                                            "operator": "at_least", "value": 1}}),
                      EXIT)

    text = " ".join(refused.value.messages)
    assert "Condition step 'a': config.value must be a number (attribute 'score' is number)." in text
    assert "Condition step 'b': config.operator must be one of equals, not_equals, contains" in text
    assert "(attribute 'plan' is undeclared: compared as text)" in text


def test_an_event_branch_asks_whether_the_contact_did_it_since_entering_or_within_days(now):
    since_entering = branch_journey({"check": "event", "name": "purchased"})
    ann, bob = Contact.objects.create(external_id="ann"), Contact.objects.create(external_id="bob")
    event(ann, "purchased", "p-ann", at=now - timedelta(hours=1))
    event(bob, "purchased", "p-bob", at=now - timedelta(days=3))

    # bought after entering (an hour ago), and before it (three days ago)
    assert end_reason_after_tick(since_entering, ann, now, entered_at=now - timedelta(days=1)) == "exit:done"
    assert end_reason_after_tick(since_entering, bob, now, entered_at=now - timedelta(days=1)) == "exit:other"

    within_week = branch_journey({"check": "event", "name": "purchased", "within_days": 7}, "week")
    carl = Contact.objects.create(external_id="carl")
    event(carl, "purchased", "p-carl", at=now - timedelta(days=8))
    assert end_reason_after_tick(within_week, bob, now) == "exit:done"
    assert end_reason_after_tick(within_week, carl, now) == "exit:other"


def test_an_engagement_branch_reads_channels_message_events(engagement_journey, welcome_templates, now):
    email, _ = welcome_templates
    journey = build_journey(
        ("welcome", StepKind.SEND, {"template": email, "channel_plan": [{"channel": "email"}]}),
        ("pause", StepKind.WAIT, {"config": {"seconds": 60}}),
        ("clicked", StepKind.CONDITION, {"config": {"check": "clicked", "step": "welcome"}, "else": "other"}),
        EXIT, OTHER_EXIT, slug="clicks")
    ann, bob = make_contact("ann", email="ann@example.com"), make_contact("bob", email="bob@example.com")
    clicker, opener = enroll(journey, ann, now), enroll(journey, bob, now)
    tick(now)
    opened(Delivery.objects.get(contact=ann), now, EventType.CLICKED)
    opened(Delivery.objects.get(contact=bob), now, EventType.OPENED)

    tick(now + timedelta(seconds=60))

    clicker.refresh_from_db(), opener.refresh_from_db()
    assert (clicker.end_reason, opener.end_reason) == ("exit:done", "exit:other")


def test_a_webhook_branch_reads_the_answer_kept_on_the_enrollment(now):
    WebhookEndpoint.objects.create(name="CRM", url="https://crm.example.com/omni")
    journey = branch_journey({"check": "webhook", "step": "ask", "name": "decision.status", "operator": "equals",
                              "value": "approved"},
                             "steps", ("ask", StepKind.WEBHOOK, {"config": {"endpoint": "CRM", "timeout_seconds": 60}}))
    approved = {"webhooks": {"ask": {"status": 200, "answer": {"decision": {"status": "approved"}}}}}
    refused = {"webhooks": {"ask": {"status": 200, "answer": {"decision": {"status": "refused"}}}}}

    assert end_reason_after_tick(journey, Contact.objects.create(external_id="a"), now, context=approved) == "exit:done"
    assert end_reason_after_tick(journey, Contact.objects.create(external_id="b"), now, context=refused) == "exit:other"


# --- random split ---------------------------------------------------------------------------------

SPLIT = ("ab", StepKind.SPLIT, {"config": {"paths": [{"name": "A", "weight": 30, "step": "done"},
                                                     {"name": "B", "weight": 70, "step": "other"}]}})


def test_a_split_sends_each_contact_down_one_weighted_path_kept_as_the_visits_outcome(now):
    journey = build_journey(SPLIT, EXIT, OTHER_EXIT)
    contacts = Contact.objects.bulk_create(Contact(external_id=f"c{n}") for n in range(400))
    for contact in contacts:
        enroll(journey, contact, now)

    tick(now)

    outcomes = dict(JourneyStepVisit.objects.filter(step_key="ab").values_list("enrollment_id", "outcome"))
    reasons = dict(Enrollment.objects.values_list("pk", "end_reason"))
    assert {outcome: list(outcomes.values()).count(outcome) for outcome in ("split:A", "split:B")}["split:A"] in range(90, 150)
    assert all(reasons[pk] == ("exit:done" if outcome == "split:A" else "exit:other") for pk, outcome in outcomes.items())
    assert all(outcome == f"split:{'AB'[steps.split_path(pk, 1, 'ab', [30, 70])]}" for pk, outcome in outcomes.items())


def test_a_split_draws_the_same_path_when_its_batch_is_run_again(now):
    # given contacts at a split, and one on a version whose split cannot draw (hand-changed
    # data), so the batch fails and run_isolating_failures runs its halves again
    journey = build_journey(SPLIT, EXIT, OTHER_EXIT)
    contacts = Contact.objects.bulk_create(Contact(external_id=f"c{n}") for n in range(40))
    enrollments = [enroll(journey, contact, now) for contact in contacts]
    broken_steps = [dict(step) for step in journey.live_version.steps]
    broken_steps[0] = {**broken_steps[0], "config": {"paths": [{"name": "A", "weight": 0}, {"name": "B", "weight": 0}]}}
    bad_version = JourneyVersion.objects.create(journey=journey, number=2, trigger_type="event", trigger_event="x",
                                                reentry="never", steps=broken_steps)
    bad = enroll(journey, Contact.objects.create(external_id="bad"), now, journey_version=bad_version)

    # when the tick runs them
    report = tick(now)

    # then the broken one is quarantined, and every other contact took the path its visit draws
    assert report.quarantined >= 1
    bad.refresh_from_db()
    assert bad.quarantined_at is not None
    for enrollment in enrollments:
        [(key, outcome)] = visits_of(enrollment)[:1]
        assert outcome == f"split:{'AB'[steps.split_path(enrollment.pk, 1, 'ab', [30, 70])]}"
        assert JourneyStepVisit.objects.filter(enrollment=enrollment, step_key="ab").count() == 1


# --- update the contact ---------------------------------------------------------------------------

def test_update_steps_set_an_attribute_and_the_stage_in_bulk_audited_keeping_other_attributes(now):
    journey = build_journey(
        ("tag", StepKind.UPDATE, {"config": {"attribute": "plan", "value": "pro"}}),
        ("stage", StepKind.UPDATE, {"config": {"lifecycle_stage": "customer"}}),
        ("is-pro", StepKind.CONDITION, {"config": {"check": "attribute", "name": "plan", "operator": "equals",
                                                   "value": "pro"},
                                        "else": "other"}),
        EXIT, OTHER_EXIT)
    ann = Contact.objects.create(external_id="ann", attributes={"score": 3, "plan": "free"})
    enrollment = enroll(journey, ann, now)

    tick(now)

    ann.refresh_from_db(), enrollment.refresh_from_db()
    assert ann.attributes == {"score": 3, "plan": "pro"} and ann.lifecycle_stage == "customer"
    # the branch after it read the new value
    assert enrollment.end_reason == "exit:done"
    entries = AuditEntry.objects.filter(action="contact.updated", contact_id=ann.pk).order_by("pk")
    assert [e.data["fields"] for e in entries] == [["attributes.plan"], ["lifecycle_stage"]]
    assert {e.actor_label for e in entries} == {"journey:steps"}


def test_an_update_costs_one_statement_per_value_whatever_the_number_of_contacts(now):
    journey = build_journey(("tag", StepKind.UPDATE, {"config": {"attribute": "tier", "value": ["gold", 1]}}),
                            ("pause", StepKind.WAIT, {"config": {"seconds": 60}}))
    contacts = Contact.objects.bulk_create(Contact(external_id=f"c{n}") for n in range(30))

    def tick_queries(batch, at) -> int:
        for contact in batch:
            enroll(journey, contact, at)
        with CaptureQueriesContext(connection) as queries:
            tick(at)
        return len([q for q in queries if "UPDATE \"contacts_contact\"" in q["sql"]]), len(queries)

    few, many = tick_queries(contacts[:3], now), tick_queries(contacts[3:], now + timedelta(seconds=1))
    assert few == many and few[0] == 1
    assert all(c.attributes == {"tier": ["gold", 1]} for c in Contact.objects.all())


def test_publishing_checks_an_updates_value_against_the_declared_type_and_the_stage():
    AttributeDefinition.objects.create(name="score", data_type="number")
    with pytest.raises(ValidationError) as refused:
        build_journey(("set", StepKind.UPDATE, {"config": {"attribute": "score", "value": "ten"}}),
                      ("stage", StepKind.UPDATE, {"config": {"lifecycle_stage": "vip"}}))

    text = " ".join(refused.value.messages)
    assert "Update step 'set' sets attribute 'score': config.value must be a number, not \"ten\"." in text
    assert "Update step 'stage': config.lifecycle_stage 'vip' is not a lifecycle stage" in text


# --- exit on opt-out ------------------------------------------------------------------------------

def test_an_enrollment_exits_when_its_contact_opted_out_of_every_channel_its_journey_sends_on(welcome_templates, now):
    email, sms = welcome_templates
    journey = build_journey(
        ("pause", StepKind.WAIT, {"config": {"seconds": 60}}),
        ("welcome", StepKind.SEND, {"template": email, "channel_plan": [{"channel": "email"}]}),
        ("nudge", StepKind.SEND, {"template": sms, "channel_plan": [{"channel": "sms"}]}),
        EXIT)
    gone = make_contact("gone", email="gone@example.com", phone="+14155550101")
    half = make_contact("half", email="half@example.com", phone="+14155550102")
    never = make_contact("never", email="never@example.com", consents=())  # never opted in: not an opt-out
    enrollments = {c.external_id: enroll(journey, c, now) for c in (gone, half, never)}
    record_consent_change(gone, "email", "marketing", "revoked", "unsubscribe_link")
    record_consent_change(gone, "sms", "marketing", "revoked", "keyword")
    record_consent_change(half, "sms", "marketing", "revoked", "keyword")

    tick(now)

    for enrollment in enrollments.values():
        enrollment.refresh_from_db()
    assert (enrollments["gone"].state, enrollments["gone"].end_reason) == (EnrollmentState.EXITED, "opted_out")
    assert visits_of(enrollments["gone"]) == []
    assert enrollments["half"].state == enrollments["never"].state == EnrollmentState.ACTIVE
    assert AuditEntry.objects.get(action="journey.exited", contact_id=gone.pk).reason == "opted_out"


# --- pause ----------------------------------------------------------------------------------------

def test_a_paused_enrollment_holds_its_wake_and_its_timeout_and_runs_the_overdue_wait_on_resume(now):
    journey = purchase_journey()
    ann, bob = Contact.objects.create(external_id="ann"), Contact.objects.create(external_id="bob")
    woken, timed_out = enroll(journey, ann, now), enroll(journey, bob, now)
    tick(now)
    pause_enrollment(woken, reason="asked us to wait", now=now)
    pause_enrollment(timed_out, reason="asked us to wait", now=now)

    # while paused, Ann's event arrives and Bob's timeout passes: nothing runs
    event(ann, "purchased", "p-ann")
    tick(now + timedelta(seconds=10))
    tick(now + timedelta(hours=2))
    for enrollment in (woken, timed_out):
        enrollment.refresh_from_db()
        assert enrollment.state == EnrollmentState.PAUSED and visits_of(enrollment) == []
    assert woken.woken_at is not None

    # once resumed, each runs at once: Ann on the event, Bob on the timeout
    later = now + timedelta(hours=3)
    resume_enrollment(woken, now=later)
    resume_enrollment(timed_out, now=later)
    tick(later)

    woken.refresh_from_db(), timed_out.refresh_from_db()
    assert (woken.end_reason, timed_out.end_reason) == ("exit:done", "exit:other")
    assert visits_of(woken)[0] == ("await-purchase", "event:purchased")
    assert visits_of(timed_out)[0] == ("await-purchase", "timeout")


@pytest.mark.parametrize("spec", [
    ("morning", StepKind.WAIT_UNTIL, {"config": {"time": "09:00"}}),
    ("day-before", StepKind.WAIT_DATE, {"config": {"attribute": "appointment_at", "offset_seconds": -86400}}),
    SPLIT,
    ("tag", StepKind.UPDATE, {"config": {"attribute": "plan", "value": "pro"}}),
])
def test_no_kind_of_step_runs_for_a_paused_enrollment(spec, now):
    journey = build_journey(spec, EXIT, OTHER_EXIT)
    ann = Contact.objects.create(external_id="ann", attributes={"appointment_at": "2030-01-01"})
    enrollment = enroll(journey, ann, now)
    pause_enrollment(enrollment, reason="hold", now=now)

    tick(now + timedelta(seconds=1))

    enrollment.refresh_from_db(), ann.refresh_from_db()
    assert visits_of(enrollment) == [] and ann.attributes == {"appointment_at": "2030-01-01"}
    resume_enrollment(enrollment, now=now + timedelta(seconds=2))
    tick(now + timedelta(seconds=2))
    assert visits_of(enrollment)[0][0] == spec[0]


def test_an_event_in_the_batch_whose_trigger_enrolled_the_contact_ends_the_wait_at_once(now):
    # given a journey that waits for a purchase after the sign-up
    purchase_journey()
    ann, bob = Contact.objects.create(external_id="ann"), Contact.objects.create(external_id="bob")

    # when Ann signs up and purchases, and Bob purchases before signing up, all in one batch of events
    event(ann, "signed_up", "s-ann")
    event(ann, "purchased", "p-ann")
    event(bob, "purchased", "p-bob")
    event(bob, "signed_up", "s-bob")
    tick(now)

    # then Ann's wait ends on her purchase in the same tick; Bob's purchase came before he entered
    ann_in, bob_in = Enrollment.objects.get(contact=ann), Enrollment.objects.get(contact=bob)
    assert visits_of(ann_in) == [("await-purchase", "event:purchased"), ("done", "exit")]
    assert (bob_in.state, bob_in.waiting_for, visits_of(bob_in)) == (EnrollmentState.ACTIVE, "event:purchased", [])


def test_an_event_stored_while_a_later_wait_was_starting_ends_it_and_one_before_the_step_does_not(now):
    # given a journey that pauses an hour, then waits for a purchase
    journey = build_journey(("pause", StepKind.WAIT, {"config": {"seconds": 3600}}),
                            ("await-purchase", StepKind.WAIT_EVENT, {"config": {"event": "purchased",
                                                                                "timeout_seconds": 3600},
                                                                     "else": "other"}),
                            EXIT, OTHER_EXIT, slug="pause-then-wait")
    ann, bob = Contact.objects.create(external_id="ann"), Contact.objects.create(external_id="bob")
    ann_in, bob_in = enroll(journey, ann, now), enroll(journey, bob, now)
    tick(now)
    # and Bob purchases during the pause, before reaching the wait (the tick handles it: nobody waits)
    event(bob, "purchased", "p-bob")
    tick(now + timedelta(seconds=60))

    # when the pause ends, and Ann's purchase is stored and processed just as her wait starts
    later = timezone.now() + timedelta(seconds=3600)
    tick(later)
    purchase = event(ann, "purchased", "p-ann")
    ContactEvent.objects.filter(pk=purchase.pk).update(processed_at=later, received_at=later)
    tick(later + timedelta(seconds=3600))

    # then Ann's wait ends on her purchase at its timeout check; Bob's purchase before the step counts not
    assert visits_of(ann_in)[-2:] == [("await-purchase", "event:purchased"), ("done", "exit")]
    assert visits_of(bob_in)[-2:] == [("await-purchase", "timeout"), ("other", "exit")]
