"""Pages for two-factor sign-in: set up an authenticator, verify a session, turn it off."""
import io

from django import forms
from django.contrib import admin, messages
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django_otp import user_has_device
from django_otp.qr import write_qrcode_image

from omni import two_factor


class CodeForm(forms.Form):
    token = forms.RegexField(regex=r"^\s*\d{6}\s*$", label="Code from your authenticator app",
                             error_messages={"invalid": "Enter the 6 digits your authenticator app shows."},
                             widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric",
                                                           "autofocus": True}))


def _next_url(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return reverse("admin:index")


def _context(request, **extra):
    return {**admin.site.each_context(request), "next": _next_url(request), **extra}


def setup(request):
    device = two_factor.pending_device(request.user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if two_factor.enable(request, device, form.cleaned_data["token"].strip()):
            messages.success(request, "Two-factor sign-in is on: each sign-in now asks for a code.")
            return redirect(_next_url(request))
        form.add_error("token", "That code does not match; check the time on your phone and try the newest code.")
    qr = io.BytesIO()
    write_qrcode_image(device.config_url, qr)
    return render(request, "omni/web/two_factor_setup.html", _context(
        request, title="Set up two-factor sign-in", form=form, qr_svg=mark_safe(qr.getvalue().decode()),
        secret=device.key, required=two_factor.required_for(request.user),
        enabled=user_has_device(request.user)))


def verify(request):
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if two_factor.verify(request, form.cleaned_data["token"].strip()):
            return redirect(_next_url(request))
        form.add_error("token", "That code does not match, or too many were tried: wait a moment and try the newest code.")
    return render(request, "omni/web/two_factor_verify.html", _context(request, title="Two-factor sign-in", form=form))


def disable(request):
    if request.method == "POST":
        if two_factor.disable(request):
            messages.success(request, "Two-factor sign-in is off.")
        else:
            messages.error(request, "Two-factor sign-in is required for administrators and cannot be turned off.")
    return redirect(reverse("omni-2fa:setup"))


app_name = "omni-2fa"
urlpatterns = [
    path("setup/", admin.site.admin_view(setup), name="setup"),
    path("verify/", admin.site.admin_view(verify), name="verify"),
    path("disable/", admin.site.admin_view(disable), name="disable"),
]
