import hashlib
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from omni.models import ApiKey, ApiScope

pytestmark = [pytest.mark.django_db, pytest.mark.urls("omni.tests.urls")]


@pytest.fixture
def events_key():
    """An API key allowed to send events, with its raw secret."""
    return ApiKey.generate("Shop", [ApiScope.EVENTS_WRITE])


def post_echo(client, body, raw_key=None, content_type="application/json", **extra):
    headers = {"Authorization": f"Bearer {raw_key}"} if raw_key else {}
    return client.post("/echo", body, content_type=content_type, headers=headers, **extra)


def test_a_generated_key_is_stored_only_as_its_hash(events_key):
    # given
    key, raw_key = events_key

    # when
    stored = ApiKey.objects.values().get(pk=key.pk)

    # then
    secret = raw_key.split("_", 2)[2]
    assert all(secret not in str(value) for value in stored.values())
    assert stored["key_hash"] == hashlib.sha256(raw_key.encode()).hexdigest()


def test_a_key_sent_as_a_bearer_token_is_accepted(client, events_key):
    key, raw_key = events_key

    response = post_echo(client, {"hello": "world"}, raw_key)

    assert response.status_code == 200
    assert response.json() == {"key": key.prefix, "body": {"hello": "world"}}


def test_a_key_sent_in_an_x_api_key_header_is_accepted(client, events_key):
    _, raw_key = events_key

    response = client.post("/echo", {}, content_type="application/json", headers={"X-Api-Key": raw_key})

    assert response.status_code == 200


def test_a_request_without_a_key_is_refused_with_401(client):
    response = post_echo(client, {})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_key_with_a_wrong_secret_is_refused_with_401(client, events_key):
    # given a key whose prefix exists but whose secret does not match
    key, _ = events_key
    forged = f"omni_{key.prefix}_not-the-secret"

    response = post_echo(client, {}, forged)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_a_revoked_key_is_refused_with_401(client, events_key):
    key, raw_key = events_key
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())

    response = post_echo(client, {}, raw_key)

    assert response.status_code == 401


def test_a_key_without_the_scope_is_refused_with_403_naming_the_scope(client):
    _, raw_key = ApiKey.generate("Reporting", [ApiScope.CONTACTS_READ])

    response = post_echo(client, {}, raw_key)

    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "missing_scope"
    assert "events:write" in error["message"]


def test_a_body_over_the_limit_is_refused_with_413(client, events_key, settings):
    settings.OMNI_MAX_BODY_BYTES = 100
    _, raw_key = events_key

    response = post_echo(client, {"padding": "x" * 200}, raw_key)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(client, events_key, settings):
    settings.OMNI_MAX_BODY_BYTES = 100
    _, raw_key = events_key

    response = post_echo(client, {}, raw_key, CONTENT_LENGTH="1000000000")

    assert response.status_code == 413


def test_a_body_that_is_not_json_is_refused_with_415(client, events_key):
    _, raw_key = events_key

    response = post_echo(client, "name=order.placed", raw_key, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_json_with_a_charset_parameter_is_accepted(client, events_key):
    _, raw_key = events_key

    response = post_echo(client, b'{"a": 1}', raw_key, content_type="application/json; charset=utf-8")

    assert response.status_code == 200


@pytest.mark.parametrize("body", ['{"name": "order.placed",}', "", '{"total": NaN}', "\xff"])
def test_malformed_json_is_refused_with_400(client, events_key, body):
    _, raw_key = events_key

    # The test client leaves out the content type of an empty body; real clients send it.
    response = post_echo(client, body.encode("latin-1"), raw_key, CONTENT_TYPE="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


def test_a_json_body_that_is_not_an_object_is_refused_with_400(client, events_key):
    _, raw_key = events_key

    response = post_echo(client, b"[1, 2]", raw_key)

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "body_not_object", "message": "The body must be a JSON object, not list.", "field": None,
    }


def test_a_nul_character_that_postgresql_cannot_store_is_refused_with_400(client, events_key):
    _, raw_key = events_key

    response = post_echo(client, b'{"note": "a\\u0000b"}', raw_key)

    assert response.status_code == 400


def test_an_unsupported_method_is_refused_with_405(client, events_key):
    _, raw_key = events_key

    response = client.delete("/echo", headers={"Authorization": f"Bearer {raw_key}"})

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_api_requests_need_no_csrf_token(events_key):
    _, raw_key = events_key
    strict_client = Client(enforce_csrf_checks=True)

    response = post_echo(strict_client, {}, raw_key)

    assert response.status_code == 200


def test_the_key_is_marked_used_at_most_once_a_minute(client, events_key):
    # given a key used moments ago
    key, raw_key = events_key
    post_echo(client, {}, raw_key)
    key.refresh_from_db()
    first_use = key.last_used_at
    assert first_use is not None

    # when it is used again within the minute
    with CaptureQueriesContext(connection) as queries:
        post_echo(client, {}, raw_key)

    # then nothing is written to the key
    assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    key.refresh_from_db()
    assert key.last_used_at == first_use


def test_a_key_last_used_over_a_minute_ago_is_marked_used_again(client, events_key):
    key, raw_key = events_key
    two_minutes_ago = timezone.now() - timedelta(minutes=2)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=two_minutes_ago)

    post_echo(client, {}, raw_key)

    key.refresh_from_db()
    assert key.last_used_at > two_minutes_ago
