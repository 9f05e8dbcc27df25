"""Browser middleware that machines' requests skip.

The JSON API authenticates with an API key and providers' webhooks with their signatures, never
a session or a cookie: sessions, users and messages only cost such a request time.
"""
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode
from django_otp import middleware as otp
from django_otp import user_has_device

MACHINE_PATH_PREFIXES = ("/api/", "/webhooks/")


class SkippedByMachines:
    """Mixed into a middleware class: requests under MACHINE_PATH_PREFIXES go straight past it."""

    def __call__(self, request):
        if request.path_info.startswith(MACHINE_PATH_PREFIXES):
            return self.get_response(request)
        return super().__call__(request)


class SessionMiddleware(SkippedByMachines, sessions.SessionMiddleware):
    pass


class AuthenticationMiddleware(SkippedByMachines, auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(SkippedByMachines, messages.MessageMiddleware):
    pass


class OTPMiddleware(SkippedByMachines, otp.OTPMiddleware):
    """django-otp: marks request.user verified once a code was given in this session."""


# Admin pages a signed-in user still reaches before giving a code.
TWO_FACTOR_OPEN_PATHS = ("/admin/2fa/", "/admin/logout/", "/admin/login/", "/admin/jsi18n/")


class TwoFactorMiddleware:
    """Send a staff user who has an authenticator (or must have one) to give a code before any
    admin page (omni/two_factor.py). Requests outside /admin/ pass straight through."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.detour(request) or self.get_response(request)

    @staticmethod
    def detour(request):
        path = request.path_info
        if not path.startswith("/admin/") or path.startswith(TWO_FACTOR_OPEN_PATHS):
            return None
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not user.is_staff or user.is_verified():
            return None
        from omni import two_factor

        if user_has_device(user):
            target = reverse("omni-2fa:verify")
        elif two_factor.required_for(user):
            target = reverse("omni-2fa:setup")
        else:
            return None
        return redirect(f"{target}?{urlencode({'next': request.get_full_path()})}")
