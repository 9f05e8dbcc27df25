"""Omni's web layer pages, under /admin/ beside the admin's own (its login and staff check apply): namespace "omni-web"."""
from django.contrib import admin
from django.urls import path

from . import export_views, inbox_views, views

app_name = "omni-web"

urlpatterns = [
    path("find/", views.search, name="search"),
    path("contacts/<int:contact_id>/timeline/", admin.site.admin_view(views.contact_timeline), name="timeline"),
    path("contacts/<int:contact_id>/start-conversation/", inbox_views.start_conversation, name="start_conversation"),
    path("inbox/", inbox_views.inbox_page, name="inbox"),
    path("inbox/bulk/", inbox_views.inbox_bulk, name="inbox_bulk"),
    path("inbox/availability/", inbox_views.availability, name="availability"),
    path("inbox/<int:conversation_id>/", inbox_views.thread_page, name="thread"),
    path("inbox/<int:conversation_id>/<slug:action>/", inbox_views.thread_action, name="thread_action"),
    path("support/figures/", admin.site.admin_view(views.support_figures_page), name="support-figures"),
    path("compliance/messages/export/", export_views.message_export, name="message-export"),
    path("contacts/<int:contact_id>/report/", export_views.contact_report, name="contact-report"),
    path("support/figures/export/", admin.site.admin_view(views.support_figures_export), name="support-figures-export"),
]
