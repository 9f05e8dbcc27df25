from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.tick import tick
from campaigns.actions import (enroll_contact, pause_enrollment, pause_journey, publish_journey, resume_enrollment,
                               resume_journey)
from campaigns.models import Enrollment, EnrollmentState, JourneyStepVisit
from channels import routing
from channels.delivery import send_delivery
from channels.models import Delivery, DeliveryStatus, Message, MessageStatus, OutboxMessage
from compliance.actions import record_consent_change
from compliance.models import Decision, SendingPause
from omni.models import AuditEntry
from contacts.models import ContactEvent
from templates.actions import current_version, publish_template
from templates.models import Template, TemplateVariant

from .conftest import make_contact

pytestmark = pytest.mark.django_db


def signed_up(contact, key=None, name="signed_up", **properties):
    return ContactEvent.objects.create(contact=contact, name=name, properties=properties,
                                       idempotency_key=key or f"{name}-{contact.external_id}", source="test")


def run_tick(capture, now):
    with capture(execute=True):
        return tick(now)


def test_an_event_enrolls_the_contact_and_sends_the_first_email(welcome_journey, now):
    ann = make_contact("ann", email="ann@example.com", phone="+14155550101")
    signed_up(ann)

    report = tick(now)

    enrollment = Enrollment.objects.get(contact=ann)
    message = Message.objects.get(contact=ann)
    delivery = message.deliveries.get()
    assert (report.events, report.enrolled) == (1, 1)
    assert enrollment.state == EnrollmentState.ACTIVE and enrollment.current_step_key == "opened"
    assert enrollment.next_run_at == now + timedelta(seconds=60)
    assert (delivery.channel, delivery.to_address) == ("email", "ann@example.com")
    assert delivery.status == DeliveryStatus.QUEUED and message.status == MessageStatus.QUEUED
    # the channel worker renders it when it sends, for the contact as they are then
    assert delivery.subject == ""
    send_delivery(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.subject) == (DeliveryStatus.SENT, "Welcome, Ann!")
    actions = set(AuditEntry.objects.filter(contact_id=ann.pk).values_list("action", flat=True))
    assert {"journey.enrolled", "gate.allow"} <= actions
    visit = JourneyStepVisit.objects.get(enrollment=enrollment, step_kind="send")
    assert (visit.step_key, visit.visit_number, visit.message, visit.outcome) == ("welcome-email", 1, message, "queued")
    decision = Decision.objects.get(message_id=message.pk)
    assert (decision.outcome, decision.channel, decision.reason) == ("allow", "email", "consent:granted")
    assert decision.consent_change_id is not None
    assert ContactEvent.objects.get().processed_at == now


def test_the_tick_audits_each_received_event_once_dated_when_it_was_received(welcome_journey, now):
    ann = make_contact("ann", email="ann@example.com")
    triggering = ContactEvent.objects.create(contact=ann, name="signed_up", idempotency_key="1", source="api",
                                             sent_by="apikey:abc", received_at=now - timedelta(minutes=5))
    other = ContactEvent.objects.create(contact=ann, name="page.viewed", idempotency_key="2", source="twilio")

    tick(now)
    tick(now + timedelta(seconds=1))

    entries = {e.object_id: e for e in AuditEntry.objects.filter(action="event.received")}
    assert set(entries) == {str(triggering.pk), str(other.pk)}
    first = entries[str(triggering.pk)]
    assert (first.contact_id, first.object_type, first.actor_label, first.data, first.occurred_at) == (
        ann.pk, "contacts.contactevent", "apikey:abc", {"name": "signed_up"}, now - timedelta(minutes=5))
    assert entries[str(other.pk)].actor_label == "twilio"


def test_a_second_tick_and_a_repeated_event_change_nothing(welcome_journey, now):
    ann = make_contact("ann", email="ann@example.com", phone="+14155550101")
    signed_up(ann)
    tick(now)

    signed_up(ann, key="second-signup")
    tick(now + timedelta(seconds=1))

    assert Enrollment.objects.count() == 1 and Message.objects.count() == 1
    refusal = AuditEntry.objects.get(action="journey.enrollment_refused")
    assert refusal.reason == "already_enrolled"


def test_trigger_conditions_filter_on_event_properties(welcome_journey, now):
    welcome_journey.trigger_conditions = {"plan": "pro"}
    welcome_journey.save()
    publish_journey(welcome_journey)
    ann = make_contact("ann", email="ann@example.com")
    bob = make_contact("bob", email="bob@example.com")
    signed_up(ann, plan="trial")
    signed_up(bob, plan="pro")

    tick(now)

    assert list(Enrollment.objects.values_list("contact__external_id", flat=True)) == ["bob"]


def test_without_engagement_the_sms_follows_after_the_wait(welcome_journey, now, eager_celery,
                                                           django_capture_on_commit_callbacks):
    bob = make_contact("bob", email="bob@example.com", phone="+14155550102")
    signed_up(bob)
    run_tick(django_capture_on_commit_callbacks, now)
    assert Message.objects.get(contact=bob).deliveries.get().status == DeliveryStatus.DELIVERED

    run_tick(django_capture_on_commit_callbacks, now + timedelta(seconds=30))
    assert Message.objects.filter(contact=bob).count() == 1

    run_tick(django_capture_on_commit_callbacks, now + timedelta(seconds=61))
    sms = Delivery.objects.get(contact=bob, channel="sms")
    assert sms.text_body == "Hi Bob, did you see our email? Reply STOP to opt out."
    assert OutboxMessage.objects.filter(channel="sms", to_address="+14155550102").exists()
    enrollment = Enrollment.objects.get(contact=bob)
    assert (enrollment.state, enrollment.end_reason) == (EnrollmentState.EXITED, "exit:done")


def test_an_opened_email_skips_the_sms(welcome_journey, now, eager_celery, django_capture_on_commit_callbacks):
    alice = make_contact("alice", email="alice+open@example.com", phone="+14155550101")
    signed_up(alice)
    run_tick(django_capture_on_commit_callbacks, now)

    run_tick(django_capture_on_commit_callbacks, now + timedelta(seconds=61))

    assert not Delivery.objects.filter(contact=alice, channel="sms").exists()
    assert JourneyStepVisit.objects.filter(enrollment__contact=alice, step_kind="condition", outcome="true").exists()
    assert Enrollment.objects.get(contact=alice).state == EnrollmentState.EXITED


def test_a_goal_event_converts_the_enrollment_wherever_it_is(welcome_journey, now):
    ann = make_contact("ann", email="ann@example.com", phone="+14155550101")
    signed_up(ann)
    tick(now)

    signed_up(ann, name="purchased")
    tick(now + timedelta(seconds=61))

    enrollment = Enrollment.objects.get(contact=ann)
    assert (enrollment.state, enrollment.end_reason) == (EnrollmentState.CONVERTED, "goal:purchased")
    assert Message.objects.filter(contact=ann).count() == 1


def test_a_paused_journey_holds_enrollments_until_resumed(welcome_journey, now):
    ann = make_contact("ann", email="ann@example.com", phone="+14155550101")
    signed_up(ann)
    tick(now)
    pause_journey(welcome_journey)

    tick(now + timedelta(seconds=61))
    assert Message.objects.filter(contact=ann).count() == 1

    resume_journey(welcome_journey)
    tick(now + timedelta(seconds=62))
    assert Message.objects.filter(contact=ann).count() == 2


def test_marketing_without_consent_is_suppressed_and_audited(welcome_journey, now):
    dan = make_contact("dan", email="dan@example.com", consents=())
    signed_up(dan)

    tick(now)

    message = Message.objects.get(contact=dan)
    assert message.status == MessageStatus.SUPPRESSED and message.status_reason == "no_eligible_channel"
    [decision] = Decision.objects.filter(message_id=message.pk)
    assert (decision.channel, decision.outcome, decision.reason) == ("email", "suppress", "no_marketing_consent")
    undeliverable = AuditEntry.objects.get(contact_id=dan.pk, action="message.undeliverable")
    assert undeliverable.data["skipped"] == [{"channel": "email", "reason": "no_marketing_consent"}]
    assert not Delivery.objects.exists()


def test_opting_out_of_email_never_moves_the_content_to_sms(welcome_templates, now):
    email_template, _ = welcome_templates
    ann = make_contact("ann", email="ann@example.com", phone="+14155550101")
    record_consent_change(ann, "email", "marketing", "revoked", "unsubscribe_link")
    message, _ = routing.create_message(
        contact=ann, template_version=current_version(email_template), source="api",
        channel_plan=[{"channel": "email"}, {"channel": "sms"}],
    )

    routing.dispatch(message, now=now)

    message.refresh_from_db()
    assert (message.status, message.status_reason) == (MessageStatus.SUPPRESSED, "opted_out")
    assert not Delivery.objects.exists()
    [verdict] = Decision.objects.filter(message_id=message.pk)
    assert (verdict.channel, verdict.outcome, verdict.reason) == ("email", "suppress", "opted_out")
    assert verdict.consent_change_id is not None
    assert AuditEntry.objects.get(action="gate.suppress").data["digest"] == verdict.digest


def test_a_channel_the_contact_cannot_be_reached_on_is_skipped(welcome_templates, now):
    email_template, _ = welcome_templates
    ann = make_contact("ann", phone="+14155550101")
    message, _ = routing.create_message(
        contact=ann, template_version=current_version(email_template), source="api",
        channel_plan=[{"channel": "email"}, {"channel": "sms"}],
    )

    delivery = routing.dispatch(message, now=now)

    assert delivery.channel == "sms" and message.plan_step == 1
    send_delivery(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.text_body == "Hi Ann, welcome (sms). Reply STOP to opt out."


def test_content_is_rendered_when_sent_for_the_contact_as_they_are_then(welcome_templates, now):
    email_template, _ = welcome_templates
    ann = make_contact("ann", email="ann@example.com")
    message, _ = routing.create_message(
        contact=ann, template_version=current_version(email_template), source="api",
        channel_plan=[{"channel": "email"}],
    )
    delivery = routing.dispatch(message, now=now)

    ann.first_name = "Annie"
    ann.save()
    send_delivery(delivery.pk)

    assert OutboxMessage.objects.get().subject == "Welcome, Annie!"


def test_a_missing_template_variable_sends_nothing(welcome_templates, now):
    template = Template.objects.create(key="code", name="Code", purpose="transactional", allow_fallback=False)
    TemplateVariant.objects.create(template=template, channel="sms", text_body="Your code is {{ code }}")
    ann = make_contact("ann", phone="+14155550101", consents=())
    message, _ = routing.create_message(
        contact=ann, template_version=publish_template(template), source="api", channel_plan=[{"channel": "sms"}],
    )

    delivery = routing.dispatch(message, now=now)
    send_delivery(delivery.pk)

    message.refresh_from_db()
    delivery.refresh_from_db()
    assert (message.status, message.status_reason) == (MessageStatus.FAILED, "render_error:text_body")
    assert (delivery.status, delivery.error_code, delivery.text_body) == (DeliveryStatus.FAILED, "render_error", "")
    assert not OutboxMessage.objects.exists()
    entry = AuditEntry.objects.get(action="message.render_failed")
    assert (entry.object_id, entry.data["field"]) == (str(message.pk), "text_body")


def test_a_hard_bounce_falls_back_to_the_next_channel(welcome_templates, now, eager_celery,
                                                      django_capture_on_commit_callbacks):
    email_template, _ = welcome_templates
    eve = make_contact("eve", email="bounce@simulator.amazonses.com", phone="+14155550105")
    message, _ = routing.create_message(
        contact=eve, template_version=current_version(email_template), source="api",
        channel_plan=[{"channel": "email"}, {"channel": "sms"}],
    )

    with django_capture_on_commit_callbacks(execute=True):
        routing.dispatch(message, now=now)
    # the bounce report made the fallback due; the tick runs it
    assert message.deliveries.count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        tick(timezone.now())

    email, sms = message.deliveries.order_by("pk")
    assert email.status == DeliveryStatus.BOUNCED and sms.channel == "sms"
    assert AuditEntry.objects.filter(action="message.fell_back", object_id=str(message.pk)).count() == 1
    # The dead address is suppressed: a later email is skipped for it.
    assert eve.suppressions.filter(channel="email").exists()


def test_a_template_that_forbids_fallback_fails_instead(welcome_templates, now):
    template = Template.objects.create(key="otp", name="OTP", purpose="transactional", allow_fallback=False)
    TemplateVariant.objects.create(template=template, channel="email", subject="Code", text_body="123456")
    TemplateVariant.objects.create(template=template, channel="sms", text_body="123456")
    ann = make_contact("ann", email="ann@example.com", phone="+14155550101")
    message, _ = routing.create_message(
        contact=ann, template_version=publish_template(template), source="api",
        channel_plan=[{"channel": "email"}, {"channel": "sms"}],
    )
    delivery = routing.dispatch(message, now=now)

    routing.fall_back(delivery, "bounced")
    routing.fall_back(delivery, "bounced")

    message.refresh_from_db()
    assert (message.status, message.status_reason) == (MessageStatus.FAILED, "fallback_forbidden_by_template")
    assert message.deliveries.count() == 1


def test_a_silent_channel_falls_back_when_its_timer_ends(welcome_templates, now):
    email_template, _ = welcome_templates
    ann = make_contact("ann", email="ann@example.com", phone="+14155550101")
    message, _ = routing.create_message(
        contact=ann, template_version=current_version(email_template), source="api",
        channel_plan=[{"channel": "email", "fallback_after_seconds": 600}, {"channel": "sms"}],
    )
    email = routing.dispatch(message, now=now)
    assert email.fallback_due_at == now + timedelta(seconds=600)

    tick(now + timedelta(seconds=599))
    assert message.deliveries.count() == 1

    report = tick(now + timedelta(seconds=600))
    assert report.fallbacks == 1
    assert list(message.deliveries.order_by("pk").values_list("channel", flat=True)) == ["email", "sms"]


def test_a_paused_channel_defers_and_the_tick_sends_once_it_is_resumed(welcome_templates, now):
    email_template, _ = welcome_templates
    ann = make_contact("ann", email="ann@example.com")
    pause = SendingPause.objects.create(channel="email", reason="incident")
    message, _ = routing.create_message(
        contact=ann, template_version=current_version(email_template), source="api", channel_plan=[{"channel": "email"}],
    )

    routing.dispatch(message, now=now)
    message.refresh_from_db()
    assert message.status == MessageStatus.DEFERRED

    pause.resumed_at = now
    pause.save()
    tick(now + timedelta(minutes=6))

    message.refresh_from_db()
    assert message.status == MessageStatus.QUEUED and message.deliveries.count() == 1


def test_a_deferred_message_of_a_paused_journey_waits_and_goes_after_the_resume(welcome_journey):
    enroll_contact(welcome_journey, make_contact("ann", email="ann@example.com"))
    now = timezone.now()
    tick(now)
    # Deferred by the gate (quiet hours) until an hour from now.
    Message.objects.update(status=MessageStatus.DEFERRED, defer_until=now + timedelta(hours=1))
    pause_journey(welcome_journey)

    later = now + timedelta(hours=2)
    paused = tick(later)

    message = Message.objects.get()
    # (its first delivery is the one it had before it was deferred)
    assert (paused.redispatched, message.status, message.deliveries.count()) == (0, MessageStatus.DEFERRED, 1)

    resume_journey(welcome_journey)
    resumed = tick(later)

    message.refresh_from_db()
    assert (resumed.redispatched, message.status, message.deliveries.count()) == (1, MessageStatus.QUEUED, 2)


def test_a_deferred_message_of_a_paused_enrollment_waits_and_goes_after_the_resume(welcome_journey):
    enrollment = enroll_contact(welcome_journey, make_contact("ann", email="ann@example.com"))
    now = timezone.now()
    tick(now)
    Message.objects.update(status=MessageStatus.DEFERRED, defer_until=now + timedelta(hours=1))
    pause_enrollment(enrollment, reason="Ann wrote in")

    later = now + timedelta(hours=2)
    paused = tick(later)

    message = Message.objects.get()
    assert (paused.redispatched, message.status) == (0, MessageStatus.DEFERRED)

    resume_enrollment(Enrollment.objects.get(pk=enrollment.pk), reason="answered")
    resumed = tick(later)

    message.refresh_from_db()
    assert (resumed.redispatched, message.status) == (1, MessageStatus.QUEUED)


def test_manual_enrollment_refuses_a_second_live_one(welcome_journey):
    ann = make_contact("ann", email="ann@example.com")
    enroll_contact(welcome_journey, ann)

    with pytest.raises(Exception, match="already in"):
        enroll_contact(welcome_journey, ann)
