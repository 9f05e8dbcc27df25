"""Omni's web layer pages, under /admin/ beside the admin's own (its login and staff check apply): namespace "omni-web"."""
from django.contrib import admin
from django.urls import path

from . import views

app_name = "omni-web"

urlpatterns = [
    path("find/", views.search, name="search"),
    path("contacts/<int:contact_id>/timeline/", admin.site.admin_view(views.contact_timeline), name="timeline"),
    path("support/figures/", admin.site.admin_view(views.support_figures_page), name="support-figures"),
    path("support/figures/export/", admin.site.admin_view(views.support_figures_export), name="support-figures-export"),
]
