from django.urls import path

from . import sns, twilio

app_name = "webhooks"

urlpatterns = [
    path("ses/", sns.ses_events, name="ses"),
    path("twilio/status/", twilio.status_callback, name="twilio-status"),
    path("twilio/inbound/", twilio.inbound_message, name="twilio-inbound"),
]
