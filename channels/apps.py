from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "channels"
    verbose_name = "Channels and deliveries"

    def ready(self):
        from compliance import hooks

        from .consent_messages import send_opt_in_confirmation

        hooks.opted_in.connect(send_opt_in_confirmation, dispatch_uid="channels.opted_in")
