"""Omni's own pages inside the admin's frame (the theme's sidebar and header): the contact
search, the contact's timeline, the support figures and the 403 page. Thin: the logic is in the
modules beside them (omni/web/search.py, omni/web/timeline.py, omni/web/support_figures.py,
omni/web/home.py)."""
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.views.defaults import permission_denied as django_permission_denied

from contacts.models import Contact
from omni import audit
from omni.choices import Channel

from . import support_figures, timeline
from .inbox import REPLY
from .search import MAX_RESULTS, find_contacts


def contact_page_url(contact_id: int) -> str:
    """The contact's timeline; its admin page where the timeline is not installed."""
    try:
        return reverse("omni-web:timeline", kwargs={"contact_id": contact_id})
    except NoReverseMatch:
        return reverse("admin:contacts_contact_change", args=[contact_id])


def admin_page(request, template: str, title: str, status: int = 200, **context):
    request.current_app = admin.site.name
    return TemplateResponse(request, template, {**admin.site.each_context(request), "title": title, **context},
                            status=status)


def search(request):
    if not request.user.has_perm("contacts.view_contact"):
        raise PermissionDenied
    result = find_contacts(request.GET.get("q", ""))
    if len(result.contacts) == 1:
        return HttpResponseRedirect(contact_page_url(result.contacts[0].pk))
    rows = [(contact, contact_page_url(contact.pk)) for contact in result.contacts]
    return admin_page(request, "omni_web/search.html", "Find a contact", result=result, rows=rows,
                      search_query=result.term, max_results=MAX_RESULTS)


search = admin.site.admin_view(search)


def permission_denied(request, exception=None):
    """403: inside the admin's frame (sidebar, a way home) for staff on admin pages."""
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff and request.path.startswith("/admin/"):
        return admin_page(request, "omni_web/403.html", "You may not open this page", status=403)
    return django_permission_denied(request, exception)


# Query parameters that page or filter; a request with none of them is an opening of the page.
TIMELINE_PARAMETERS = ("cursor", "order", "channel", "kind")


def contact_timeline(request, contact_id: int):
    if not request.user.has_perm("contacts.view_contact"):
        raise PermissionDenied
    contact = get_object_or_404(Contact, pk=contact_id)
    order = timeline.OLDEST if request.GET.get("order") == timeline.OLDEST else timeline.NEWEST
    channel = request.GET.get("channel", "")
    channel = channel if channel in Channel.values else ""
    kinds = [k for k in request.GET.getlist("kind") if k in timeline.KINDS_BY_NAME]
    page = timeline.read_page(contact, request.user, order=order, channel=channel, kinds=kinds,
                              cursor=request.GET.get("cursor"))
    if not any(name in request.GET for name in TIMELINE_PARAMETERS):
        audit.record("contact.timeline_viewed", contact=contact, obj=contact, actor=request.user)
    summary = timeline.summary(contact, request.user)
    filters = request.GET.copy()
    filters.pop("cursor", None)
    filters["order"] = order
    return render(request, "omni/web/timeline.html", {
        **admin.site.each_context(request),
        "title": f"Timeline of {contact}",
        "subtitle": None,
        "contact": contact,
        "page": page,
        "summary": summary,
        "reach_rows": timeline.reach_rows(summary),
        "purposes": timeline.PURPOSE_CHOICES,
        "order": order,
        "channel": channel,
        "kinds": kinds,
        "channels": Channel.choices,
        "next_query": f"{filters.urlencode()}&cursor={page.next_cursor}" if page.next_cursor else "",
        "opts": Contact._meta,
        "may_start_conversation": request.user.has_perm(REPLY),
    })


def support_figures_page(request):
    if not support_figures.may_see_figures(request.user):
        raise PermissionDenied
    form = support_figures.period_form(request.GET)
    figures = support_figures.figures_for(form.period, request.user) if form.is_valid() else None
    return _figures_page(request, form, figures)


def _figures_page(request, form, figures, status=200):
    export_query = ""
    if form.is_valid():
        export_query = f"start={form.period.first_day:%Y-%m-%d}&end={form.period.last_day:%Y-%m-%d}"
    presets = [(f"Last {days} days", support_figures.Period.last_days(days)) for days in support_figures.PRESET_DAYS]
    return admin_page(request, "omni_web/support_figures.html", "How support is doing", status=status, form=form,
                      figures=figures, export_query=export_query, presets=presets,
                      export_url=reverse("omni-web:support-figures-export"))


def support_figures_export(request):
    if not support_figures.may_see_figures(request.user):
        raise PermissionDenied
    form = support_figures.PeriodForm(request.GET)
    rows = request.GET.get("rows", support_figures.FIGURES)
    if rows not in support_figures.EXPORTS:
        form.is_valid()
        form.add_error(None, f"Export {' or '.join(support_figures.EXPORTS)}, not “{rows}”.")
    if not form.is_valid():
        return _figures_page(request, form, None, status=400)
    export = support_figures.export(form.period, rows=rows, actor=request.user)
    response = StreamingHttpResponse(export.lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    return response
