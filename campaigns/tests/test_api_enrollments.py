"""POST /api/v1/journeys/<slug>/enrollments: enroll a contact by API, once per Idempotency-Key."""
import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from campaigns.actions import activate_journey, pause_journey
from campaigns.models import Enrollment, EnrollmentState, Journey, JourneyStep, ReentryPolicy, StepKind, TriggerType
from contacts.models import Contact
from omni.models import ApiKey, ApiScope, AuditEntry
from omni.tests.fakes import run_concurrently

from .conftest import make_journey

ENROLLMENTS = "/api/v1/journeys/{slug}/enrollments"


class JourneyApi:
    """The Django test client speaking JSON with one API key."""

    def __init__(self, client, raw_key: str):
        self.client = client
        self.raw_key = raw_key

    def enroll(self, body, *, slug="onboarding", key="req-1", **headers):
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.client.post(ENROLLMENTS.format(slug=slug), body, content_type="application/json",
                                headers={"Authorization": f"Bearer {self.raw_key}", **headers})


@pytest.fixture
def api(db, client) -> JourneyApi:
    """A client whose API key may enroll contacts in journeys."""
    _, raw_key = ApiKey.generate("Backend", [ApiScope.JOURNEYS_WRITE])
    return JourneyApi(client, raw_key)


@pytest.fixture
def onboarding(db) -> Journey:
    """An active journey started by API calls: it waits a day, then exits."""
    journey = make_journey(name="Onboarding", slug="onboarding", trigger_type=TriggerType.API)
    JourneyStep.objects.create(journey=journey, key="wait", position=1, kind=StepKind.WAIT, config={"seconds": 86400})
    JourneyStep.objects.create(journey=journey, key="done", position=2, kind=StepKind.EXIT)
    return activate_journey(journey)


@pytest.fixture
def ann(db) -> Contact:
    return Contact.objects.create(external_id="crm-1", email="ann@example.com")


def error_of(response) -> tuple:
    error = response.json()["error"]
    return response.status_code, error["code"], error["field"]


def test_an_api_call_enrolls_the_contact_and_keeps_its_properties(api, onboarding, ann):
    response = api.enroll({"external_id": "crm-1", "properties": {"plan": "pro", "seats": 3}})

    assert response.status_code == 201
    enrollment = Enrollment.objects.get()
    body = response.json()
    assert body == {
        "id": enrollment.pk, "journey": {"id": onboarding.pk, "slug": "onboarding"}, "version": 1,
        "contact": {"id": ann.pk, "external_id": "crm-1"}, "state": "active", "current_step": "wait",
        "next_run_at": body["entered_at"], "entered_at": body["entered_at"],
        "trigger": {"type": "api", "properties": {"plan": "pro", "seats": 3}}}
    assert enrollment.context["trigger"] == {"type": "api", "properties": {"plan": "pro", "seats": 3}}
    assert enrollment.trigger_key == "api:req-1"
    entry = AuditEntry.objects.get(action="journey.enrolled")
    assert (entry.contact_id, entry.reason, entry.actor_label) == (ann.pk, "api", f"apikey:{api.raw_key.split('_')[1]}")


def test_a_retry_with_the_same_key_and_body_answers_the_same_and_enrolls_once(api, onboarding, ann):
    first = api.enroll({"external_id": "crm-1", "properties": {"plan": "pro"}})
    # even once the journey is paused, the retry is answered as the first request was
    pause_journey(onboarding)

    retry = api.enroll({"external_id": "crm-1", "properties": {"plan": "pro"}})

    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.json() == first.json()
    assert retry.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert Enrollment.objects.count() == 1
    assert AuditEntry.objects.filter(action="journey.enrolled").count() == 1


@pytest.mark.parametrize("body", [
    {"external_id": "crm-1", "properties": {"plan": "basic"}},
    {"external_id": "crm-2", "properties": {"plan": "pro"}},
    {"external_id": "crm-1"},
])
def test_the_same_key_with_another_body_is_refused(api, onboarding, ann, body):
    Contact.objects.create(external_id="crm-2")
    api.enroll({"external_id": "crm-1", "properties": {"plan": "pro"}})

    response = api.enroll(body)

    assert error_of(response) == (409, "idempotency_key_reused", "Idempotency-Key")
    assert Enrollment.objects.count() == 1


def test_a_contact_already_in_the_journey_is_refused_with_the_reason_and_audited(api, onboarding, ann):
    api.enroll({"external_id": "crm-1"}, key="req-1")

    response = api.enroll({"external_id": "crm-1"}, key="req-2")

    assert error_of(response) == (409, "already_enrolled", None)
    assert response.json()["error"]["message"] == "crm-1 is already in 'Onboarding'."
    refusal = AuditEntry.objects.get(action="journey.enrollment_refused")
    assert (refusal.contact_id, refusal.reason) == (ann.pk, "already_enrolled")


@pytest.mark.parametrize("reentry, after, code", [
    (ReentryPolicy.NEVER, None, "reentry_never"),
    (ReentryPolicy.AFTER_PERIOD, 3600, "reentry_too_soon"),
])
def test_re_entry_rules_refuse_a_contact_who_was_in_the_journey(api, ann, reentry, after, code):
    journey = make_journey(name="Onboarding", slug="onboarding", trigger_type=TriggerType.API,
                           reentry=reentry, reentry_after_seconds=after)
    JourneyStep.objects.create(journey=journey, key="done", position=1, kind=StepKind.EXIT)
    activate_journey(journey)
    api.enroll({"external_id": "crm-1"}, key="req-1")
    Enrollment.objects.update(state=EnrollmentState.COMPLETED)

    response = api.enroll({"external_id": "crm-1"}, key="req-2")

    assert error_of(response) == (409, code, None)
    assert Enrollment.objects.count() == 1


def test_a_journey_that_may_be_re_entered_takes_the_contact_again_with_a_new_key(api, ann):
    journey = make_journey(name="Onboarding", slug="onboarding", trigger_type=TriggerType.API,
                           reentry=ReentryPolicy.ALWAYS)
    JourneyStep.objects.create(journey=journey, key="done", position=1, kind=StepKind.EXIT)
    activate_journey(journey)
    api.enroll({"external_id": "crm-1"}, key="req-1")
    Enrollment.objects.update(state=EnrollmentState.COMPLETED)

    response = api.enroll({"external_id": "crm-1"}, key="req-2")

    assert response.status_code == 201 and Enrollment.objects.count() == 2


def test_unknown_journeys_and_contacts_are_404_naming_which(api, onboarding, ann):
    unknown_journey = api.enroll({"external_id": "crm-1"}, slug="nope")
    unknown_contact = api.enroll({"external_id": "crm-404"})

    assert error_of(unknown_journey) == (404, "journey_not_found", "slug")
    assert error_of(unknown_contact) == (404, "contact_not_found", "external_id")
    assert not Enrollment.objects.exists()


def test_an_erased_contact_is_refused(api, onboarding, ann):
    Contact.objects.filter(pk=ann.pk).update(erased_at=timezone.now())

    response = api.enroll({"external_id": "crm-1"})

    assert error_of(response) == (409, "contact_erased", "external_id")
    assert not Enrollment.objects.exists()


def test_a_journey_that_is_not_active_is_422(api, onboarding, ann):
    pause_journey(onboarding)

    response = api.enroll({"external_id": "crm-1"})

    assert error_of(response) == (422, "journey_not_active", "slug")
    assert "is not active (it is paused)" in response.json()["error"]["message"]
    assert AuditEntry.objects.get(action="journey.enrollment_refused").reason == "journey_not_active"


@pytest.mark.parametrize("body, key, expected", [
    ({"properties": {}}, "k", (422, "invalid_field", "external_id")),
    ({"external_id": ""}, "k", (422, "invalid_field", "external_id")),
    ({"external_id": 7}, "k", (422, "invalid_field", "external_id")),
    ({"external_id": "crm-1", "properties": ["plan"]}, "k", (422, "invalid_field", "properties")),
    ({"external_id": "crm-1", "plan": "pro"}, "k", (422, "unknown_field", "plan")),
    ({"external_id": "crm-1"}, None, (422, "idempotency_key_required", "Idempotency-Key")),
    ({"external_id": "crm-1"}, "k" * 201, (422, "invalid_field", "Idempotency-Key")),
    ({"external_id": "crm-1", "properties": {"note": "x" * 20_000}}, "k", (413, "body_too_large", None)),
])
def test_a_bad_request_is_refused_naming_the_field_and_enrolls_nobody(api, onboarding, ann, body, key, expected):
    response = api.enroll(body, key=key)

    assert error_of(response) == expected
    assert not Enrollment.objects.exists()


def test_a_key_without_the_journeys_scope_is_403(client, onboarding, ann):
    _, raw_key = ApiKey.generate("Events only", [ApiScope.EVENTS_WRITE, ApiScope.CONTACTS_WRITE])

    response = JourneyApi(client, raw_key).enroll({"external_id": "crm-1"})

    assert error_of(response) == (403, "missing_scope", None)
    assert "journeys:write" in response.json()["error"]["message"]
    assert not Enrollment.objects.exists()


needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="two requests at once need PostgreSQL; set DATABASE_URL to run it (SQLite serializes writers)",
)


@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_two_copies_of_a_request_at_once_enroll_once_and_answer_the_same():
    journey = make_journey(name="Onboarding", slug="onboarding", trigger_type=TriggerType.API)
    JourneyStep.objects.create(journey=journey, key="done", position=1, kind=StepKind.EXIT)
    activate_journey(journey)
    Contact.objects.create(external_id="crm-1")
    _, raw_key = ApiKey.generate("Backend", [ApiScope.JOURNEYS_WRITE])

    results, errors = run_concurrently(
        lambda: JourneyApi(Client(), raw_key).enroll({"external_id": "crm-1", "properties": {"a": 1}}), times=4)

    assert errors == []
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["id"] for r in results}) == 1
    assert Enrollment.objects.count() == 1
    assert AuditEntry.objects.filter(action="journey.enrolled").count() == 1
