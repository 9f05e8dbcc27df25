from django.apps import AppConfig


class OmniConfig(AppConfig):
    name = "omni"
    verbose_name = "Omni platform"

    def ready(self):
        from . import checks  # noqa: F401  (registers system checks)
