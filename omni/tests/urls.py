"""Endpoints that exist only for the API front door's tests."""
from django.urls import path

from omni.api import api_view, json_response
from omni.models import ApiScope


@api_view(scope=ApiScope.EVENTS_WRITE, methods=["POST"])
def echo(request):
    return json_response({"key": request.api_key.prefix, "body": request.json})


urlpatterns = [path("echo", echo)]
