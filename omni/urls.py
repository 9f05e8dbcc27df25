from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from . import views

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    # Before the admin's own URLs, which would take /admin/2fa/ for an app label.
    path("admin/2fa/", include("omni.web.two_factor")),
    path("admin/", include("omni.web.urls")),
    path("admin/", admin.site.urls),
    path("webhooks/", include("channels.webhooks.urls")),
    path("api/v1/", include("contacts.urls")),
    path("api/v1/", include("campaigns.urls")),
    # Links in emails: unsubscribe (one-click POST), preferences, double opt-in confirmation.
    path("u/", include("compliance.urls")),
]

# A page a user may not open answers 403 inside the admin's frame, with the sidebar and a way home.
handler403 = "omni.web.views.permission_denied"
