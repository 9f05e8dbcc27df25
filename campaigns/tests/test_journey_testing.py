"""Test contacts and journeys in testing: who a testing journey enrolls by each trigger, test
sends past caps and quiet hours but not past consent, skipping a test contact's wait, cloning."""
from datetime import datetime, time, timedelta, timezone as dt_timezone

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from campaigns.tests.conftest import make_journey
from campaigns import journey_testing, segment_triggers
from campaigns.actions import (
    NOT_A_TEST_CONTACT,
    EnrollmentRefused,
    activate_journey,
    draft_snapshot,
    enroll_contact,
    pause_journey,
    start_testing_journey,
)
from campaigns.date_triggers import fire_date_triggers_batch
from campaigns.models import (
    Enrollment,
    Journey,
    JourneyStatus,
    JourneyStep,
    StepKind,
    TriggerType,
)
from campaigns.tick import tick
from campaigns.tick_report import TickReport
from channels import routing
from channels.models import Message, MessageSource, MessageStatus
from compliance.actions import record_consent_change
from compliance.models import Decision, FrequencyCap, QuietHours
from contacts.models import AttributeDefinition, Contact, ContactEvent, DataType, Segment
from omni.models import ApiKey, ApiScope, AuditEntry

from .conftest import make_contact

UTC = dt_timezone.utc


def draft_welcome(email_template, sms_template, slug="welcome", **fields) -> Journey:
    """The welcome journey of conftest as a draft: email; wait an hour; if not engaged, SMS; exit."""
    journey = make_journey(name=slug.title(), slug=slug, trigger_event="signed_up", **fields)
    JourneyStep.objects.create(journey=journey, key="welcome-email", position=1, kind=StepKind.SEND,
                               template=email_template, channel_plan=[{"channel": "email"}])
    JourneyStep.objects.create(journey=journey, key="wait", position=2, kind=StepKind.WAIT, config={"seconds": 3600})
    check = JourneyStep.objects.create(journey=journey, key="opened", position=3, kind=StepKind.CONDITION,
                                       config={"check": "engaged", "step": "welcome-email"})
    send_sms = JourneyStep.objects.create(journey=journey, key="welcome-sms", position=4, kind=StepKind.SEND,
                                          template=sms_template, channel_plan=[{"channel": "sms"}])
    done = JourneyStep.objects.create(journey=journey, key="done", position=5, kind=StepKind.EXIT)
    check.next_step, check.else_step = done, send_sms
    check.save()
    send_sms.next_step = done
    send_sms.save()
    return journey


def waiting_journey(slug, **fields) -> Journey:
    """A draft that waits an hour, then exits."""
    journey = make_journey(name=slug.title(), slug=slug, **fields)
    JourneyStep.objects.create(journey=journey, key="first", position=1, kind=StepKind.WAIT, config={"seconds": 3600})
    JourneyStep.objects.create(journey=journey, key="done", position=2, kind=StepKind.EXIT)
    return journey


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(username="marketer", password="not-used", is_staff=True)


@pytest.fixture
def tess(db):
    return make_contact("tess", email="tess@example.com", phone="+14155550106", is_test=True,
                        consents=(("email", "marketing"), ("sms", "marketing")))


@pytest.fixture
def ann(db):
    return make_contact("ann", email="ann@example.com", phone="+14155550101")


@pytest.fixture
def testing_welcome(welcome_templates, staff_user):
    return start_testing_journey(draft_welcome(*welcome_templates), actor=staff_user)


def enrolled(journey) -> set[str]:
    return set(Enrollment.objects.filter(journey=journey).values_list("contact__external_id", flat=True))


def signed_up(contact, key=None):
    return ContactEvent.objects.create(contact=contact, name="signed_up", properties={},
                                       idempotency_key=key or f"signup-{contact.external_id}", source="test")


# --- putting a journey into testing ----------------------------------------------------------

def test_testing_publishes_the_draft_without_activating_it_and_is_audited(testing_welcome, staff_user):
    journey = testing_welcome

    assert journey.status == JourneyStatus.TESTING
    assert journey.live_version.number == 1
    entry = AuditEntry.objects.get(action="journey.testing_started")
    assert (entry.object_id, entry.actor_id, entry.data) == (str(journey.pk), staff_user.pk, {"version": 1})
    assert not AuditEntry.objects.filter(action="journey.activated").exists()


def test_testing_refuses_a_draft_that_cannot_run_naming_the_step(welcome_templates, staff_user):
    journey = draft_welcome(*welcome_templates)
    JourneyStep.objects.filter(journey=journey, key="wait").update(config={"seconds": "an hour"})

    with pytest.raises(ValidationError) as refused:
        start_testing_journey(journey, actor=staff_user)

    assert "'wait'" in " ".join(refused.value.messages)
    journey.refresh_from_db()
    assert (journey.status, journey.live_version) == (JourneyStatus.DRAFT, None)


def test_an_active_journey_cannot_be_put_into_testing(welcome_templates, staff_user):
    journey = activate_journey(draft_welcome(*welcome_templates))

    with pytest.raises(ValidationError, match="Clone it"):
        start_testing_journey(journey, actor=staff_user)

    journey.refresh_from_db()
    assert journey.status == JourneyStatus.ACTIVE


def test_pausing_a_testing_journey_stops_the_test_as_a_draft_and_testing_again_carries_on(testing_welcome, tess,
                                                                                        staff_user, now):
    enrollment = enroll_contact(testing_welcome, tess, actor=staff_user, now=now)

    pause_journey(testing_welcome, actor=staff_user)
    tick(now)
    stopped = Enrollment.objects.get(pk=enrollment.pk).steps_taken
    start_testing_journey(testing_welcome, actor=staff_user)
    tick(now)

    assert stopped == 0
    assert Enrollment.objects.get(pk=enrollment.pk).steps_taken > 0
    assert AuditEntry.objects.filter(action="journey.testing_stopped").count() == 1
    assert not AuditEntry.objects.filter(action="journey.paused").exists()


def test_activating_a_testing_journey_is_the_normal_activation_and_then_anyone_enters(testing_welcome, ann, now):
    activate_journey(testing_welcome)
    signed_up(ann)

    tick(now)

    assert testing_welcome.status == JourneyStatus.ACTIVE
    assert enrolled(testing_welcome) == {"ann"}


# --- a testing journey enrolls only test contacts, by every trigger ---------------------------

def test_an_event_enrolls_only_test_contacts_in_a_testing_journey_and_the_tick_runs_them(testing_welcome, tess,
                                                                                       ann, now):
    signed_up(tess), signed_up(ann)

    tick(now)

    assert enrolled(testing_welcome) == {"tess"}
    message = Message.objects.get()
    assert (message.contact, message.is_test, message.status) == (tess, True, MessageStatus.QUEUED)
    decision = Decision.objects.get(message_id=message.pk)
    assert decision.inputs["channel_facts"] == {"test_message": True}
    # a journey's own send is not a hand-made test: every rule applies
    assert decision.inputs["exemption"] == ""


def test_an_api_call_enrolls_only_test_contacts_in_a_testing_journey(client, staff_user, tess, ann):
    journey = start_testing_journey(waiting_journey("onboarding", trigger_type=TriggerType.API), actor=staff_user)
    _, raw_key = ApiKey.generate("Backend", [ApiScope.JOURNEYS_WRITE])
    headers = {"Authorization": f"Bearer {raw_key}"}

    refused = client.post("/api/v1/journeys/onboarding/enrollments", {"external_id": "ann"},
                          content_type="application/json", headers={**headers, "Idempotency-Key": "k1"})
    accepted = client.post("/api/v1/journeys/onboarding/enrollments", {"external_id": "tess"},
                           content_type="application/json", headers={**headers, "Idempotency-Key": "k2"})

    assert (refused.status_code, refused.json()["error"]["code"]) == (409, NOT_A_TEST_CONTACT)
    assert accepted.status_code == 201
    assert enrolled(journey) == {"tess"}
    assert AuditEntry.objects.filter(action="journey.enrollment_refused", reason=NOT_A_TEST_CONTACT).count() == 1


def test_enrolling_by_hand_refuses_a_contact_who_is_not_a_test_contact(testing_welcome, ann, tess, staff_user):
    with pytest.raises(EnrollmentRefused) as refused:
        enroll_contact(testing_welcome, ann, actor=staff_user)
    enroll_contact(testing_welcome, tess, actor=staff_user)

    assert refused.value.reason == NOT_A_TEST_CONTACT
    assert enrolled(testing_welcome) == {"tess"}


@pytest.mark.parametrize("trigger_type, tess_stage, ann_stage", [
    (TriggerType.SEGMENT_ENTRY, "customer", "customer"),
    (TriggerType.SEGMENT_EXIT, "trial", "trial"),
])
def test_entering_or_leaving_a_segment_enrolls_only_test_contacts_in_a_testing_journey(staff_user, tess, ann,
                                                                                       trigger_type, tess_stage,
                                                                                       ann_stage):
    segment = Segment.objects.create(name="Customers", refresh_seconds=60, definition={
        "match": "all", "filters": [{"kind": "lifecycle_stage", "stages": ["customer"]}]})
    start = "trial" if trigger_type == TriggerType.SEGMENT_ENTRY else "customer"
    Contact.objects.filter(pk__in=[tess.pk, ann.pk]).update(lifecycle_stage=start)
    journey = start_testing_journey(waiting_journey("customers", trigger_type=trigger_type, trigger_segment=segment),
                                    actor=staff_user)
    t0 = timezone.now()
    segment_triggers.refresh_segments_batch(t0, TickReport(), set())  # the first refresh enrolls nobody
    Contact.objects.filter(pk=tess.pk).update(lifecycle_stage=tess_stage)
    Contact.objects.filter(pk=ann.pk).update(lifecycle_stage=ann_stage)

    segment_triggers.refresh_segments_batch(t0 + timedelta(minutes=1), TickReport(), set())

    assert enrolled(journey) == {"tess"}


def test_a_date_enrolls_only_test_contacts_in_a_testing_journey(staff_user, tess, ann):
    AttributeDefinition.objects.create(name="renewal_at", data_type=DataType.DATETIME)
    journey = start_testing_journey(waiting_journey("renewal", trigger_type=TriggerType.DATE_ATTRIBUTE,
                                                    trigger_date_attribute="renewal_at"), actor=staff_user)
    soon = (timezone.now() + timedelta(minutes=30)).astimezone(UTC).replace(microsecond=0)
    for contact in (tess, ann):
        contact.attributes = {"renewal_at": soon.isoformat()}
        contact.save()

    fire_date_triggers_batch(soon + timedelta(minutes=5), TickReport())

    assert enrolled(journey) == {"tess"}


def test_a_draft_journey_enrolls_nobody_not_even_test_contacts(welcome_templates, tess, now):
    journey = draft_welcome(*welcome_templates)
    signed_up(tess)

    tick(now)

    assert enrolled(journey) == set()


# --- is_test reaches the message and the decision ---------------------------------------------

def test_a_message_made_without_its_contact_loaded_copies_is_test_in_one_query(tess, ann,
                                                                             django_assert_num_queries):
    unsaved = [Message(contact_id=contact.pk, source=MessageSource.API, purpose="informational",
                       channel_plan=[{"channel": "email"}], content=[{"channel": "email", "text_body": "Hi"}])
               for contact in (tess, ann, tess)]

    with django_assert_num_queries(2):  # the contacts' flags, the insert
        routing.create_messages(unsaved)

    assert [m.is_test for m in Message.objects.order_by("pk")] == [True, False, True]


# --- a test sent by hand -----------------------------------------------------------------------

def test_a_test_send_records_its_exemption_and_is_audited(testing_welcome, tess, staff_user):
    message = journey_testing.send_test_of_step(testing_welcome, "welcome-sms", tess, actor=staff_user)

    assert (message.is_test, message.exemption, message.status) == (True, "test_send", MessageStatus.QUEUED)
    decision = Decision.objects.get(message_id=message.pk)
    assert decision.inputs["exemption"] == "test_send"
    assert decision.inputs["channel_facts"] == {"test_message": True}
    entry = AuditEntry.objects.get(action="journey.test_send")
    assert (entry.object_id, entry.actor_id, entry.data["message"]) == (str(testing_welcome.pk), staff_user.pk,
                                                                         message.pk)


def test_quiet_hours_and_caps_do_not_hold_a_test_send_but_they_hold_the_journeys_own_sends(testing_welcome, tess,
                                                                                          staff_user):
    QuietHours.objects.create(name="Nights", start=time(21), end=time(8))
    FrequencyCap.objects.create(name="None at all", limit=0, window_seconds=86400)
    night = datetime(2026, 6, 2, 6, tzinfo=UTC)  # 23:00 in Los Angeles (the phone's zone)

    test = journey_testing.send_test_of_step(testing_welcome, "welcome-sms", tess, actor=staff_user, now=night)
    enroll_contact(testing_welcome, tess, actor=staff_user, now=night)
    tick(night)

    assert (test.status, test.exemption) == (MessageStatus.QUEUED, "test_send")
    rules = {r["rule"]: r["result"] for r in Decision.objects.get(message_id=test.pk).inputs["rules"]}
    assert rules["quiet_hours"] == "exempt"
    journeys_own = Message.objects.exclude(pk=test.pk).get()
    assert journeys_own.is_test and journeys_own.status in (MessageStatus.DEFERRED, MessageStatus.SUPPRESSED)


def test_a_revoked_consent_still_refuses_a_test_send(testing_welcome, tess, staff_user):
    record_consent_change(tess, "sms", "marketing", "revoked", "form", evidence={"form": "preferences"},
                          announce=False)

    message = journey_testing.send_test_of_step(testing_welcome, "welcome-sms", tess, actor=staff_user)

    assert (message.status, message.status_reason) == (MessageStatus.SUPPRESSED, "opted_out")
    assert Decision.objects.get(message_id=message.pk).inputs["exemption"] == "test_send"


def test_a_test_is_sent_only_to_a_test_contact(testing_welcome, ann, staff_user):
    with pytest.raises(journey_testing.NotATestContact):
        journey_testing.send_test_of_step(testing_welcome, "welcome-sms", ann, actor=staff_user)

    assert not Message.objects.exists()


def test_a_test_of_a_step_that_sends_nothing_is_refused_naming_it(testing_welcome, tess, staff_user):
    with pytest.raises(ValidationError, match="'wait'"):
        journey_testing.send_test_of_step(testing_welcome, "wait", tess, actor=staff_user)


# --- skip the wait -----------------------------------------------------------------------------

def test_skipping_a_test_contacts_wait_makes_the_step_due_now_and_the_tick_moves_them_on(testing_welcome, tess,
                                                                                       staff_user, now):
    enrollment = enroll_contact(testing_welcome, tess, actor=staff_user, now=now)
    tick(now)  # the email, then the wait
    enrollment.refresh_from_db()
    # the wait ran: the condition after it is due in an hour
    assert (enrollment.current_step_key, enrollment.next_run_at) == ("opened", now + timedelta(hours=1))
    taken = enrollment.steps_taken

    later = now + timedelta(seconds=5)
    journey_testing.skip_wait(enrollment, actor=staff_user, now=later)
    assert Enrollment.objects.get(pk=enrollment.pk).next_run_at == later
    tick(later)

    enrollment.refresh_from_db()
    assert enrollment.steps_taken > taken and enrollment.current_step_key != "opened"
    assert Message.objects.filter(contact=tess).count() == 2  # not opened: the SMS went too
    entry = AuditEntry.objects.get(action="journey.enrollment_wait_skipped")
    assert (entry.object_id, entry.actor_id, entry.data["step"]) == (str(enrollment.pk), staff_user.pk, "opened")


def test_the_wait_of_a_contact_who_is_not_a_test_contact_is_never_skipped(welcome_templates, ann, staff_user, now):
    journey = activate_journey(draft_welcome(*welcome_templates))
    enrollment = enroll_contact(journey, ann, now=now)
    tick(now)
    enrollment.refresh_from_db()

    with pytest.raises(journey_testing.NotATestContact):
        journey_testing.skip_wait(enrollment, actor=staff_user, now=now)

    assert Enrollment.objects.get(pk=enrollment.pk).next_run_at == now + timedelta(hours=1)


def test_an_enrollment_that_is_not_waiting_has_no_wait_to_skip(testing_welcome, tess, staff_user, now):
    enrollment = enroll_contact(testing_welcome, tess, actor=staff_user, now=now)  # due now: not waiting

    with pytest.raises(ValidationError, match="not waiting"):
        journey_testing.skip_wait(enrollment, actor=staff_user, now=now + timedelta(seconds=1))

    assert not AuditEntry.objects.filter(action="journey.enrollment_wait_skipped").exists()


def test_the_enrollment_list_skips_waits_of_selected_test_contacts(admin_client, testing_welcome, tess, now):
    enrollment = enroll_contact(testing_welcome, tess, now=now - timedelta(minutes=1))
    tick(now - timedelta(minutes=1))

    response = admin_client.post(reverse("admin:campaigns_enrollment_changelist"),
                                 {"action": "skip_wait", "_selected_action": [enrollment.pk]}, follow=True)

    assert "1 wait(s) skipped" in response.content.decode()
    assert Enrollment.objects.get(pk=enrollment.pk).next_run_at <= timezone.now()


# --- clone -------------------------------------------------------------------------------------

def test_a_clone_copies_the_draft_and_its_steps_with_their_links_as_a_draft_with_no_versions(welcome_templates,
                                                                                           staff_user):
    journey = activate_journey(draft_welcome(*welcome_templates, goal_event="purchased"))
    JourneyStep.objects.create(journey=journey, key="ab", position=6, kind=StepKind.SPLIT, config={
        "paths": [{"name": "A", "weight": 50, "step": "welcome-sms"}, {"name": "B", "weight": 50, "step": "done"}]})

    clone = journey_testing.clone_journey(journey, actor=staff_user)
    again = journey_testing.clone_journey(journey, actor=staff_user)

    assert (clone.slug, again.slug) == ("welcome-copy", "welcome-copy-2")
    assert (clone.status, clone.live_version, clone.versions.count()) == (JourneyStatus.DRAFT, None, 0)
    assert (clone.trigger_event, clone.goal_event, clone.created_by) == ("signed_up", "purchased", staff_user)
    steps = {s.key: s for s in clone.steps.select_related("next_step", "else_step")}
    originals = {s.key: s for s in journey.steps.all()}
    assert set(steps) == set(originals)
    assert all(s.journey_id == clone.pk for s in steps.values())
    assert (steps["opened"].next_step, steps["opened"].else_step) == (steps["done"], steps["welcome-sms"])
    assert steps["welcome-sms"].next_step == steps["done"]
    assert steps["ab"].config == originals["ab"].config
    assert steps["welcome-email"].template_id == originals["welcome-email"].template_id
    # the clone's draft runs as the original's would
    assert draft_snapshot(clone)["steps"] == draft_snapshot(journey)["steps"]
    assert sorted(AuditEntry.objects.filter(action="journey.cloned").values_list("object_id", "actor_id")) == [
        (str(clone.pk), staff_user.pk), (str(again.pk), staff_user.pk)]
    assert AuditEntry.objects.get(action="journey.cloned", object_id=str(clone.pk)).data["from_journey"] == journey.pk


# --- the journey page and the enrollment page --------------------------------------------------

def test_the_journey_page_finds_a_test_contact_enrolls_them_and_offers_their_wait(admin_client, testing_welcome,
                                                                                tess, ann, now):
    url = reverse("admin:campaigns_journey_change", args=[testing_welcome.pk])

    found = admin_client.get(url, {"test_contact_q": "tes"}).content.decode()
    assert "Enrol Tess" in found and "Enrol Ann" not in found
    admin_client.post(reverse("admin:campaigns_journey_test_enroll", args=[testing_welcome.pk]), {"contact": tess.pk})
    refused = admin_client.post(reverse("admin:campaigns_journey_test_enroll", args=[testing_welcome.pk]),
                                {"contact": ann.pk}, follow=True).content.decode()
    tick(timezone.now())
    page = admin_client.get(url).content.decode()

    assert "Choose a test contact" in refused
    assert enrolled(testing_welcome) == {"tess"}
    assert "Skip the wait" in page and f"?contact={tess.pk}" in page
    enrollment = Enrollment.objects.get(journey=testing_welcome)
    admin_client.post(reverse("admin:campaigns_journey_skip_wait", args=[testing_welcome.pk, enrollment.pk]))
    assert AuditEntry.objects.filter(action="journey.enrollment_wait_skipped").count() == 1


def test_the_journey_page_sends_a_test_of_a_step(admin_client, testing_welcome, tess):
    response = admin_client.post(reverse("admin:campaigns_journey_test_send", args=[testing_welcome.pk]),
                                 {"step": "welcome-email", "contact": tess.pk}, follow=True)

    assert "Test of step welcome-email to" in response.content.decode()
    assert Message.objects.get().exemption == "test_send"


def test_the_enrollment_page_shows_its_context_as_labelled_values_without_json(admin_client, testing_welcome, tess,
                                                                             now):
    enrollment = enroll_contact(testing_welcome, tess, trigger={"type": "api", "properties": {"plan": "Pro"}},
                                now=now)
    tick(now)
    Enrollment.objects.filter(pk=enrollment.pk).update(context={
        **Enrollment.objects.get(pk=enrollment.pk).context,
        "webhooks": {"score": {"ok": True, "status": 200, "answer": {"score": 7, "tags": ["a", "b"]}}}})
    message = Message.objects.get()

    page = admin_client.get(reverse("admin:campaigns_enrollment_change", args=[enrollment.pk])).content.decode()

    assert "What enrolled the contact" in page and "API call" in page and "property plan" in page
    assert "step welcome-email" in page and f"message {message.pk}" in page
    assert "step score: answer score" in page and "step score: HTTP status" in page
    # not as JSON: no key of the context appears quoted
    assert not [quoted for quoted in ('"plan"', "&quot;plan&quot;", "&quot;score&quot;", "&quot;messages&quot;",
                                      "&quot;trigger&quot;", "&#x27;plan&#x27;") if quoted in page]


def test_the_lists_mark_test_sends(admin_client, testing_welcome, tess, now):
    signed_up(tess)
    tick(now)

    for name in ("channels_message", "channels_delivery", "campaigns_enrollment"):
        assert admin_client.get(reverse(f"admin:{name}_changelist")).status_code == 200
    messages = admin_client.get(reverse("admin:channels_message_changelist") + "?is_test__exact=1")
    decisions = admin_client.get(reverse("admin:compliance_decision_changelist") + "?test_send=yes")
    enrollments = admin_client.get(reverse("admin:campaigns_enrollment_changelist") + "?contact__is_test__exact=1")
    timeline = admin_client.get(reverse("omni-web:timeline", args=[tess.pk])).content.decode()

    assert len(messages.context["cl"].result_list) == 1
    assert len(decisions.context["cl"].result_list) == 1
    assert len(enrollments.context["cl"].result_list) == 1
    assert 'class="test-badge">test<' in timeline
