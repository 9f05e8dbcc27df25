"""seed_demo's journeys: Welcome, Payment failed and Appointment reminder, each with its
templates, valid and active; created once; a database seeded before them keeps its Welcome; the
demo contacts reach their first steps on the first tick, and at OMNI_DEMO_TIME_SCALE=1440 the
three journeys run to their ends in minutes."""
import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from campaigns.tests.conftest import make_journey
from campaigns.actions import activate_journey, validate_journey
from campaigns.models import Enrollment, EnrollmentState, Journey, JourneyStatus, JourneyStep, JourneyVersion, StepKind
from campaigns.tick import tick
from channels.models import Delivery, Message
from contacts.models import ContactEvent
from omni.models import AuditEntry
from templates.actions import publish_template
from templates.models import Template, TemplateVariant, TemplateVersion

pytestmark = pytest.mark.django_db

DEMO_JOURNEYS = {"welcome", "payment-failed", "appointment-reminder"}


@pytest.fixture(autouse=True)
def demo_settings(settings, tmp_path):
    settings.VAR_DIR = tmp_path  # where seed_demo keeps the logins


def seed_demo() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def steps_of(slug: str) -> list[tuple]:
    """(key, kind, template key, channels, next key, else key) of each step, in order."""
    return [(s.key, s.kind, s.template.key if s.template else None, [e["channel"] for e in s.channel_plan],
             s.next_step.key if s.next_step else None, s.else_step.key if s.else_step else None)
            for s in JourneyStep.objects.filter(journey__slug=slug).select_related("template", "next_step",
                                                                                  "else_step").order_by("position")]


def test_seed_demo_creates_the_three_journeys_with_their_templates_valid_and_active():
    seed_demo()

    journeys = {j.slug: j for j in Journey.objects.all()}
    assert set(journeys) == DEMO_JOURNEYS
    for journey in journeys.values():
        assert journey.status == JourneyStatus.ACTIVE and journey.live_version.number == 1
        assert validate_journey(journey) == []
        # every send step's template is published with a variant for the channel it plans
        for step in journey.steps.filter(kind=StepKind.SEND):
            assert step.channel_plan[0]["channel"] in step.template.latest_version.channels(), step.key
    assert [(j.trigger_event, j.goal_event) for j in (journeys["welcome"], journeys["payment-failed"],
                                                      journeys["appointment-reminder"])] == [
        ("signed_up", "activated"), ("payment_failed", "invoice_paid"), ("appointment_booked", "appointment_attended")]
    assert journeys["welcome"].on_reply == "pause_resume"
    assert steps_of("welcome") == [
        ("welcome-email", "send", "welcome-email", ["email"], "await-activation", None),
        ("await-activation", "wait_event", None, [], "done", "welcome-whatsapp"),
        ("welcome-whatsapp", "send", "welcome-whatsapp", ["whatsapp"], "until-day-7", None),
        ("until-day-7", "wait", None, [], "welcome-sms", None),
        ("welcome-sms", "send", "welcome-sms", ["sms"], "done", None),
        ("done", "exit", None, [], None, None),
    ]
    assert steps_of("payment-failed") == [
        ("payment-failed-email", "send", "payment-failed-email", ["email"], "await-payment", None),
        ("await-payment", "wait_event", None, [], "done", "still-unpaid-sms"),
        ("still-unpaid-sms", "send", "payment-failed-sms", ["sms"], "done", None),
        ("done", "exit", None, [], None, None),
    ]
    assert steps_of("appointment-reminder") == [
        ("day-before", "wait_date", None, [], "reminder-sms", "done"),
        ("reminder-sms", "send", "appointment-reminder-sms", ["sms"], "appointment-time", None),
        ("appointment-time", "wait_date", None, [], "await-attendance", "done"),
        ("await-attendance", "wait_event", None, [], "done", "missed-sms"),
        ("missed-sms", "send", "appointment-missed-sms", ["sms"], "done", None),
        ("done", "exit", None, [], None, None),
    ]
    waits = {s.key: s.config for s in JourneyStep.objects.filter(journey__slug="appointment-reminder")}
    assert waits["day-before"] == {"property": "appointment_at", "offset_seconds": -86400}
    assert waits["await-attendance"] == {"event": "appointment_attended", "timeout_seconds": 7200}
    assert JourneyStep.objects.get(key="await-activation").config == {"event": "activated", "timeout_seconds": 259200}


def counts() -> dict:
    return {model._meta.label: model.objects.count() for model in (
        Journey, JourneyStep, JourneyVersion, Template, TemplateVariant, TemplateVersion, ContactEvent, Enrollment,
        Message, AuditEntry)}


def test_running_seed_demo_twice_changes_nothing():
    seed_demo()
    first = counts()
    booking = ContactEvent.objects.get(name="appointment_booked").properties

    seed_demo()

    assert counts() == first
    assert ContactEvent.objects.get(name="appointment_booked").properties == booking


def test_a_welcome_journey_seeded_earlier_is_left_as_it_was():
    # given a database seeded before these journeys: its Welcome emails, waits 20 s, then texts
    template = Template.objects.create(key="welcome-email", name="Welcome email", purpose="marketing")
    TemplateVariant.objects.create(template=template, channel="email", subject="Hi",
                                   text_body="Hi. Unsubscribe: {{ unsubscribe_url }}")
    publish_template(template)
    old = make_journey(name="Welcome", slug="welcome", trigger_event="signed_up")
    JourneyStep.objects.create(journey=old, key="welcome-email", position=1, kind=StepKind.SEND, template=template,
                               channel_plan=[{"channel": "email"}])
    JourneyStep.objects.create(journey=old, key="short-wait", position=2, kind=StepKind.WAIT, config={"seconds": 20})
    activate_journey(old)
    before = steps_of("welcome")

    # when seed_demo runs
    seed_demo()

    # then the old Welcome keeps its steps and version, and the two new journeys are added
    assert steps_of("welcome") == before
    assert list(JourneyVersion.objects.filter(journey=old).values_list("number", flat=True)) == [1]
    assert Journey.objects.get(slug="welcome").goal_event == "goal-reached"  # not the new Welcome's "activated"
    assert set(Journey.objects.values_list("slug", flat=True)) == DEMO_JOURNEYS


def enrollment(slug: str, name: str) -> Enrollment:
    return Enrollment.objects.get(journey__slug=slug, contact__first_name=name)


def sent(template_key: str) -> set[str]:
    """Who got a delivery of the template's messages, by first name."""
    return set(Delivery.objects.filter(message__template_version__template__key=template_key)
               .values_list("contact__first_name", flat=True))


def test_the_demo_contacts_reach_the_first_steps_when_the_tick_runs(eager_celery):
    seed_demo()

    tick()

    # Welcome: emailed, now waiting for activation; Bob's question holds his; Carol activated
    for name in ("Alice", "Dave", "Erin"):
        assert (enrollment("welcome", name).current_step_key, enrollment("welcome", name).waiting_for) == (
            "await-activation", "event:activated")
    assert sent("welcome-email") == {"Alice", "Dave", "Erin"}
    assert enrollment("welcome", "Bob").state == EnrollmentState.PAUSED
    assert (enrollment("welcome", "Carol").state, enrollment("welcome", "Carol").end_reason) == (
        EnrollmentState.CONVERTED, "goal:activated")
    # Payment failed: Alice is emailed, and the journey waits for her invoice to be paid
    assert sent("payment-failed-email") == {"Alice"}
    assert enrollment("payment-failed", "Alice").waiting_for == "event:invoice_paid"
    # Appointment reminder: Erin's reminder is due the day before her appointment, two days ahead
    erin = enrollment("appointment-reminder", "Erin")
    starts = parse_datetime(ContactEvent.objects.get(name="appointment_booked").properties["appointment_at"])
    assert (erin.current_step_key, erin.next_run_at) == ("reminder-sms", starts - timedelta(days=1))
    assert starts - timezone.now() > timedelta(days=1, hours=23)


def test_at_scale_1440_the_three_journeys_run_in_minutes(settings, eager_celery):
    # given the demo seeded on the demo's clock: a day lasts a minute
    settings.OMNI_DEMO_TIME_SCALE = 1440
    seed_demo()
    booked = ContactEvent.objects.get(name="appointment_booked")
    starts = parse_datetime(booked.properties["appointment_at"])
    assert timedelta(seconds=119) <= starts - booked.occurred_at <= timedelta(minutes=2)  # two days, scaled
    start = timezone.now()
    tick(start)

    # a minute before the appointment (a day, scaled), Erin is reminded, then waits for it
    tick(starts - timedelta(seconds=59))
    assert sent("appointment-reminder-sms") == {"Erin"}
    assert (enrollment("appointment-reminder", "Erin").current_step_key,
            enrollment("appointment-reminder", "Erin").next_run_at) == ("await-attendance", starts)
    # from its start she has 5 s (2 hours, scaled) to attend; she does not: the follow-up goes
    tick(starts + timedelta(seconds=1))
    assert enrollment("appointment-reminder", "Erin").waiting_for == "event:appointment_attended"
    tick(starts + timedelta(seconds=7))
    assert sent("appointment-missed-sms") == {"Erin"}
    assert enrollment("appointment-reminder", "Erin").state == EnrollmentState.EXITED

    # three days (three minutes) in: WhatsApp to those who did not activate, SMS to Alice still unpaid
    tick(start + timedelta(minutes=3, seconds=5))
    assert sent("welcome-whatsapp") == {"Alice", "Dave", "Erin"}
    assert sent("payment-failed-sms") == {"Alice"}
    assert enrollment("payment-failed", "Alice").state == EnrollmentState.EXITED

    # day seven (minute seven): the welcome SMS, and the Welcome ends
    tick(start + timedelta(minutes=7, seconds=10))
    assert sent("welcome-sms") >= {"Alice", "Dave"}
    assert {enrollment("welcome", name).state for name in ("Alice", "Dave", "Erin")} == {EnrollmentState.EXITED}
