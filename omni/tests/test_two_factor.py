"""Two-factor sign-in: offered to staff, required of administrators when the setting says so,
verified per session with a code from an authenticator app, each change audited."""
import pytest
from django.contrib.auth.models import User
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from omni.models import AuditEntry

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-password-123"


def code_for(device: TOTPDevice, drift: int = 0) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits)
    totp.drift = drift
    return f"{totp.token():06d}"


def sign_in(client, username):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": PASSWORD})


@pytest.fixture
def maria():
    return User.objects.create_user("maria", password=PASSWORD, is_staff=True, is_superuser=True)


def test_a_staff_user_turns_two_factor_on_and_the_next_sign_in_asks_for_a_code(client, maria, settings):
    # (django-otp slows guessing down after a wrong code; this test's own wrong codes need no wait)
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    # given a signed-in user who sets up an authenticator
    sign_in(client, "maria")
    page = client.get("/admin/2fa/setup/")
    assert page.status_code == 200 and b"<svg" in page.content
    device = TOTPDevice.objects.get(user=maria, confirmed=False)

    # a wrong code is refused and turns nothing on
    assert b"does not match" in client.post("/admin/2fa/setup/", {"token": "000000"}).content
    assert not TOTPDevice.objects.filter(user=maria, confirmed=True).exists()

    # when the right code is entered
    answer = client.post("/admin/2fa/setup/", {"token": code_for(device)})

    # then it is on, audited, and this session counts as verified
    assert answer.status_code == 302
    assert TOTPDevice.objects.get(user=maria).confirmed
    assert AuditEntry.objects.filter(action="auth.two_factor_enabled", actor_id=maria.pk).count() == 1
    assert client.get("/admin/").status_code == 200

    # and a new session reaches no admin page before a code
    client.post("/admin/logout/")
    sign_in(client, "maria")
    detour = client.get("/admin/contacts/contact/")
    assert detour.status_code == 302 and detour["Location"].startswith("/admin/2fa/verify/")
    assert client.post("/admin/2fa/verify/", {"token": "123456"}).status_code == 200  # refused, asks again
    assert client.get("/admin/").status_code == 302
    # (the code used at setup cannot be used again: the next one is, as the app shows it 30 s later)
    verified = client.post("/admin/2fa/verify/?next=/admin/contacts/contact/",
                           {"token": code_for(TOTPDevice.objects.get(user=maria), drift=1)})
    assert verified.status_code == 302 and verified["Location"] == "/admin/contacts/contact/"
    assert client.get("/admin/contacts/contact/").status_code == 200


def test_without_an_authenticator_nothing_changes_unless_the_setting_requires_it_of_administrators(
        client, maria, settings):
    sign_in(client, "maria")
    assert client.get("/admin/").status_code == 200

    settings.OMNI_REQUIRE_2FA_FOR_ADMINS = True
    detour = client.get("/admin/")
    assert detour.status_code == 302 and detour["Location"].startswith("/admin/2fa/setup/")

    # a staff user who is no administrator is not held to it
    User.objects.create_user("sam", password=PASSWORD, is_staff=True)
    client.post("/admin/logout/")
    sign_in(client, "sam")
    assert client.get("/admin/").status_code == 200


def test_turning_it_off_is_audited_and_refused_while_required(client, maria, settings):
    sign_in(client, "maria")
    client.get("/admin/2fa/setup/")
    client.post("/admin/2fa/setup/", {"token": code_for(TOTPDevice.objects.get(user=maria))})

    settings.OMNI_REQUIRE_2FA_FOR_ADMINS = True
    client.post("/admin/2fa/disable/")
    assert TOTPDevice.objects.filter(user=maria, confirmed=True).exists()

    settings.OMNI_REQUIRE_2FA_FOR_ADMINS = False
    client.post("/admin/2fa/disable/")
    assert not TOTPDevice.objects.filter(user=maria).exists()
    assert AuditEntry.objects.filter(action="auth.two_factor_disabled", actor_id=maria.pk).count() == 1


def test_the_api_and_the_webhooks_are_untouched_by_two_factor(client, settings):
    settings.OMNI_REQUIRE_2FA_FOR_ADMINS = True
    assert client.get("/healthz").status_code == 200
    assert client.post("/api/v1/events", "{}", content_type="application/json").status_code == 401


def test_every_admin_page_offers_two_factor_sign_in_in_the_account_menu(client, maria):
    sign_in(client, "maria")

    page = client.get("/admin/contacts/contact/").content.decode()

    assert 'href="/admin/2fa/setup/"' in page and "Two-factor sign-in" in page
    assert 'href="/admin/password_change/"' in page
