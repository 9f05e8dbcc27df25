import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import run_checks

from omni.checks import check_numbers_above_zero, check_production_settings, check_provider_settings

ROOT = Path(__file__).resolve().parents[2]


def ids(errors):
    return {error.id for error in errors}


def test_the_embedded_default_passes_every_check():
    assert not [e for e in run_checks() if e.level >= 40]


def test_production_refuses_development_defaults(settings):
    settings.PRODUCTION = True
    settings.DEBUG = True

    errors = ids(check_production_settings(None) + check_provider_settings(None))

    assert {"omni.E001", "omni.E002", "omni.E004", "omni.E005", "omni.E006", "omni.E010"} <= errors
    assert ("omni.E003" in errors) == (settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3")


def test_production_refuses_to_start_without_a_list_of_accepted_sns_topics(settings):
    settings.PRODUCTION = True
    settings.SNS_TOPIC_ARNS = []

    errors = check_production_settings(None)

    assert [error.msg for error in errors if error.id == "omni.E006"] == [
        "SNS_TOPIC_ARNS must list the SNS topics of your SES configuration sets in production."
    ]
    settings.SNS_TOPIC_ARNS = ["arn:aws:sns:us-east-1:123456789012:ses-events"]
    assert "omni.E006" not in ids(check_production_settings(None))


def test_a_provider_without_credentials_names_the_missing_setting(settings):
    settings.OMNI_PROVIDERS = {**settings.OMNI_PROVIDERS, "sms": "twilio", "email": "ses"}
    settings.TWILIO_ACCOUNT_SID = ""
    settings.SES_FROM_EMAIL = ""

    messages = [e.msg for e in check_provider_settings(None)]

    assert any("TWILIO_ACCOUNT_SID" in m for m in messages)
    assert any("SES_FROM_EMAIL" in m for m in messages)


def test_each_twilio_channel_needs_its_own_sender(settings):
    settings.OMNI_PROVIDERS = {**settings.OMNI_PROVIDERS, "sms": "twilio", "whatsapp": "twilio", "rcs": "twilio"}
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = "AC1", "token"
    settings.TWILIO_FROM_NUMBER = "+15005550006"
    settings.TWILIO_WHATSAPP_FROM = settings.TWILIO_MESSAGING_SERVICE_SID = ""

    assert {"omni.E014", "omni.E015"} == ids(check_provider_settings(None))

    settings.TWILIO_MESSAGING_SERVICE_SID = "MG1"
    assert not check_provider_settings(None)


def test_an_unknown_provider_is_named(settings):
    settings.OMNI_PROVIDERS = {**settings.OMNI_PROVIDERS, "email": "mailgun"}

    assert "omni.E011" in ids(check_provider_settings(None))


@pytest.mark.parametrize("command", [["-c", "import django; django.setup()"]])
def test_a_production_process_with_a_bad_setting_fails_at_start_naming_it(command, tmp_path):
    env = {"OMNI_ENV": "production", "OMNI_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "omni.settings",
           "PATH": "/usr/bin:/bin"}

    result = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "SECRET_KEY" in result.stderr and "DATABASE_URL" in result.stderr


def test_configured_credentials_switch_channels_to_the_real_providers(tmp_path):
    env = {"OMNI_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "omni.settings", "PATH": "/usr/bin:/bin",
           "SES_FROM_EMAIL": "omni@example.com", "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "token"}
    code = "from django.conf import settings; print(sorted(settings.OMNI_PROVIDERS.items()))"

    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)

    assert result.stdout.strip() == str(sorted({"email": "ses", "sms": "twilio", "whatsapp": "twilio",
                                                "rcs": "sandbox", "push": "sandbox"}.items()))


def production_env(tmp_path, **overrides) -> dict:
    """Every variable a valid production start needs (the services need not be running)."""
    return {
        "OMNI_ENV": "production", "OMNI_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "omni.settings",
        "PATH": "/usr/bin:/bin",
        "SECRET_KEY": "k3Jx9-Qp2Lm7Zr4Tv8Wb1Yc6Nd0Fg5Hs" + "Ua3Ei7Oo2Iu9Ee4Rt" + "Zq8Wm",
        "ALLOWED_HOSTS": "omni.example.com", "CSRF_TRUSTED_ORIGINS": "https://omni.example.com",
        "OMNI_PUBLIC_URL": "https://omni.example.com",
        "DATABASE_URL": "postgres://omni:secret@127.0.0.1:5432/omni",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
        "SNS_TOPIC_ARNS": "arn:aws:sns:us-east-1:123456789012:ses-events",
        "SES_FROM_EMAIL": "omni@example.com", "OMNI_PUSH_PROVIDER": "sns",
        "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "token", "TWILIO_MESSAGING_SERVICE_SID": "MG1",
        "OMNI_RCS_PROVIDER": "twilio",
        **overrides,
    }


def test_check_deploy_passes_clean_with_valid_production_settings(tmp_path):
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                            env=production_env(tmp_path), capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_can_trust_a_tls_terminating_proxy_and_tune_hsts(tmp_path):
    env = production_env(tmp_path, SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
                         SECURE_HSTS_PRELOAD="false")
    code = ("from django.conf import settings as s; print(s.SECURE_PROXY_SSL_HEADER, s.SECURE_HSTS_PRELOAD, "
            "s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)")

    result = subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)

    assert result.stdout.split() == ["('HTTP_X_FORWARDED_PROTO',", "'https')", "False", "True", "True", "True",
                                     "True"], result.stderr


@pytest.mark.parametrize("secret_key", [
    "x" * 49,  # too short for Django's own check (W009)
    "ab" * 30,  # too few distinct characters
    "django-insecure-" + "k3Jx9-Qp2Lm7Zr4Tv8Wb1Yc6Nd0Fg5HsUa3Ei7",
])
def test_production_refuses_a_secret_key_django_calls_weak(settings, secret_key):
    settings.PRODUCTION = True
    settings.SECRET_KEY = secret_key

    assert "omni.E001" in ids(check_production_settings(None))


def test_an_sqlite_without_update_returning_is_refused_by_name():
    from omni.checks import sqlite_version_errors

    assert sqlite_version_errors((3, 35, 0)) == []
    [error] = sqlite_version_errors((3, 34, 1))
    assert error.id == "omni.E020" and "SQLite 3.35.0 or newer" in error.msg and "3.34.1" in error.msg


@pytest.mark.parametrize(("setting", "variable"), [("SNS_MAX_AGE_SECONDS", "SNS_MAX_AGE_SECONDS"),
                                                   ("SESSION_COOKIE_AGE", "OMNI_SESSION_IDLE_MINUTES")])
def test_a_number_that_would_switch_a_safeguard_off_is_refused_naming_its_variable(settings, setting, variable):
    setattr(settings, setting, 0)

    errors = check_numbers_above_zero(None)

    assert [(error.id, error.msg) for error in errors] == [("omni.E040", f"{variable} must be above 0.")]


def test_a_process_started_with_sns_max_age_zero_stops_naming_it(tmp_path):
    env = {"OMNI_VAR_DIR": str(tmp_path), "SNS_MAX_AGE_SECONDS": "0", "PATH": "/usr/bin:/bin"}

    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)

    assert result.returncode != 0
    assert "omni.E040" in result.stderr and "SNS_MAX_AGE_SECONDS must be above 0." in result.stderr
