"""Staff sign-in: failed logins are throttled and locked out (django-axes), each lockout audited;
sessions end after an idle time."""
import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from omni.models import AuditEntry, AuditPersonalData

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(settings):
    settings.AXES_FAILURE_LIMIT = 3
    return User.objects.create_user("maria", password="right-password-123", is_staff=True, is_superuser=True)


def sign_in(client, password, username="maria"):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password},
                       REMOTE_ADDR="203.0.113.7")


def test_repeated_failed_sign_ins_lock_the_account_out_from_that_address_and_are_audited(client, staff):
    # when a password is guessed wrong as often as the limit allows
    answers = [sign_in(client, f"guess-{n}") for n in range(3)]

    # then the last answer is the lockout page, and even the right password is refused now
    assert [a.status_code for a in answers[:2]] == [200, 200]
    assert answers[2].status_code == 429 and b"Too many failed sign-ins" in answers[2].content
    assert sign_in(client, "right-password-123").status_code == 429
    assert client.get("/admin/").status_code == 302  # still signed out

    # and the lockout is audited, then the attempt made while locked, with who and where kept
    # outside the chain
    entries = list(AuditEntry.objects.filter(action="auth.locked_out").order_by("id"))
    assert [(e.reason, e.data) for e in entries] == [
        ("too_many_failed_logins", {"failure_limit": 3, "failures": 3}),
        ("attempt_while_locked_out", {"failure_limit": 3, "failures": 4}),
    ]
    assert AuditPersonalData.objects.get(entry=entries[0]).data == {"username": "maria", "ip_address": "203.0.113.7"}


def test_a_right_password_before_the_limit_signs_in_and_clears_the_count(client, staff):
    sign_in(client, "wrong-1")
    sign_in(client, "wrong-2")
    assert sign_in(client, "right-password-123").status_code == 302
    client.post("/admin/logout/")

    # the count starts again: two more mistakes do not lock out
    assert [sign_in(client, f"again-{n}").status_code for n in range(2)] == [200, 200]
    assert not AuditEntry.objects.filter(action="auth.locked_out").exists()


def test_a_staff_session_ends_after_the_idle_time_and_each_request_renews_it(client, staff, settings):
    assert sign_in(client, "right-password-123").status_code == 302
    first_expiry = client.session.get_expiry_date()
    assert settings.SESSION_COOKIE_AGE == 30 * 60 and settings.SESSION_SAVE_EVERY_REQUEST

    client.get("/admin/")
    renewed = client.session.get_expiry_date()

    assert renewed >= first_expiry
    assert abs((renewed - timezone.now()).total_seconds() - 30 * 60) < 60
