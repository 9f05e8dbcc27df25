from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "channels"
    verbose_name = "Channels and deliveries"

    def ready(self):
        # Registers the tasks that publishing and the sandbox hand work to by name (omni/lib/tasks.py).
        from . import tasks  # noqa: F401
