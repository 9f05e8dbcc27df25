"""The journey page's testing section (campaigns/templates/campaigns/journey/testing.html) and the
JourneyAdmin URLs and actions behind it: start testing, enroll a test contact, skip a test
contact's wait, send a test of a step, clone. Each view checks the right to change journeys,
calls one function of campaigns.actions or campaigns.journey_testing and goes back to the page.
"""
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse

from . import actions, journey_testing
from .models import Enrollment, Journey

SECTION = "journey-testing"


def journey_page(journey: Journey, **params) -> str:
    """The journey's change page (at the testing section), with `params` in its query string."""
    query = f"?{urlencode(params)}" if params else ""
    return f"{reverse('admin:campaigns_journey_change', args=[journey.pk])}{query}#{SECTION}"


def _changes_journey(view):
    """A POST-only view of a journey the user may change: called with the journey."""
    def wrapped(self, request, journey_id, *args, **kwargs):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        journey = get_object_or_404(Journey, pk=journey_id)
        if not self.has_change_permission(request, journey):
            raise PermissionDenied
        return view(self, request, journey, *args, **kwargs)
    return wrapped


class JourneyTestingAdminMixin:
    """JourneyAdmin's testing URLs and its "Test with test contacts" and "Clone" actions."""

    def get_urls(self):
        views = [
            ("start-testing", self.start_testing_view, "start_testing"),
            ("test-enroll", self.test_enroll_view, "test_enroll"),
            ("test-send", self.test_send_view, "test_send"),
            ("skip-wait/<int:enrollment_id>", self.skip_wait_view, "skip_wait"),
            ("clone", self.clone_view, "clone"),
        ]
        own = [path(f"<int:journey_id>/testing/{route}/", self.admin_site.admin_view(view),
                    name=f"campaigns_journey_{name}") for route, view, name in views]
        return own + super().get_urls()

    @_changes_journey
    def start_testing_view(self, request, journey):
        self._apply_testing(request, journey)
        return HttpResponseRedirect(journey_page(journey))

    @_changes_journey
    def test_enroll_view(self, request, journey):
        try:
            contact = journey_testing.test_contact(request.POST.get("contact"))
            actions.enroll_contact(journey, contact, actor=request.user)
        except ValidationError as exc:
            messages.error(request, f"Nobody was enrolled: {' '.join(exc.messages)}")
        else:
            messages.success(request, f"{contact} enrolled in {journey.name}; the next tick runs their first step.")
        return HttpResponseRedirect(journey_page(journey))

    @_changes_journey
    def test_send_view(self, request, journey):
        try:
            contact = journey_testing.test_contact(request.POST.get("contact"))
            message = journey_testing.send_test_of_step(journey, request.POST.get("step", ""), contact,
                                                        actor=request.user)
        except ValidationError as exc:
            messages.error(request, f"No test was sent: {' '.join(exc.messages)}")
        else:
            messages.success(request, f"Test of step {request.POST.get('step')} to {contact}: message {message.pk}, "
                                      f"{message.get_status_display().lower()}"
                                      f"{f' ({message.status_reason})' if message.status_reason else ''}.")
        return HttpResponseRedirect(journey_page(journey))

    @_changes_journey
    def skip_wait_view(self, request, journey, enrollment_id):
        enrollment = get_object_or_404(Enrollment.objects.select_related("contact", "journey"), pk=enrollment_id,
                                       journey=journey)
        try:
            journey_testing.skip_wait(enrollment, actor=request.user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, f"{enrollment.contact}'s wait at step {enrollment.current_step_key} skipped: "
                                      f"the next tick runs it.")
        return HttpResponseRedirect(journey_page(journey))

    @_changes_journey
    def clone_view(self, request, journey):
        if not self.has_add_permission(request):
            raise PermissionDenied
        clone = journey_testing.clone_journey(journey, actor=request.user)
        messages.success(request, f"{journey.name} cloned as {clone.name} ({clone.slug}), a draft.")
        return HttpResponseRedirect(reverse("admin:campaigns_journey_change", args=[clone.pk]))

    def _apply_testing(self, request, journey) -> bool:
        try:
            actions.start_testing_journey(journey, actor=request.user)
        except ValidationError as exc:
            messages.error(request, f"{journey.name} was not put into testing: {' '.join(exc.messages)}")
            return False
        messages.success(request, f"{journey.name} is being tested on version {journey.live_version.number}: it "
                                  f"enrolls only test contacts.")
        return True

    @admin.action(description="Test with test contacts (publish the draft; only test contacts enter)",
                  permissions=["change"])
    def start_testing(self, request, queryset):
        for journey in queryset:
            self._apply_testing(request, journey)

    @admin.action(description="Clone (a draft copy with its steps)", permissions=["add"])
    def clone(self, request, queryset):
        for journey in queryset:
            clone = journey_testing.clone_journey(journey, actor=request.user)
            messages.success(request, f"{journey.name} cloned as {clone.name} ({clone.slug}), a draft.")
