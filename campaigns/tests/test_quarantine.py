"""Nothing stalls the tick: it always returns, and a row it cannot process is quarantined with
its reason while the rest of its batch goes on; the admin shows it and retries it."""
import signal
from contextlib import contextmanager
from datetime import timedelta

import pgtrigger
import pytest
from django.urls import reverse

from campaigns import advancing, steps

from campaigns.tick import tick
from campaigns.actions import publish_journey
from campaigns.models import Enrollment, EnrollmentState, JourneyVersion
from channels.models import Delivery, DeliveryStatus, Message, MessageStatus
from contacts.models import ContactEvent
from omni.models import AuditEntry
from templates.models import TemplateVersion

from .conftest import make_contact

pytestmark = pytest.mark.django_db


@contextmanager
def returns_within(seconds: int):
    """Fail the test, rather than hang it, when the block runs longer than `seconds`."""
    def give_up(signum, frame):
        raise TimeoutError(f"did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def signed_up(contact, **properties):
    return ContactEvent.objects.create(contact=contact, name="signed_up", properties=properties,
                                       idempotency_key=f"signed_up-{contact.external_id}", source="test")


def with_steps(version, steps):
    """Change a published version's steps in place, as bad data or a hand-made change would
    (on PostgreSQL past the trigger that refuses it)."""
    with pgtrigger.ignore("campaigns.JourneyVersion:protect_published_update"):
        JourneyVersion.objects.filter(pk=version.pk).update(steps=steps)


def test_a_batch_of_looping_enrollments_does_not_stop_the_tick_and_is_quarantined_after_three_ticks(
    welcome_journey, now, monkeypatch,
):
    # given a full batch of enrollments on a version whose condition loops on itself without a wait
    monkeypatch.setattr(advancing, "ENROLLMENT_BATCH", 2)
    with_steps(welcome_journey.live_version, [
        {"key": "spin", "kind": "condition", "config": {"check": "attribute", "name": "vip", "equals": True},
         "next": "done", "else": "spin"},
        {"key": "done", "kind": "exit"},
    ])
    for name in ("ann", "bob"):
        signed_up(make_contact(name, email=f"{name}@example.com"))

    # when the tick runs
    with returns_within(20):
        first = tick(now)

    # then it returned, having run each enrollment's steps once, and looks again next tick
    assert first.steps == 2 * steps.MAX_STEPS_PER_RUN
    assert list(Enrollment.objects.values_list("loop_ticks", "quarantined_at")) == [(1, None), (1, None)]

    # when two more ticks find them still looping
    with returns_within(20):
        tick(now + timedelta(seconds=1))
        third = tick(now + timedelta(seconds=2))
        fourth = tick(now + timedelta(seconds=3))

    # then they are quarantined, saying why, and no longer run
    assert third.quarantined == 2 and fourth.steps == 0
    for enrollment in Enrollment.objects.all():
        assert enrollment.quarantined_at == now + timedelta(seconds=2)
        assert enrollment.quarantine_reason.startswith("Loop: ran 25 steps without a wait in each of 3 ticks")
    assert AuditEntry.objects.filter(action="tick.quarantined", reason="enrollments").count() == 2


@pytest.mark.parametrize("bad_step, error", [
    ({"key": "opened", "kind": "condition", "config": {"check": "bogus"}}, "ValueError: Unknown condition 'bogus'."),
    ({"key": "opened", "kind": "wait", "config": {"seconds": "tomorrow"}}, "ValueError: invalid literal for int()"),
    ({"key": "opened", "kind": "send", "template_version": 987654, "channel_plan": [{"channel": "sms"}]},
     "KeyError: 987654"),
])
def test_an_enrollment_whose_step_fails_is_quarantined_and_the_rest_of_the_batch_goes_on(
    welcome_journey, now, bad_step, error,
):
    # given three contacts who got the welcome email and now wait for the condition
    contacts = [make_contact(name, email=f"{name}@example.com", phone=f"+1415555010{i}")
                for i, name in enumerate(("ann", "bob", "cy"))]
    for contact in contacts:
        signed_up(contact)
    tick(now)
    # and bob's enrollment pinned to a version whose next step cannot run
    v1 = welcome_journey.live_version
    broken = JourneyVersion.objects.create(
        journey=welcome_journey, number=v1.number + 1, trigger_type=v1.trigger_type, reentry=v1.reentry,
        steps=[bad_step if step["key"] == "opened" else step for step in v1.steps],
    )
    Enrollment.objects.filter(contact=contacts[1]).update(journey_version=broken)

    # when the wait is over
    report = tick(now + timedelta(seconds=61))

    # then ann and cy got their SMS; bob is quarantined with the error, untouched otherwise
    assert report.quarantined == 1
    by_name = {e.contact.external_id: e for e in Enrollment.objects.select_related("contact")}
    assert Message.objects.filter(deliveries__channel="sms").count() == 2
    for name in ("ann", "cy"):
        assert by_name[name].quarantined_at is None and by_name[name].state == EnrollmentState.EXITED
    bob = by_name["bob"]
    assert bob.quarantine_reason.startswith(error)
    assert (bob.state, bob.current_step_key, bob.steps_taken) == (EnrollmentState.ACTIVE, "opened", 2)

    # and later ticks do not claim it again
    assert tick(now + timedelta(seconds=62)).steps == 0


def test_an_event_that_cannot_be_processed_is_quarantined_and_the_others_enroll(welcome_journey, now):
    # given a journey filtering on an event property, a good event and one whose properties are not an object
    welcome_journey.trigger_conditions = {"plan": "pro"}
    welcome_journey.save()
    publish_journey(welcome_journey)
    ann, bob = make_contact("ann", email="ann@example.com"), make_contact("bob", email="bob@example.com")
    good = signed_up(ann, plan="pro")
    bad = ContactEvent.objects.create(contact=bob, name="signed_up", properties=["pro"], idempotency_key="bad",
                                      source="test")

    # when the tick runs
    report = tick(now)

    # then ann is enrolled and her event processed; bob's event is quarantined, unprocessed
    assert (report.events, report.enrolled, report.quarantined) == (1, 1, 1)
    good.refresh_from_db()
    bad.refresh_from_db()
    assert good.processed_at == now and Enrollment.objects.get().contact == ann
    assert bad.processed_at is None and bad.quarantine_reason.startswith("AttributeError")
    assert tick(now + timedelta(seconds=1)).quarantined == 0


def test_a_deferred_message_that_cannot_be_routed_is_quarantined_and_the_others_go_out(welcome_templates, now):
    ann = make_contact("ann", email="ann@example.com")
    version = TemplateVersion.objects.filter(template=welcome_templates[0]).latest("number")

    def deferred(plan):
        return Message.objects.create(contact=ann, purpose="marketing", template_version=version, source="api",
                                      channel_plan=plan, status=MessageStatus.DEFERRED,
                                      defer_until=now - timedelta(minutes=1))

    good, bad = deferred([{"channel": "email"}]), deferred([{"medium": "email"}])

    report = tick(now)

    good.refresh_from_db()
    bad.refresh_from_db()
    assert (report.redispatched, report.quarantined) == (1, 1)
    assert good.status == MessageStatus.QUEUED and good.deliveries.count() == 1
    assert (bad.status, bad.quarantine_reason) == (MessageStatus.DEFERRED, "KeyError: 'channel'")


def test_a_fallback_timer_that_fails_is_quarantined_and_the_others_fire(welcome_templates, now):
    ann = make_contact("ann", email="ann@example.com", phone="+14155550101")
    version = TemplateVersion.objects.filter(template=welcome_templates[0]).latest("number")

    def failed_email(plan):
        message = Message.objects.create(contact=ann, purpose="marketing", template_version=version, source="api",
                                         channel_plan=plan, status=MessageStatus.SENT)
        return Delivery.objects.create(message=message, contact=ann, channel="email", provider="sandbox",
                                       to_address=ann.email, status=DeliveryStatus.FAILED,
                                       fallback_due_at=now - timedelta(seconds=1))

    good = failed_email([{"channel": "email"}, {"channel": "sms"}])
    bad = failed_email(["email", "sms"])

    report = tick(now)

    good.refresh_from_db()
    bad.refresh_from_db()
    assert (report.fallbacks, report.quarantined) == (1, 1)
    assert good.message.deliveries.filter(channel="sms").exists() and good.quarantined_at is None
    assert bad.quarantine_reason.startswith("TypeError") and bad.fallback_due_at is not None


def test_the_admin_lists_quarantined_enrollments_with_their_reason_and_retries_them(
    admin_client, welcome_journey, now, django_assert_max_num_queries,
):
    # given a quarantined enrollment among others
    contacts = [make_contact(f"c{i}", email=f"c{i}@example.com") for i in range(6)]
    for contact in contacts:
        signed_up(contact)
    tick(now)
    stuck = Enrollment.objects.get(contact=contacts[0])
    Enrollment.objects.filter(pk=stuck.pk).update(quarantined_at=now, quarantine_reason="KeyError: 987654",
                                                 loop_ticks=3, next_run_at=now)
    url = reverse("admin:campaigns_enrollment_changelist")

    # when an operator filters on "Quarantined"
    with django_assert_max_num_queries(13):  # 12, and the two-factor check of every admin page
        page = admin_client.get(url, {"quarantined": "yes"})

    # then only it is listed, with its reason
    assert page.status_code == 200
    assert list(page.context["cl"].result_list) == [stuck]
    assert "KeyError: 987654" in page.content.decode()

    # when the operator retries it
    admin_client.post(url, {"action": "retry_quarantined", "_selected_action": [stuck.pk]})

    # then it is out of quarantine, audited with the operator's name, and the next tick runs it
    stuck.refresh_from_db()
    assert (stuck.quarantined_at, stuck.quarantine_reason, stuck.loop_ticks) == (None, "", 0)
    entry = AuditEntry.objects.get(action="tick.quarantine_retried")
    assert (entry.object_id, entry.actor_label) == (str(stuck.pk), "admin")
    assert tick(now + timedelta(seconds=1)).steps == 3  # its condition, the SMS and the exit


@pytest.mark.parametrize("admin_name, quarantined_row", [
    ("contacts_contactevent", "event"), ("channels_message", "message"), ("channels_delivery", "delivery"),
])
def test_quarantined_events_messages_and_deliveries_are_listed_and_retried_in_the_admin(
    admin_client, welcome_templates, now, admin_name, quarantined_row,
):
    ann = make_contact("ann", email="ann@example.com")
    version = TemplateVersion.objects.filter(template=welcome_templates[0]).latest("number")
    event = signed_up(ann)
    message = Message.objects.create(contact=ann, purpose="marketing", template_version=version, source="api",
                                     channel_plan=[{"channel": "email"}], status=MessageStatus.DEFERRED,
                                     defer_until=now)
    delivery = Delivery.objects.create(message=message, contact=ann, channel="email", provider="sandbox",
                                       to_address=ann.email)
    row = {"event": event, "message": message, "delivery": delivery}[quarantined_row]
    type(row).objects.filter(pk=row.pk).update(quarantined_at=now, quarantine_reason="ValueError: bad date")
    url = reverse(f"admin:{admin_name}_changelist")

    page = admin_client.get(url, {"quarantined": "yes"})
    assert list(page.context["cl"].result_list) == [row]
    assert "ValueError: bad date" in page.content.decode()

    admin_client.post(url, {"action": "retry_quarantined", "_selected_action": [row.pk]})

    row.refresh_from_db()
    assert row.quarantined_at is None
    assert AuditEntry.objects.filter(action="tick.quarantine_retried", object_id=str(row.pk)).count() == 1
