"""Browser middleware that the JSON API skips.

API requests authenticate with an API key, never a session or a cookie: sessions, users and
messages only cost an API request time.
"""
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions

API_PATH_PREFIX = "/api/"


class SkippedByApi:
    """Mixed into a middleware class: requests under API_PATH_PREFIX go straight past it."""

    def __call__(self, request):
        if request.path_info.startswith(API_PATH_PREFIX):
            return self.get_response(request)
        return super().__call__(request)


class SessionMiddleware(SkippedByApi, sessions.SessionMiddleware):
    pass


class AuthenticationMiddleware(SkippedByApi, auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(SkippedByApi, messages.MessageMiddleware):
    pass
