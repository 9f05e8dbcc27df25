"""The journey page's approval buttons, as JourneyAdmin URLs (a mixin, so the admin class stays a
list of what it shows): POST only, each calling campaigns/journey_approval.py and coming back to
the journey page with what happened, or why not, in a message.

- Request approval: whoever may change the journey (marketers).
- Approve: whoever may see the journey and holds campaigns.approve_journey; the rule that the
  requester may not approve is journey_approval's, so its refusal is the message.
"""
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse

from omni.lib.approval import ApprovalRefused

from .journey_approval import approve_journey, request_journey_approval
from .models import Journey


class JourneyApprovalAdminMixin:
    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:journey_id>/approval/request/", view(self.request_approval_view),
                 name="campaigns_journey_request_approval"),
            path("<int:journey_id>/approval/approve/", view(self.approve_view), name="campaigns_journey_approve"),
            *super().get_urls(),
        ]

    def has_approve_permission(self, request, obj=None):
        return self.has_view_permission(request, obj) and request.user.has_perm(Journey.APPROVE_PERMISSION)

    def request_approval_view(self, request, journey_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        journey = get_object_or_404(Journey, pk=journey_id)
        if not self.has_change_permission(request, journey):
            raise PermissionDenied
        try:
            request_journey_approval(journey, actor=request.user)
        except ApprovalRefused as refused:
            messages.error(request, f"Approval was not requested. {' '.join(refused.messages)}")
        else:
            messages.success(request, "Approval requested: a marketing approver can now approve this draft. "
                                      "Editing it withdraws the request.")
        return self._back(journey)

    def approve_view(self, request, journey_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        journey = get_object_or_404(Journey, pk=journey_id)
        if not self.has_view_permission(request, journey):
            raise PermissionDenied
        try:
            approve_journey(journey, actor=request.user, seen_digest=request.POST.get("digest") or "")
        except ApprovalRefused as refused:
            messages.error(request, f"Not approved. {' '.join(refused.messages)}")
        else:
            messages.success(request, "Approved: this draft may now be activated. Any edit resets the approval.")
        return self._back(journey)

    def _back(self, journey):
        return HttpResponseRedirect(reverse("admin:campaigns_journey_change", args=[journey.pk]))

