"""Pages of omni's web layer that read across apps. Thin: the reading is in the modules beside them."""
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, render

from contacts.models import Contact
from omni import audit
from omni.choices import Channel, Purpose

from . import timeline

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
    reach_rows = [(label, [summary.reachability[purpose][channel_value] for purpose in Purpose.values])
                  for channel_value, label in Channel.choices]
    return render(request, "omni/web/timeline.html", {
        **admin.site.each_context(request),
        "title": f"Timeline of {contact}",
        "subtitle": None,
        "contact": contact,
        "page": page,
        "summary": summary,
        "reach_rows": reach_rows,
        "purposes": Purpose.choices,
        "order": order,
        "channel": channel,
        "kinds": kinds,
        "channels": Channel.choices,
        "next_query": f"{filters.urlencode()}&cursor={page.next_cursor}" if page.next_cursor else "",
        "opts": Contact._meta,
    })
