"""The campaign page's A/B results and health sections (campaigns/ab_test.py, campaigns/auto_pause.py).

Placeholders until those sections land: each tag renders nothing yet."""
from django import template

register = template.Library()


@register.simple_tag
def ab_results(campaign):
    return ""


@register.simple_tag
def campaign_health(campaign):
    return ""
