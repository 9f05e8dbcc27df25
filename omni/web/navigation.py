"""The admin's sidebar: every registered model in one group, shown to a user only where they
may view it (Django's own permission checks, through AdminSite.get_app_list), so no role's
list is written by hand. Settings is for administrators only: its pages refuse everyone
else (omni.lib.admin.AdministratorsOnlyMixin), so it never shows to them either.

Unfold reads this through UNFOLD["SIDEBAR"]["navigation"] on every admin page.
"""
from django.contrib import admin
from django.urls import reverse

from .support_figures import may_see_figures

MARKETING, SUPPORT, COMPLIANCE, ACTIVITY, SETTINGS = "Marketing", "Support", "Compliance", "Activity", "Settings"

# (app label, model name) in the order the sidebar lists them.
GROUPS = {
    MARKETING: [
        ("contacts", "contact"), ("contacts", "contactimport"), ("contacts", "segment"), ("contacts", "device"),
        ("contacts", "attributedefinition"), ("contacts", "eventpropertydefinition"), ("contacts", "lifecyclestage"),
        ("message_templates", "template"), ("message_templates", "templatevariant"),
        ("message_templates", "templateversion"),
        ("campaigns", "journey"), ("campaigns", "journeystep"), ("campaigns", "enrollment"),
        ("campaigns", "campaign"), ("campaigns", "campaignrecipient"), ("channels", "defaultchannelplan"),
        ("omni", "webhookendpoint"),
    ],
    SUPPORT: [
        ("channels", "conversation"), ("channels", "blockedsender"), ("channels", "agentstatus"),
        ("channels", "supportqueue"), ("channels", "conversationtag"), ("channels", "savedreply"),
        ("channels", "escalationrule"), ("channels", "autoresponse"), ("channels", "servicelevel"),
        ("channels", "businesshours"),
    ],
    COMPLIANCE: [
        ("compliance", "consent"), ("compliance", "consentchange"), ("compliance", "consenttext"),
        ("compliance", "suppression"),
        ("compliance", "quiethours"), ("compliance", "frequencycap"), ("compliance", "replayrun"),
        ("channels", "arbitrationrule"),
        ("compliance", "sendingpause"),
        ("compliance", "keywordlist"), ("message_templates", "optoutdisclosure"), ("compliance", "decision"),
        ("compliance", "sendledger"), ("contacts", "erasurerequest"), ("omni", "auditentry"),
    ],
    ACTIVITY: [
        ("channels", "message"), ("channels", "delivery"), ("channels", "deliveryevent"),
        ("channels", "inboundmessage"), ("channels", "outboxmessage"), ("contacts", "contactevent"),
        ("omni", "webhookcall"),
    ],
    SETTINGS: [
        ("omni", "apikey"), ("django_celery_beat", "periodictask"), ("django_celery_beat", "intervalschedule"),
        ("django_celery_beat", "crontabschedule"), ("django_celery_beat", "solarschedule"),
        ("django_celery_beat", "clockedschedule"), ("auth", "user"), ("auth", "group"),
    ],
}
# Whole apps that are settings: their models need no entry above (sign-in apps add lockouts
# and two-factor devices there).
SETTINGS_APPS = {"auth", "django_celery_beat", "axes", "otp_totp", "otp_static", "otp_email"}

GROUP_OF = {key: group for group, keys in GROUPS.items() for key in keys}
ORDER_OF = {key: position for keys in GROUPS.values() for position, key in enumerate(keys)}


def group_of(app_label: str, model_name: str) -> str | None:
    return GROUP_OF.get((app_label, model_name)) or (SETTINGS if app_label in SETTINGS_APPS else None)


def ungrouped_models(site=admin.site) -> list[str]:
    """Registered models the sidebar has no group for (a test keeps this empty)."""
    return sorted(f"{model._meta.app_label}.{model._meta.model_name}" for model in site._registry
                  if group_of(model._meta.app_label, model._meta.model_name) is None)


def sidebar(request) -> list[dict]:
    """Unfold's navigation: the groups with the pages this user may open, in GROUPS' order."""
    found = {group: [] for group in GROUPS}
    for app in admin.site.get_app_list(request):
        for model in app["models"]:
            if not model.get("admin_url"):
                continue
            key = (app["app_label"], model["object_name"].lower())
            group = group_of(*key) or SETTINGS
            found[group].append((ORDER_OF.get(key, len(ORDER_OF)), {"title": model["name"], "link": model["admin_url"]}))
    if request.user.has_perm("channels.view_conversation"):
        found[SUPPORT].append((-1, {"title": "Inbox", "link": reverse("omni-web:inbox")}))
    if request.user.has_perm("contacts.view_contact"):
        found[SUPPORT].append((len(ORDER_OF) + 1, {"title": "Contact search", "link": reverse("omni-web:search")}))
    if may_see_figures(request.user):
        found[SUPPORT].append((len(ORDER_OF) + 2, {"title": "Support figures", "link": reverse("omni-web:support-figures")}))
    if request.user.has_perm("omni.export_auditentry"):
        found[COMPLIANCE].append((len(ORDER_OF) + 1, {"title": "Message export", "link": reverse("omni-web:message-export")}))
    return [{"title": group, "separator": True, "items": [item for _, item in sorted(items, key=lambda pair: pair[0])]}
            for group, items in found.items() if items]
