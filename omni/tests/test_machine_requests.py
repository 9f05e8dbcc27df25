"""Requests from machines (the JSON API, providers' webhooks) go past the browser middleware."""
import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/webhooks/twilio/inbound/", "/api/v1/events"])
def test_a_machines_request_gets_no_session_or_user(client, path):
    response = client.post(path, {"From": "+14155550123"})

    assert response.status_code in (401, 403)
    assert not hasattr(response.wsgi_request, "session")
    assert not hasattr(response.wsgi_request, "user")


def test_a_browsers_request_still_gets_them(client):
    response = client.get(reverse("admin:login"))

    assert response.status_code == 200
    assert hasattr(response.wsgi_request, "session") and hasattr(response.wsgi_request, "user")
