"""Pages a contact reaches from a link in an email, without logging in: one-click unsubscribe,
the preference page, and the double opt-in confirmation. Thin: compliance/preferences.py holds
the logic; a refused link (forged, expired, used) changes nothing and the page says so.

No cookie and no CSRF token: the signed, single-use token in the link or form is the only
authority, so a mailbox provider's one-click POST works, and a forged request has nothing to
ride on (there is no session to abuse).
"""
from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from omni.choices import Channel

from . import links, preferences
from .links import LinkRefused
from .models import ConsentText, ConsentTextKey

REFUSED_STATUS = {"invalid": 400, "expired": 410, "used": 409, "superseded": 409}


def _request_facts(request) -> dict:
    """What consent evidence keeps of the request: when, from which address and browser."""
    return {"at": timezone.now().isoformat(), "ip": request.META.get("REMOTE_ADDR", ""),
            "user_agent": request.META.get("HTTP_USER_AGENT", "")[:300]}


def _refused(request, refused: LinkRefused) -> HttpResponse:
    return render(request, "compliance/link_refused.html", {"refused": refused}, status=REFUSED_STATUS[refused.why])


def _preference_page(request, link: links.Link, *, status: int = 200, error: str = "") -> HttpResponse:
    scopes = preferences.scopes_of(link.contact)
    reachable = list(dict.fromkeys(scope.channel for scope in scopes))
    consent_text = ConsentText.objects.current(ConsentTextKey.PREFERENCE_PAGE)
    context = {
        "contact": link.contact,
        "scopes": scopes,
        "consent_text": consent_text,
        "form_token": links.form_token(link, consent_text.version if consent_text else None),
        "channels": [(value, Channel(value).label) for value in reachable],
        "error": error,
    }
    return render(request, "compliance/preferences.html", context, status=status)


@never_cache
@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request, token: str):
    """GET: the preference page (changes nothing: mail scanners follow links). POST: the RFC 8058
    one-click unsubscribe from marketing email."""
    try:
        if request.method != "POST":
            return _preference_page(request, links.read_unsubscribe_token(token))
        if request.POST.get("List-Unsubscribe") != "One-Click":
            return HttpResponse("A one-click unsubscribe posts List-Unsubscribe=One-Click.", status=400,
                                content_type="text/plain")
        preferences.unsubscribe_one_click(token, _request_facts(request))
    except LinkRefused as refused:
        return _refused(request, refused)
    return render(request, "compliance/unsubscribed.html")


@never_cache
@csrf_exempt
@require_POST
def save_preferences(request):
    """The preference form: each form is single use."""
    token = request.POST.get("form", "")
    preferred = request.POST.get("preferred_channel", "")
    if preferred and preferred not in Channel.values:
        return HttpResponse("Unknown channel.", status=400, content_type="text/plain")
    try:
        saved = preferences.save_preferences(
            token, receive=set(request.POST.getlist("receive")), everything=bool(request.POST.get("everything")),
            preferred_channel=preferred, request_facts=_request_facts(request))
    except LinkRefused as refused:
        return _refused(request, refused)
    return render(request, "compliance/preferences_saved.html", {"saved": saved})


@never_cache
@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request, token: str):
    """Double opt-in: GET shows the button (changes nothing), POST confirms."""
    try:
        link = links.read_confirmation_token(token)
        pending = preferences.pending_change_of(link)
        if request.method != "POST":
            consent_text = ConsentText.objects.current(ConsentTextKey.DOUBLE_OPT_IN)
            return render(request, "compliance/confirm.html", {
                "pending": pending, "consent_text": consent_text,
                "shown": links.shown_text_token(consent_text.version if consent_text else None)})
        shown = links.read_shown_text_token(request.POST.get("shown", ""))
        preferences.confirm_double_opt_in(token, _request_facts(request), text_version=shown)
    except LinkRefused as refused:
        return _refused(request, refused)
    return render(request, "compliance/confirmed.html", {"pending": pending})
