from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Journeys and campaigns"

    def ready(self):
        from contacts import hooks

        from . import tasks  # noqa: F401  (registers the tasks omni.lib.tasks.task_named looks up)
        from .actions import journey_steps_setting_stage, journeys_for_stage

        hooks.lifecycle_stage_used.connect(journey_steps_setting_stage, dispatch_uid="campaigns.lifecycle_stage_used")
        hooks.lifecycle_stage_used.connect(journeys_for_stage, dispatch_uid="campaigns.journeys_for_stage")
        from .erasure import erase_campaign_data

        hooks.erase_contact.connect(erase_campaign_data, dispatch_uid="campaigns.erase_contact")
