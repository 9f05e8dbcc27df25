from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "channels"
    verbose_name = "Channels and deliveries"

    def ready(self):
        from compliance import hooks

        # Registers the tasks that publishing and the sandbox hand work to by name (omni/lib/tasks.py).
        from . import tasks  # noqa: F401
        from .confirmations import send_double_opt_in_confirmation
        from .consent_messages import send_opt_in_confirmation
        from .segment_filters import register_segment_filters

        hooks.double_opt_in_requested.connect(send_double_opt_in_confirmation,
                                              dispatch_uid="channels.double_opt_in_requested")
        hooks.opted_in.connect(send_opt_in_confirmation, dispatch_uid="channels.opted_in")
        from contacts import hooks as contact_hooks

        from .erasure import erase_channel_data

        contact_hooks.erase_contact.connect(erase_channel_data, dispatch_uid="channels.erase_contact")
        # The engagement filter of segments (contacts.segments keeps the registry).
        register_segment_filters()
