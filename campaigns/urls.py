from django.urls import path

from . import api

app_name = "campaigns_api"

urlpatterns = [
    path("journeys/<slug:slug>/enrollments", api.post_enrollment, name="enrollments"),
]
