"""The journey page's approval box (above the form) and change log (below it)."""
from django import template
from django.urls import reverse
from unfold.widgets import BUTTON_CLASSES

from campaigns.actions import journey_digest
from campaigns.journey_page import page_draft
from campaigns.journey_approval import journey_approval_state
from campaigns.journey_change_log import CHANGE_LOG_LIMIT, journey_changes
from campaigns.models import Journey

register = template.Library()

SECONDARY_BUTTON_CLASSES = ("border border-base-200 bg-white cursor-pointer font-medium px-3 py-2 rounded-default "
                            "shadow-xs text-sm whitespace-nowrap dark:bg-base-900 dark:border-base-700")


@register.inclusion_tag("campaigns/journey/approval_box.html", takes_context=True)
def journey_approval(context, journey: Journey):
    """The approval in words, and the buttons this user may use: Request approval (who may edit
    the journey), Approve (an approver who is not the requester)."""
    user = context["request"].user
    snapshot = page_draft(journey)
    state = journey_approval_state(journey, snapshot)
    may_request = user.has_perm("campaigns.change_journey") and state.status in ("needed", "reset", "stale")
    may_approve = (user.has_perm(Journey.APPROVE_PERMISSION) and state.status == "requested"
                   and state.requested_by_id != user.pk)
    return {
        "state": state,
        "may_request": may_request,
        "may_approve": may_approve,
        "approver_is_requester": (state.status == "requested" and state.requested_by_id == user.pk
                                  and user.has_perm(Journey.APPROVE_PERMISSION)),
        "digest": journey_digest(snapshot),
        "request_url": reverse("admin:campaigns_journey_request_approval", args=[journey.pk]),
        "approve_url": reverse("admin:campaigns_journey_approve", args=[journey.pk]),
        "csrf_token": context.get("csrf_token"),
        "button_classes": " ".join(BUTTON_CLASSES),
        "secondary_classes": SECONDARY_BUTTON_CLASSES,
    }


@register.inclusion_tag("campaigns/journey/change_log_list.html", takes_context=True)
def journey_change_log(context, journey: Journey):
    """The journey's latest changes, newest first, with a link to the audit log for more."""
    changes, more = journey_changes(journey)
    user = context["request"].user
    audit_url = ""
    if user.has_perm("omni.view_auditentry"):
        audit_url = (f"{reverse('admin:omni_auditentry_changelist')}?object_type=campaigns.journey"
                     f"&object_id={journey.pk}")
    return {"changes": changes, "more": more, "limit": CHANGE_LOG_LIMIT, "audit_url": audit_url}
