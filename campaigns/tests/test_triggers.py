"""Triggers: an event's maximum age and typed conditions, dates (an attribute, or a property of the
trigger event) read on the contact's clock across zones and DST, and what enrolled a contact kept
on their enrollment."""
from datetime import datetime, time, timedelta, timezone as dt_timezone

import pytest
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns.actions import (
    activate_journey,
    draft_snapshot,
    enroll_contact_once,
    pause_journey,
    resume_journey,
    validate_journey,
)
from campaigns.date_triggers import DATE_CHECK_SECONDS, fire_date_triggers_batch, local_days_passing, moment_of
from campaigns.enrolling import process_events_batch
from campaigns.models import Enrollment, Journey, JourneyStep, JourneyVersion, ReentryPolicy, StepKind, TriggerType
from campaigns.tick import tick
from campaigns.tick_report import TickReport
from channels.delivery import send_delivery
from channels.models import Message
from contacts.models import AttributeDefinition, Contact, ContactEvent, DataType, EventPropertyDefinition
from omni.models import AuditEntry
from omni.tests.fakes import run_concurrently
from templates.actions import publish_template
from templates.models import Template, TemplateVariant

from .conftest import make_contact, make_journey

UTC = dt_timezone.utc


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# The date tests fire at moments around the DST changes of March 2027. Their journeys count as
# activated before these, so the tests keep passing once the real date is past them.
BEFORE_THE_DST_CHANGES = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def build_journey(slug="renewal", **fields) -> Journey:
    """An active journey that waits an hour, then exits; a date trigger's first look takes in
    moments since BEFORE_THE_DST_CHANGES (at most a day before the look, as always)."""
    journey = make_journey(name=slug.title(), slug=slug, **fields)
    kind, config = StepKind.WAIT, {"seconds": 3600}
    JourneyStep.objects.create(journey=journey, key="first", position=1, kind=kind, config=config)
    JourneyStep.objects.create(journey=journey, key="done", position=2, kind=StepKind.EXIT)
    journey = activate_journey(journey)
    if journey.trigger_type == TriggerType.DATE_ATTRIBUTE:
        Journey.objects.filter(pk=journey.pk).update(date_trigger_checked_until=BEFORE_THE_DST_CHANGES)
        journey.refresh_from_db()
    return journey


def event(contact, name, *, occurred_at=None, key=None, **properties) -> ContactEvent:
    return ContactEvent.objects.create(
        contact=contact, name=name, properties=properties, occurred_at=occurred_at or timezone.now(),
        idempotency_key=key or f"{name}-{contact.external_id}-{ContactEvent.objects.count()}", source="test")


def refusals(reason):
    return list(AuditEntry.objects.filter(action="journey.enrollment_refused", reason=reason)
                .order_by("pk").values_list("contact_id", "data"))


def test_every_trigger_setting_is_published_with_the_version(db):
    journey = make_journey(name="R", slug="r", trigger_event="x")
    settings = {f.attname for f in Journey._meta.concrete_fields if f.name.startswith("trigger_")}

    assert settings <= set(JourneyVersion.SNAPSHOT_FIELDS)
    assert set(draft_snapshot(journey)) == set(JourneyVersion.SNAPSHOT_FIELDS)


# --- an event's maximum age ----------------------------------------------------------------------

@pytest.mark.django_db
def test_an_event_older_than_the_maximum_age_never_enrolls_and_the_refusal_is_audited(now):
    # given a journey taking events at most an hour old, a late event for Ann and a fresh one for Bob
    build_journey(trigger_event="cart.abandoned", trigger_max_age_seconds=3600)
    ann, bob = make_contact("ann"), make_contact("bob")
    late = event(ann, "cart.abandoned", occurred_at=now - timedelta(hours=2))
    event(bob, "cart.abandoned", occurred_at=now - timedelta(minutes=59))

    # when the tick processes them
    report = tick(now)

    # then only Bob enters; Ann's refusal names the reason, the event and its age
    assert list(Enrollment.objects.values_list("contact__external_id", flat=True)) == ["bob"]
    assert report.enrolled == 1
    assert refusals("event_too_old") == [(ann.pk, {"event": late.pk, "age_seconds": 7200, "max_age_seconds": 3600})]


@pytest.mark.django_db
def test_a_late_event_does_not_hide_a_fresh_one_of_the_same_contact_in_the_batch(now):
    build_journey(trigger_event="cart.abandoned", trigger_max_age_seconds=60)
    ann = make_contact("ann")
    event(ann, "cart.abandoned", occurred_at=now - timedelta(minutes=5))
    fresh = event(ann, "cart.abandoned", occurred_at=now - timedelta(seconds=10))

    tick(now)

    assert Enrollment.objects.get().trigger_event_id == fresh.pk
    assert len(refusals("event_too_old")) == 1


@pytest.mark.django_db
def test_late_events_and_conditions_cost_a_fixed_number_of_queries_whatever_the_number_of_events(now):
    EventPropertyDefinition.objects.create(event="cart.abandoned", name="value", data_type=DataType.NUMBER)
    build_journey(trigger_event="cart.abandoned", trigger_max_age_seconds=60,
                  trigger_conditions=[{"property": "value", "operator": "at_least", "value": 10}])

    def process(count, prefix):
        for index in range(count):
            contact = Contact.objects.create(external_id=f"{prefix}{index}")
            event(contact, "cart.abandoned", occurred_at=now - timedelta(hours=1), value=20)
            event(contact, "cart.abandoned", occurred_at=now, value=20)
            event(contact, "cart.abandoned", occurred_at=now, value=5)
        with CaptureQueriesContext(connection) as captured:
            process_events_batch(now, TickReport())
        return len(captured)

    # (more would split SQLite's bulk inserts at its 999 parameters, which is not what this counts)
    assert process(2, "few") == process(8, "many")
    assert len(refusals("event_too_old")) == 10 and Enrollment.objects.count() == 10


def test_a_maximum_age_is_refused_on_a_trigger_without_events(db):
    journey = make_journey(name="R", slug="r", trigger_type=TriggerType.API, trigger_max_age_seconds=60)
    JourneyStep.objects.create(journey=journey, key="done", position=1, kind=StepKind.EXIT)

    assert validate_journey(journey) == [
        "The maximum event age applies to an event trigger, not to 'API call': empty it."]


# --- typed conditions on the event's properties -------------------------------------------------

@pytest.mark.django_db
def test_typed_conditions_compare_each_property_as_its_declared_type(now):
    # given orders of at least 100 with no coupon, placed after New Year, to be followed up
    EventPropertyDefinition.objects.create(event="order.placed", name="amount", data_type=DataType.NUMBER)
    EventPropertyDefinition.objects.create(event="order.placed", name="placed_on", data_type=DataType.DATE)
    build_journey(trigger_event="order.placed", trigger_conditions=[
        {"property": "amount", "operator": "at_least", "value": 100},
        {"property": "coupon", "operator": "is_not_set"},
        {"property": "placed_on", "operator": "after", "value": "2027-01-01"},
        {"property": "channel", "operator": "starts_with", "value": "web"},
    ])
    orders = {
        "big": {"amount": 150, "placed_on": "2027-01-02", "channel": "Website"},
        "exactly-100": {"amount": 100.0, "placed_on": "2027-03-01", "channel": "web-shop"},
        "small": {"amount": 99.5, "placed_on": "2027-01-02", "channel": "web"},
        "text-amount": {"amount": "150", "placed_on": "2027-01-02", "channel": "web"},
        "with-coupon": {"amount": 150, "coupon": "SPRING", "placed_on": "2027-01-02", "channel": "web"},
        "last-year": {"amount": 150, "placed_on": "2026-12-31", "channel": "web"},
        "in-store": {"amount": 150, "placed_on": "2027-01-02", "channel": "store"},
    }
    for external_id, properties in orders.items():
        event(make_contact(external_id), "order.placed", **properties)

    # when the tick processes the orders
    tick(now)

    # then only the orders meeting every condition enrolled
    assert set(Enrollment.objects.values_list("contact__external_id", flat=True)) == {"big", "exactly-100"}


@pytest.mark.django_db
def test_conditions_saved_before_typed_conditions_keep_their_meaning(now):
    # given a journey (and so its version) holding conditions of the old {"name": value} shape
    # (a declared date compares as that day; an object or a list, which no typed operator says, exactly)
    EventPropertyDefinition.objects.create(event="signed_up", name="trial_ends", data_type=DataType.DATE)
    build_journey(trigger_event="signed_up", trigger_conditions={
        "plan": "pro", "vip": True, "seats": 3, "referrer": None, "trial_ends": "2027-01-31",
        "source": {"utm": "mail"}, "tags": ["a", "b"]})
    old = {"plan": "pro", "vip": True, "seats": 3, "trial_ends": "2027-01-31", "source": {"utm": "mail"},
           "tags": ["a", "b"]}
    signups = {
        "match": old,
        "seats-as-float": {**old, "seats": 3.0},
        "not-vip": {**old, "vip": False},
        "vip-as-text": {**old, "vip": "true"},
        "other-plan": {**old, "plan": "basic"},
        "referred": {**old, "referrer": "bob"},
        "other-trial-end": {**old, "trial_ends": "2027-02-01"},
        "other-source": {**old, "source": {"utm": "ads"}},
        "fewer-tags": {**old, "tags": ["a"]},
    }
    for external_id, properties in signups.items():
        event(make_contact(external_id), "signed_up", **properties)

    tick(now)

    assert set(Enrollment.objects.values_list("contact__external_id", flat=True)) == {"match", "seats-as-float"}


def test_publishing_refuses_a_condition_that_does_not_fit_the_propertys_type_naming_it(db):
    EventPropertyDefinition.objects.create(event="order.placed", name="amount", data_type=DataType.NUMBER)
    journey = make_journey(name="R", slug="r", trigger_event="order.placed", trigger_conditions=[
        {"property": "amount", "operator": "at_least", "value": "lots"},
        {"property": "amount", "operator": "starts_with", "value": "1"},
        {"property": "", "operator": "equals", "value": "x"},
        "plan is pro",
        {"property": "plan", "operator": "equals", "value": "pro"},
    ])
    JourneyStep.objects.create(journey=journey, key="done", position=1, kind=StepKind.EXIT)

    assert validate_journey(journey) == [
        "trigger_conditions[0].value must be a number.",
        "trigger_conditions[1].operator must be one of equals, not_equals, less_than, at_most, greater_than, "
        "at_least, between, is_set, is_not_set for a number value.",
        "trigger_conditions[2].property must name a property of the event 'order.placed'.",
        "trigger_conditions[3] must be an object with a property, an operator and a value.",
    ]


# --- the trigger kept on the enrollment ----------------------------------------------------------

@pytest.mark.django_db
def test_an_event_enrollment_keeps_the_events_properties_and_its_messages_can_use_them(welcome_journey, now):
    ann = make_contact("ann", email="ann@example.com")
    signup = event(ann, "signed_up", plan="pro", seats=3)

    tick(now)

    enrollment = Enrollment.objects.get()
    assert enrollment.context["trigger"] == {
        "type": "event", "event": "signed_up", "event_id": signup.pk, "occurred_at": signup.occurred_at.isoformat(),
        "properties": {"plan": "pro", "seats": 3}}
    assert Message.objects.get().variables["trigger"] == {"plan": "pro", "seats": 3}


@pytest.mark.django_db
def test_a_template_reads_the_trigger_properties_of_an_api_enrollment(now):
    # given a journey whose email names the plan the API call enrolled the contact with
    template = Template.objects.create(key="plan-email", name="Plan", purpose="transactional")
    TemplateVariant.objects.create(template=template, channel="email", subject="Your {{ trigger.plan }} plan",
                                   text_body="Hi {{ first_name }}, welcome to {{ trigger.plan }}.")
    publish_template(template)
    journey = make_journey(name="Plan", slug="plan", trigger_type=TriggerType.API)
    JourneyStep.objects.create(journey=journey, key="email", position=1, kind=StepKind.SEND, template=template,
                               channel_plan=[{"channel": "email"}])
    activate_journey(journey)
    ann = make_contact("ann", email="ann@example.com")
    enroll_contact_once(journey, ann, idempotency_key="k1", properties={"plan": "Pro"})

    # when the tick runs her first step and the channel worker sends it
    tick(now + timedelta(seconds=1))
    delivery = Message.objects.get(contact=ann).deliveries.get()
    send_delivery(delivery.pk)

    # then
    delivery.refresh_from_db()
    assert (delivery.status, delivery.subject) == ("sent", "Your Pro plan")


# --- a date in a property of the trigger event ---------------------------------------------------

@pytest.mark.django_db
def test_an_event_with_a_date_property_enrolls_with_the_first_step_due_at_its_moment_on_the_contacts_clock(db):
    # given "the day before the appointment at 09:00", and appointments booked in New York and Berlin,
    # on 1 March 2027: the DST changes the test is about are then still to come, whatever today is
    now = BEFORE_THE_DST_CHANGES
    build_journey(trigger_event="appointment.booked", trigger_date_property="appointment_at",
                  trigger_date_offset_days=-1, trigger_date_time=time(9, 0))
    ny = make_contact("ny", timezone="America/New_York")
    berlin = make_contact("berlin", timezone="Europe/Berlin")
    nobody_knows = make_contact("nobody-knows")
    last_minute = make_contact("last-minute", timezone="Europe/Berlin")
    event(ny, "appointment.booked", occurred_at=now, appointment_at="2027-03-15T15:00:00-04:00")
    event(berlin, "appointment.booked", occurred_at=now, appointment_at="2027-03-29T10:00:00+02:00")
    missing = event(nobody_knows, "appointment.booked", occurred_at=now, appointment_at="next tuesday")
    event(last_minute, "appointment.booked", occurred_at=now, appointment_at=(now + timedelta(hours=2)).isoformat())

    # when the tick processes the bookings
    report = tick(now)

    # then each is in now, due at 09:00 on their own clock the day before (both after their DST
    # change); a booking whose moment already passed runs its first step at once
    due = dict(Enrollment.objects.values_list("contact__external_id", "next_run_at"))
    assert due.pop("last-minute") == now + timedelta(hours=1)  # ran its first step, then waits an hour
    assert due == {"ny": utc(2027, 3, 14, 13, 0), "berlin": utc(2027, 3, 28, 7, 0)}
    assert report.steps == 1
    assert Enrollment.objects.get(contact=ny).context["trigger"]["moment"] == "2027-03-14T13:00:00+00:00"
    assert refusals("date_missing") == [(nobody_knows.pk, {"event": missing.pk, "property": "appointment_at"})]


# --- a date attribute: the tick stage ------------------------------------------------------------

@pytest.fixture
def renewal_journey(db):
    """The day before a contact's renewal_date, at 09:00 on their clock."""
    AttributeDefinition.objects.create(name="renewal_date", data_type=DataType.DATE)
    return build_journey(trigger_type=TriggerType.DATE_ATTRIBUTE, trigger_date_attribute="renewal_date",
                         trigger_date_offset_days=-1, trigger_date_time=time(9, 0))


def fire(now) -> TickReport:
    report = TickReport()
    fire_date_triggers_batch(now, report)
    return report


@pytest.mark.django_db
@pytest.mark.parametrize("zone, renewal_date, moment", [
    # New York moves to daylight time at 02:00 on 14 March 2027: 09:00 that day is 13:00 UTC, not 14:00.
    ("America/New_York", "2027-03-15", utc(2027, 3, 14, 13, 0)),
    ("America/New_York", "2027-03-14", utc(2027, 3, 13, 14, 0)),
    # Berlin moves to summer time at 02:00 on 28 March 2027: 09:00 that day is 07:00 UTC, the day before 08:00.
    ("Europe/Berlin", "2027-03-29", utc(2027, 3, 28, 7, 0)),
    ("Europe/Berlin", "2027-03-28", utc(2027, 3, 27, 8, 0)),
    # a zone a quarter hour off the hour
    ("Asia/Kathmandu", "2027-03-15", utc(2027, 3, 14, 3, 15)),
])
def test_a_date_attribute_fires_at_the_local_time_on_the_contacts_clock_across_dst(renewal_journey, zone,
                                                                                    renewal_date, moment):
    # given a contact whose renewal date's moment is `moment`
    contact = make_contact("ann", timezone=zone, attributes={"renewal_date": renewal_date})

    # when the stage looks a second before the moment, then a minute later, then again later
    before = fire(moment - timedelta(seconds=1))
    at = fire(moment + timedelta(seconds=DATE_CHECK_SECONDS - 1))
    after = fire(moment + timedelta(days=1))

    # then she enters once, after the moment, with the date kept on her enrollment
    assert (before.enrolled, at.enrolled, after.enrolled) == (0, 1, 0)
    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.context["trigger"] == {
        "type": "date", "attribute": "renewal_date", "date": renewal_date, "moment": moment.isoformat(),
        "properties": {"renewal_date": renewal_date}}
    assert enrollment.trigger_key == f"date:{contact.pk}:{renewal_date}"
    entry = AuditEntry.objects.get(action="journey.enrolled")
    assert (entry.contact_id, entry.reason) == (contact.pk, "date:renewal_date")


@pytest.mark.django_db
def test_one_look_enrolls_the_contacts_of_every_zone_whose_moment_passed_and_nobody_else(renewal_journey):
    # given contacts in several zones, the default zone (UTC here) and one without the attribute
    for external_id, zone, renewal in (("ny", "America/New_York", "2027-03-15"),
                                       ("berlin", "Europe/Berlin", "2027-03-15"),
                                       ("tokyo", "Asia/Tokyo", "2027-03-15"),
                                       ("utc", "", "2027-03-15"),
                                       ("ny-later", "America/New_York", "2027-03-16"),
                                       ("no-date", "", None)):
        make_contact(external_id, timezone=zone, attributes={"renewal_date": renewal} if renewal else {})
    fire(utc(2027, 3, 13, 12, 0))

    # when the stage looks at 12:00 UTC on 14 March: 09:00 has passed in Tokyo, Berlin and UTC, not in New York
    fire(utc(2027, 3, 14, 12, 0))
    first = set(Enrollment.objects.values_list("contact__external_id", flat=True))
    fire(utc(2027, 3, 14, 13, 0))

    # then
    assert first == {"berlin", "tokyo", "utc"}
    assert set(Enrollment.objects.values_list("contact__external_id", flat=True)) == {"berlin", "tokyo", "utc", "ny"}


@pytest.mark.django_db
def test_a_date_and_time_fires_on_the_day_it_falls_on_on_the_contacts_clock(db):
    # given "the day before, at 09:00" on a date-and-time attribute, and a value written with an
    # offset far from the contact's: 23:30 on the 15th at UTC-12 is 20:30 on the 16th in Tokyo
    AttributeDefinition.objects.create(name="delivery_at", data_type=DataType.DATETIME)
    build_journey(trigger_type=TriggerType.DATE_ATTRIBUTE, trigger_date_attribute="delivery_at",
                  trigger_date_offset_days=-1, trigger_date_time=time(9, 0))
    make_contact("tokyo", timezone="Asia/Tokyo", attributes={"delivery_at": "2027-03-15T23:30:00-12:00"})
    fire(utc(2027, 3, 14, 23, 59))

    # when the stage looks as 09:00 on the 15th comes in Tokyo (00:00 UTC)
    report = fire(utc(2027, 3, 15, 0, 0))

    # then
    assert report.enrolled == 1
    assert Enrollment.objects.get().context["trigger"]["moment"] == "2027-03-15T00:00:00+00:00"


@pytest.mark.django_db
def test_a_date_fires_once_per_value_even_when_the_window_is_looked_at_again(db):
    # given a journey anyone may re-enter, and Ann who entered for her renewal date and finished
    build_journey(trigger_type=TriggerType.DATE_ATTRIBUTE, trigger_date_attribute="renewal_date",
                  trigger_date_offset_days=-1, trigger_date_time=time(9, 0), reentry=ReentryPolicy.ALWAYS)
    ann = make_contact("ann", timezone="Europe/Berlin", attributes={"renewal_date": "2027-03-29"})
    fire(utc(2027, 3, 28, 6, 0))
    fire(utc(2027, 3, 28, 7, 30))
    Enrollment.objects.update(state="completed")

    # when the stage's watermark is set back (a lost commit, a restored backup) and it looks again
    Journey.objects.update(date_trigger_checked_until=utc(2027, 3, 28, 6, 0))
    again = fire(utc(2027, 3, 28, 7, 45))
    # and when her renewal moves to next year, that date fires in its turn
    Contact.objects.filter(pk=ann.pk).update(attributes={"renewal_date": "2028-03-29"})
    next_year = [fire(utc(2028, 3, 28, 6, 0)), fire(utc(2028, 3, 28, 8, 0))]

    # then the same date never enrolled her twice
    assert again.enrolled == 0
    assert [r.enrolled for r in next_year] == [0, 1]
    assert sorted(Enrollment.objects.values_list("trigger_key", flat=True)) == [
        f"date:{ann.pk}:2027-03-29", f"date:{ann.pk}:2028-03-29"]
    assert AuditEntry.objects.filter(action="journey.enrolled").count() == 2


@pytest.mark.django_db
def test_after_the_tick_stood_still_only_the_last_days_moments_fire(renewal_journey):
    # given the stage last looked on 10 March, and two dates whose moments came since
    for external_id, renewal in (("long-gone", "2027-03-12"), ("within-the-day", "2027-03-14")):
        make_contact(external_id, attributes={"renewal_date": renewal})
    fire(utc(2027, 3, 10, 0, 0))

    # when it looks again at 08:00 on 14 March
    fire(utc(2027, 3, 14, 8, 0))

    # then the moment of the last day (09:00 on the 13th) fires, the older one (the 11th) is skipped
    assert list(Enrollment.objects.values_list("contact__external_id", flat=True)) == ["within-the-day"]


@pytest.mark.django_db
def test_dates_that_came_while_the_journey_was_paused_do_not_fire_when_it_resumes():
    # given a journey at the moment of a date-and-time attribute, looked at an hour ago and paused
    # since, and Ann whose moment came ten minutes ago
    AttributeDefinition.objects.create(name="trial_ends_at", data_type=DataType.DATETIME)
    journey = build_journey(trigger_type=TriggerType.DATE_ATTRIBUTE, trigger_date_attribute="trial_ends_at")
    pause_journey(journey)
    Journey.objects.update(date_trigger_checked_until=timezone.now() - timedelta(hours=1))
    make_contact("ann", attributes={"trial_ends_at": (timezone.now() - timedelta(minutes=10)).isoformat()})

    # when the journey resumes and the stage looks
    resume_journey(Journey.objects.get(pk=journey.pk))
    report = fire(timezone.now() + timedelta(minutes=1))

    # then her moment, which came while it was paused, does not fire
    assert report.enrolled == 0 and not Enrollment.objects.exists()


@pytest.mark.django_db
def test_the_date_stage_looks_at_a_journey_at_most_once_a_minute(renewal_journey):
    make_contact("ann", attributes={"renewal_date": "2027-03-15"})
    fire(utc(2027, 3, 14, 8, 59, 30))

    too_soon = fire(utc(2027, 3, 14, 9, 0, 10))
    in_time = fire(utc(2027, 3, 14, 9, 0, 30))

    assert (too_soon.enrolled, in_time.enrolled) == (0, 1)


@pytest.mark.django_db
def test_a_look_in_which_the_local_time_comes_in_no_zone_reads_no_contact(renewal_journey):
    # given a contact whose date comes at 09:00 UTC, and a look at 09:01
    make_contact("ann", attributes={"renewal_date": "2027-03-15"})
    fire(utc(2027, 3, 14, 9, 1))

    # when the stage looks again at 09:02, then at 09:16 (09:00 has come in zones a quarter hour behind)
    with CaptureQueriesContext(connection) as quiet:
        fire(utc(2027, 3, 14, 9, 2))
    with CaptureQueriesContext(connection) as crossing:
        fire(utc(2027, 3, 14, 9, 16))

    # then only the look crossing a quarter hour read contacts
    assert not any("contacts_contact" in query["sql"] for query in quiet.captured_queries)
    assert any("contacts_contact" in query["sql"] for query in crossing.captured_queries)


@pytest.mark.parametrize("since, now, days", [
    (utc(2027, 3, 14, 8, 59), utc(2027, 3, 14, 9, 0), ["2027-03-14"]),  # 09:00 in UTC
    (utc(2027, 3, 14, 9, 0), utc(2027, 3, 14, 9, 1), []),
    (utc(2027, 3, 14, 3, 14), utc(2027, 3, 14, 3, 15), ["2027-03-14"]),  # in Kathmandu (+05:45)
    # in Honolulu (-10:00) on the 14th and Kiritimati (+14:00) on the 15th
    (utc(2027, 3, 14, 18, 59), utc(2027, 3, 14, 19, 0), ["2027-03-14", "2027-03-15"]),
    # in Baker Island (-12:00) on the 15th and Auckland (+12:00) on the 16th
    (utc(2027, 3, 15, 20, 59), utc(2027, 3, 15, 21, 0), ["2027-03-15", "2027-03-16"]),
    (utc(2027, 3, 15, 21, 0), utc(2027, 3, 15, 21, 1), []),
    (utc(2027, 3, 14, 9, 0), utc(2027, 3, 15, 9, 0), ["2027-03-14", "2027-03-15"]),
])
def test_the_local_days_whose_clock_time_comes_in_a_window(since, now, days):
    assert [day.isoformat() for day in local_days_passing(since, now, time(9, 0))] == days


@pytest.mark.django_db
def test_a_contact_already_in_the_journey_is_refused_by_its_reentry_rules_when_their_date_comes(renewal_journey):
    ann = make_contact("ann", attributes={"renewal_date": "2027-03-15"})
    Enrollment.objects.create(journey=renewal_journey, journey_version=renewal_journey.live_version, contact=ann,
                              current_step_key="first")
    fire(utc(2027, 3, 14, 8, 0))

    fire(utc(2027, 3, 14, 9, 30))

    assert refusals("already_enrolled") == [(ann.pk, {"attribute": "renewal_date"})]
    assert Enrollment.objects.count() == 1


@pytest.mark.django_db
def test_dates_fire_in_a_fixed_number_of_queries_whatever_the_number_of_contacts(renewal_journey):
    def look(count, prefix, day):
        for index in range(count):
            Contact.objects.create(external_id=f"{prefix}{index}", timezone="Europe/Berlin",
                                   attributes={"renewal_date": f"2027-04-{day:02d}"})
        fire(utc(2027, 4, day - 1, 6, 0))
        with CaptureQueriesContext(connection) as captured:
            report = fire(utc(2027, 4, day - 1, 8, 0))
        return len(captured), report.enrolled

    few, many = look(3, "few", 10), look(30, "many", 20)

    assert (few[1], many[1]) == (3, 30)
    assert few[0] == many[0]


@pytest.mark.django_db
def test_the_tick_runs_the_date_stage_and_the_first_step_in_the_same_pass(renewal_journey):
    make_contact("ann", timezone="Europe/Berlin", attributes={"renewal_date": "2027-03-29"})
    tick(utc(2027, 3, 28, 6, 0))

    report = tick(utc(2027, 3, 28, 7, 1))

    assert (report.enrolled, report.steps) == (1, 1)
    assert Enrollment.objects.get().current_step_key == "done"


def test_the_journey_page_says_what_enrolls_contacts_in_each_version(admin_client, renewal_journey):
    EventPropertyDefinition.objects.create(event="order.placed", name="amount", data_type=DataType.NUMBER)
    event_journey = build_journey("orders", trigger_event="order.placed", trigger_max_age_seconds=600,
                                  trigger_conditions=[{"property": "amount", "operator": "at_least", "value": 100},
                                                      {"property": "coupon", "operator": "is_not_set"}],
                                  trigger_date_property="ship_on", trigger_date_offset_days=2)

    date_page = admin_client.get(reverse("admin:campaigns_journey_change", args=[renewal_journey.pk]))
    event_page = admin_client.get(reverse("admin:campaigns_journey_change", args=[event_journey.pk]))

    assert "At 09:00 local time 1 day before the contact&#x27;s renewal_date" in date_page.content.decode()
    assert ("the event order.placed where amount at least 100 and coupon is not set, at most 10 minutes old; the first "
            "step 2 days after its ship_on") in event_page.content.decode()


def test_a_date_trigger_needs_its_attribute_and_a_date_type(db):
    AttributeDefinition.objects.create(name="plan", data_type=DataType.TEXT)
    journey = make_journey(name="R", slug="r", trigger_type=TriggerType.DATE_ATTRIBUTE)
    JourneyStep.objects.create(journey=journey, key="done", position=1, kind=StepKind.EXIT)
    missing = validate_journey(journey)
    Journey.objects.filter(pk=journey.pk).update(trigger_date_attribute="plan")
    journey.refresh_from_db()

    assert missing == ["The trigger 'A date attribute' needs the date attribute: the contact attribute holding "
                       "the date."]
    assert validate_journey(journey) == ["The date attribute 'plan' is declared as Text, not a date: choose a date "
                                         "or date-and-time attribute."]


def test_an_offset_or_a_local_time_without_a_date_is_refused(db):
    journey = make_journey(name="R", slug="r", trigger_event="x", trigger_date_offset_days=1)
    JourneyStep.objects.create(journey=journey, key="done", position=1, kind=StepKind.EXIT)

    assert validate_journey(journey) == [
        'Days from the date and the local time apply to a date: name the date property of the event, or choose '
        'the trigger "A date attribute".']


@pytest.mark.parametrize("value, zone, offset, local_time, moment", [
    # 02:30 does not exist in New York on 14 March 2027: it fires when the clocks jump, at 03:30 EDT
    ("2027-03-14", "America/New_York", 0, time(2, 30), utc(2027, 3, 14, 7, 30)),
    # 01:30 happens twice on 7 November 2027: it fires the first time (EDT)
    ("2027-11-07", "America/New_York", 0, time(1, 30), utc(2027, 11, 7, 5, 30)),
    # a date and time without a local time keeps its own time of day, read on the contact's clock
    ("2027-03-15T15:00:00-04:00", "America/New_York", -1, None, utc(2027, 3, 14, 19, 0)),
    ("2027-03-15T15:00:00Z", "Europe/Berlin", 0, None, utc(2027, 3, 15, 15, 0)),
    ("2027-03-15T15:00:00", "Europe/Berlin", -1, None, utc(2027, 3, 14, 14, 0)),
    ("2027-03-15", "Europe/Berlin", 0, None, utc(2027, 3, 14, 23, 0)),
    ("2027-03-15", "Not/AZone", 2, time(9, 0), utc(2027, 3, 17, 9, 0)),
    ("9999-12-31", "UTC", 1, None, None),
    ("9999-12-31", "America/New_York", 0, time(23, 0), None),
    ("not a date", "Europe/Berlin", 0, None, None),
    ("2027-02-30", "Europe/Berlin", 0, None, None),
    (20270315, "Europe/Berlin", 0, None, None),
])
def test_the_moment_of_a_date_value(value, zone, offset, local_time, moment):
    assert moment_of(value, zone, offset, local_time) == moment


# --- two ticks at once (PostgreSQL: row locks) ---------------------------------------------------

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="row locks between two connections need PostgreSQL; set DATABASE_URL to run it (SQLite serializes writers)",
)


@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_two_ticks_at_once_enroll_each_contact_once():
    # given many contacts whose date came
    AttributeDefinition.objects.create(name="renewal_date", data_type=DataType.DATE)
    build_journey(trigger_type=TriggerType.DATE_ATTRIBUTE, trigger_date_attribute="renewal_date",
                  trigger_date_offset_days=-1, trigger_date_time=time(9, 0))
    Contact.objects.bulk_create([
        Contact(external_id=f"c{index}", timezone=("America/New_York", "Europe/Berlin")[index % 2],
                attributes={"renewal_date": "2027-03-29" if index % 2 else "2027-03-15"})
        for index in range(200)
    ])
    fire(utc(2027, 3, 13, 0, 0))

    # when two ticks look at the same instant, once New Yorkers' date came, then once Berliners' did
    outcomes = []
    for now in (utc(2027, 3, 14, 14, 0), utc(2027, 3, 28, 8, 0)):
        results, errors = run_concurrently(lambda: fire(now).enrolled)
        outcomes.append((sorted(results), errors))

    # then every contact entered once, and was audited once
    assert outcomes == [([0, 100], []), ([0, 100], [])]
    assert Enrollment.objects.count() == 200
    assert not Enrollment.objects.values("contact").annotate(n=Count("pk")).filter(n__gt=1).exists()
    assert AuditEntry.objects.filter(action="journey.enrolled").count() == 200
