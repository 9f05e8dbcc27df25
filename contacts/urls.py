from django.urls import path

from . import api

app_name = "contacts_api"

urlpatterns = [
    path("contacts/<str:external_id>", api.contact_endpoint, name="contact"),
    path("contacts/<str:external_id>/erase", api.post_erase, name="contact_erase"),
    path("events", api.post_event, name="events"),
    path("events/batch", api.post_event_batch, name="event_batch"),
]
