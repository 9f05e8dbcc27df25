"""Omni's web layer pages, under /admin/ beside the admin's own (the admin's login guards them)."""
from django.urls import path

from . import views

app_name = "omni-web"

urlpatterns = [
    path("find/", views.search, name="search"),
]
