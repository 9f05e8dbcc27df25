from django.urls import path

from . import views

app_name = "compliance"

urlpatterns = [
    path("unsubscribe/<str:token>", views.unsubscribe, name="unsubscribe"),
    path("preferences", views.save_preferences, name="preferences"),
    path("confirm/<str:token>", views.confirm, name="confirm"),
]
