"""/healthz and /readyz, for load balancers and orchestrators."""
import time

import pytest


def test_healthz_answers_ok_without_touching_the_database(client):
    # No db fixture: pytest-django makes any query fail this test.
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_answers_200_when_the_database_and_broker_are_reachable(client, db):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


@pytest.mark.parametrize("broker_url", ["redis://127.0.0.1:1/0", "amqp://guest:guest@127.0.0.1:1//"])
def test_readyz_answers_503_quickly_naming_an_unreachable_broker(client, db, settings, broker_url):
    settings.CELERY_BROKER_URL = broker_url
    started = time.monotonic()

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"]) == ("unavailable", "ok")
    assert body["broker"].startswith("unreachable")
    assert time.monotonic() - started < 5


def test_health_endpoints_are_not_redirected_to_https(client, db, settings):
    # given the redirect production turns on, and the exemptions as settings.py configures them
    settings.SECURE_SSL_REDIRECT = True

    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/admin/").status_code == 301


def test_readyz_names_the_component_that_is_down_and_nothing_more(client, db, settings, caplog):
    # given a broker URL with a password, on a port nobody listens on
    settings.CELERY_BROKER_URL = "redis://:hunter2-secret@127.0.0.1:1/0"

    response = client.get("/readyz")

    # then anonymous callers learn which component is down, not why; the log says why
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "broker": "unreachable"}
    assert "Error" not in response.content.decode()
    assert any("broker" in record.getMessage() and "Error" in record.getMessage() for record in caplog.records)
