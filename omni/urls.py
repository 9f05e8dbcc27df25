from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from . import views

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    # Before the admin's own urls, whose catch-all would answer these addresses first.
    path("admin/", include("omni.web.urls")),
    path("admin/", admin.site.urls),
    path("webhooks/", include("channels.webhooks.urls")),
    path("api/v1/", include("contacts.urls")),
    # Links in emails: unsubscribe (one-click POST), preferences, double opt-in confirmation.
    path("u/", include("compliance.urls")),
]
