from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"

    def ready(self):
        from contacts import hooks
        from omni import audit_verification

        from . import checks  # noqa: F401  (registers the start-up checks)
        from .actions import receive_submitted_consents
        from .decisions import sealed_decision_problems
        from .models import frequency_caps_using_stage
        from .segment_filters import register_segment_filters

        hooks.consents_submitted.connect(receive_submitted_consents, dispatch_uid="compliance.consents_submitted")
        hooks.lifecycle_stage_used.connect(frequency_caps_using_stage, dispatch_uid="compliance.lifecycle_stage_used")
        from .erasure import erase_compliance_data

        hooks.erase_contact.connect(erase_compliance_data, dispatch_uid="compliance.erase_contact")
        # verify_audit checks the gate's decisions against the digests sealed for them.
        audit_verification.register_record_check("compliance.decisions", sealed_decision_problems)
        # The consent filter of segments (contacts.segments keeps the registry).
        register_segment_filters()
