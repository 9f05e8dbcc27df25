from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"

    def ready(self):
        from contacts import hooks

        from . import checks  # noqa: F401  (registers the start-up checks)
        from .actions import record_submitted_consents

        hooks.consents_submitted.connect(record_submitted_consents, dispatch_uid="compliance.consents_submitted")
