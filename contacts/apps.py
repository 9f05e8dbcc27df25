from django.apps import AppConfig


class ContactsConfig(AppConfig):
    name = "contacts"

    def ready(self):
        # Registers contacts' own segment filter kinds (attribute, lifecycle stage, event).
        from . import segments  # noqa: F401
