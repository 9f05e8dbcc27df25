"""Two-factor sign-in for staff: a TOTP authenticator app (django-otp) on top of the password.

Offered to every staff user, required for administrators (superusers or the "Administrators"
group) when settings.OMNI_REQUIRE_2FA_FOR_ADMINS is set. A user with a confirmed authenticator,
or one who must have one, reaches no admin page until the session is verified by a code
(omni/web/two_factor.py; omni.middleware.TwoFactorMiddleware sends them there). Enabling and
disabling are audited.
"""
from django.conf import settings
from django.db import transaction
from django_otp import devices_for_user, login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from omni import audit
from omni.lib.admin import is_administrator

DEVICE_NAME = "Authenticator app"


def required_for(user) -> bool:
    return settings.OMNI_REQUIRE_2FA_FOR_ADMINS and is_administrator(user)


def pending_device(user) -> TOTPDevice:
    """The unconfirmed authenticator the user is setting up (made now if there is none)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-id").first()
    return device or TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)


@transaction.atomic
def enable(request, device: TOTPDevice, token: str) -> bool:
    """Confirm a pending authenticator with a code it shows; the session counts as verified."""
    if device.user_id != request.user.pk or device.confirmed or not device.verify_token(token):
        return False
    TOTPDevice.objects.filter(user=request.user, confirmed=True).delete()  # one authenticator at a time
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    otp_login(request, device)
    audit.record("auth.two_factor_enabled", actor=request.user, reason="totp",
                 data={"user_id": request.user.pk})
    return True


@transaction.atomic
def verify(request, token: str) -> bool:
    """Verify this session with a code from the user's authenticator. The devices are locked
    (for_verify) so django-otp's throttling of wrong guesses holds under concurrent requests."""
    for device in devices_for_user(request.user, confirmed=True, for_verify=True):
        if device.verify_token(token):
            otp_login(request, device)
            return True
    return False


@transaction.atomic
def disable(request) -> bool:
    """Remove the user's authenticators; refused while two-factor is required for them."""
    if required_for(request.user):
        return False
    removed, _ = TOTPDevice.objects.filter(user=request.user).delete()
    if removed:
        audit.record("auth.two_factor_disabled", actor=request.user, reason="by_user",
                     data={"user_id": request.user.pk})
    return bool(removed)
