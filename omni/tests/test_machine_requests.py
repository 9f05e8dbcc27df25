"""Requests from machines (the JSON API, providers' webhooks) go past the browser middleware."""
import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from omni import middleware

BROWSER_ONLY = [middleware.SessionMiddleware, middleware.AuthenticationMiddleware, middleware.MessageMiddleware,
                middleware.OTPMiddleware]


def _through_browser_middleware(path: str):
    seen = []

    def view(request):
        seen.append(request)
        return HttpResponse()

    handler = view
    for middleware_class in reversed(BROWSER_ONLY):
        handler = middleware_class(handler)
    handler(RequestFactory().post(path, {"From": "+14155550123"}))
    return seen[0]


@pytest.mark.parametrize("path", ["/webhooks/twilio/inbound/", "/api/v1/events"])
def test_a_machines_request_gets_no_session_user_or_messages(path):
    request = _through_browser_middleware(path)

    assert not hasattr(request, "session")
    assert not hasattr(request, "user")
    assert not hasattr(request, "_messages")


def test_a_browsers_request_still_gets_them():
    request = _through_browser_middleware("/admin/login/")

    assert hasattr(request, "session") and hasattr(request, "user") and hasattr(request, "_messages")
