from django.apps import AppConfig


class MessageTemplatesConfig(AppConfig):
    # "templates" would clash with the template machinery's vocabulary; the label keeps
    # table names and permissions unambiguous.
    name = "templates"
    label = "message_templates"
    verbose_name = "Message templates"
