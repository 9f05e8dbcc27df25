from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class ContactsConfig(AppConfig):
    name = "contacts"

    def ready(self):
        from .data_types import forget_definitions
        from .models import AttributeDefinition, EventPropertyDefinition, LifecycleStage

        # A definition or stage saved here is checked at once by this process.
        for model in (AttributeDefinition, EventPropertyDefinition, LifecycleStage):
            for signal in (post_save, post_delete):
                signal.connect(forget_definitions, sender=model,
                               dispatch_uid=f"contacts.forget_definitions.{model.__name__}")
        # Registers contacts' own segment filter kinds (attribute, lifecycle stage, event).
        from . import hooks, segments, tasks  # noqa: F401  (tasks: registers the import's Celery tasks)

        hooks.lifecycle_stage_used.connect(segments.segments_filtering_on_stage,
                                           dispatch_uid="contacts.segments_filtering_on_stage")
