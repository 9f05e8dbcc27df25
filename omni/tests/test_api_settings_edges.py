"""Edges of the journey API and of reading settings from the environment."""
import subprocess
import sys
from pathlib import Path

import pytest

from campaigns.actions import activate_journey
from campaigns.models import Enrollment, JourneyStep, StepKind, TriggerType
from campaigns.tests.conftest import make_journey
from contacts.models import Contact
from omni.models import ApiKey, ApiScope

ROOT = Path(__file__).resolve().parents[2]
ENROLLMENTS = "/api/v1/journeys/onboarding/enrollments"


@pytest.fixture
def enroll(db, client):
    """POST an enrollment to an active API-triggered journey, for contact crm-1, with one key."""
    journey = make_journey(name="Onboarding", slug="onboarding", trigger_type=TriggerType.API)
    JourneyStep.objects.create(journey=journey, key="done", position=1, kind=StepKind.EXIT)
    activate_journey(journey)
    Contact.objects.create(external_id="crm-1", email="ann@example.com")
    _, raw_key = ApiKey.generate("Backend", [ApiScope.JOURNEYS_WRITE])

    def post(body, key):
        return client.post(ENROLLMENTS, body, content_type="application/json",
                           headers={"Authorization": f"Bearer {raw_key}", "Idempotency-Key": key})

    return post


@pytest.mark.parametrize("first, retry", [
    ({"vip": True}, {"vip": 1}),
    ({"vip": 0}, {"vip": False}),
    ({"tags": [True]}, {"tags": [1]}),
])
def test_the_same_key_with_true_instead_of_1_is_another_request_and_refused(enroll, first, retry):
    # given
    assert enroll({"external_id": "crm-1", "properties": first}, key="req-1").status_code == 201

    # when
    response = enroll({"external_id": "crm-1", "properties": retry}, key="req-1")

    # then
    assert response.status_code == 409
    assert (response.json()["error"]["code"], response.json()["error"]["field"]) == (
        "idempotency_key_reused", "Idempotency-Key")
    assert Enrollment.objects.get().context["trigger"]["properties"] == first


def test_a_retry_with_the_same_number_written_as_a_float_is_still_a_retry(enroll):
    assert enroll({"external_id": "crm-1", "properties": {"seats": 3}}, key="req-1").status_code == 201

    retry = enroll({"external_id": "crm-1", "properties": {"seats": 3.0}}, key="req-1")

    assert (retry.status_code, retry.headers.get("Idempotent-Replayed")) == (201, "true")


def start_with(**variables) -> subprocess.CompletedProcess:
    env = {"OMNI_VAR_DIR": "/tmp/omni-settings-edges", "DJANGO_SETTINGS_MODULE": "omni.settings",
           "PATH": "/usr/bin:/bin", **variables}
    return subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name, value", [
    ("OMNI_MAX_BODY_BYTES", "256k"),
    ("OMNI_TICK_SECONDS", "fast"),
    ("OMNI_JOURNEY_APPROVAL_REQUIRED", "flase"),
    ("OMNI_VERIFY_AUDIT_CRON", "17 3 *"),
    ("OMNI_RETENTION_CRON", "99 2 * * *"),
])
def test_a_variable_with_a_bad_value_stops_the_start_naming_it(name, value):
    result = start_with(**{name: value})

    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: ") and name in last_line, result.stderr


def test_booleans_and_numbers_spelled_as_documented_still_start():
    result = start_with(OMNI_JOURNEY_APPROVAL_REQUIRED="off", DEBUG="1", OMNI_MAX_BODY_BYTES="1024",
                        OMNI_TICK_SECONDS="2.5", OMNI_VERIFY_AUDIT_CRON="0 4 * * 1")

    assert result.returncode == 0, result.stderr
