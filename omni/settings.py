"""Omni settings, read from the environment (or an optional .env) with django-environ.

With nothing set, Omni runs on its embedded default: SQLite, Celery on the filesystem broker
with beat inside the worker, and the sandbox provider for every channel. In production
(OMNI_ENV=production) a missing or unsafe setting stops the start with a message naming it;
see omni/checks.py.
"""
import os
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse_lazy
from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent


class Env(environ.Env):
    """django-environ's Env, but a value it cannot read stops the start naming the variable
    (django-environ raises a bare "invalid literal for int()" and reads any word it does not
    know, "flase" too, as a false boolean)."""

    BOOLEAN_FALSE_STRINGS = ("false", "off", "no", "n", "0", "")
    KINDS = {int: "a whole number", float: "a number", bool: "true or false"}

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        raw = self.ENVIRON.get(var)
        if cast is bool and isinstance(raw, str) and not self._is_boolean(raw):
            raise ImproperlyConfigured(f"{var}={raw!r} must be true or false.")
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except ValueError as exc:
            kind = self.KINDS.get(cast)
            raise ImproperlyConfigured(f"{var}={raw!r} must be {kind}." if kind else f"{var}={raw!r}: {exc}") from None

    def _is_boolean(self, raw: str) -> bool:
        value = raw.strip().lower()
        return value in self.BOOLEAN_TRUE_STRINGS or value in self.BOOLEAN_FALSE_STRINGS or value.isdigit()


def crontab_setting(name: str, value: str) -> crontab:
    """A crontab from "minute hour day_of_month month_of_year day_of_week"; ImproperlyConfigured
    naming `name` when it is not one."""
    fields = value.split()
    if len(fields) != 5:
        raise ImproperlyConfigured(f"{name}={value!r} must be five crontab fields: "
                                   f"minute hour day_of_month month_of_year day_of_week (e.g. '17 3 * * *').")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
                       day_of_week=day_of_week)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={value!r} is not a valid crontab: {exc}") from None


env = Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
VAR_DIR = Path(env.str("OMNI_VAR_DIR", default=str(BASE_DIR / "var")))

OMNI_ENV = env.str("OMNI_ENV", default="development")
PRODUCTION = OMNI_ENV == "production"

DEBUG = env.bool("DEBUG", default=not PRODUCTION)
# The development key is only used when OMNI_ENV is not production (checked in omni/checks.py).
SECRET_KEY = env.str("SECRET_KEY", default="omni-insecure-development-key-change-me")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# HTTPS only in production: secure cookies, HSTS and a redirect to https. Behind a proxy that
# terminates TLS, set SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https (only if the proxy
# always sets that header). /healthz and /readyz answer over plain HTTP for load balancers.
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
# Load balancers probe over plain HTTP: the health endpoints answer there even when the rest of
# the site redirects to HTTPS.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
_proxy_ssl_header = env.list("SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_ssl_header:
    SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header)
# Public base URL, used to build webhook callback URLs sent to providers.
OMNI_PUBLIC_URL = env.str("OMNI_PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    # The admin's theme: before django.contrib.admin, so its templates win (and omni/templates,
    # in DIRS, before both: it fits a few of Unfold's to Omni).
    "unfold",
    "unfold.contrib.import_export",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "import_export",
    "pgtrigger",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "omni",
    "contacts",
    "compliance",
    "templates.apps.MessageTemplatesConfig",
    "channels",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # The JSON API (/api/) and providers' webhooks (/webhooks/) skip omni.middleware's four: they
    # authenticate by API key or signature. CSRF stays Django's own (the deploy check looks for it
    # by name); API and webhook views are exempt from it.
    "omni.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "omni.middleware.AuthenticationMiddleware",
    "omni.middleware.MessageMiddleware",
    "omni.middleware.OTPMiddleware",
    "omni.middleware.TwoFactorMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a lockout into the lockout page (by this name, which
    # its system check looks for; on an API request it only reads one attribute).
    "axes.middleware.AxesMiddleware",
]

# Staff sign-in: django-axes counts failed logins per username and address and locks that pair
# out for a while (each lockout is audited as auth.locked_out); the backend must come first.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("OMNI_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("OMNI_LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "omni/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
# Attempts and lockouts are audited instead (`manage.py axes_reset_username NAME` lifts one early).
AXES_ENABLE_ADMIN = False
AXES_VERBOSE = False
# Two-factor sign-in (TOTP, django-otp) is offered to all staff; set this to require it of
# administrators (superusers and the Administrators group).
OMNI_REQUIRE_2FA_FOR_ADMINS = env.bool("OMNI_REQUIRE_2FA_FOR_ADMINS", default=False)
# The issuer name authenticator apps show beside the account.
OTP_TOTP_ISSUER = "Omni"
# A staff session ends after this long without a request (each request renews it).
SESSION_COOKIE_AGE = env.int("OMNI_SESSION_IDLE_MINUTES", default=30) * 60
SESSION_SAVE_EVERY_REQUEST = True

ROOT_URLCONF = "omni.urls"
WSGI_APPLICATION = "omni.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "omni" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'omni.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock up front, so the beat tick and the workers
    # queue for it instead of failing with "database is locked" on upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Statements run through omni.lib.sql.prepared_cursor() (the event insert) are prepared
    # after this many runs on a connection. 0 turns it off, for a pooler in transaction mode
    # (PgBouncer before 1.21) that cannot keep prepared statements.
    prepare_threshold = env.int("DB_PREPARE_THRESHOLD", default=5)
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = prepare_threshold or None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" and "pytest" in sys.modules:
    # Tests use a database file, not SQLite's shared in-memory one: there, a worker thread's write
    # fails at once with "database table is locked" while the test's connection reads, because
    # shared-cache table locks ignore the busy timeout. Each test process has its own file, so
    # runs side by side do not delete each other's. Nothing here needs to survive a crash.
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"omni-test-{os.getpid()}.sqlite3")}
    DATABASES["default"]["OPTIONS"]["init_command"] += "PRAGMA synchronous=OFF;"
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# Keep each process's connection across requests: opening one costs more than a whole event
# POST. Health checks are off by default because they cost a SELECT 1 round trip per request;
# without them a connection the database dropped fails one request (500, which API clients
# retry with the same idempotency key) and is then replaced.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=False)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
# How long the segment page's live count may run before it answers "too slow to count".
SEGMENT_COUNT_TIMEOUT_MS = env.int("SEGMENT_COUNT_TIMEOUT_MS", default=3000)
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

LOGIN_URL = "admin:login"

# The admin's theme (django-unfold). Its sidebar is built per user from their view permissions
# (omni/web/navigation.py); /admin/ is each role's home (omni/web/home.py).
UNFOLD = {
    "SITE_TITLE": "Omni admin",
    "SITE_HEADER": "Omni",
    "SITE_URL": "/admin/",
    "SHOW_VIEW_ON_SITE": False,
    "DASHBOARD_CALLBACK": "omni.web.home.dashboard_callback",
    # The account menu (under the user's name): the password and two-factor sign-in.
    "ACCOUNT": {
        "navigation": [
            {"title": "Change password", "link": reverse_lazy("admin:password_change")},
            {"title": "Two-factor sign-in", "link": reverse_lazy("omni-2fa:setup")},
        ],
    },
    "SIDEBAR": {
        "show_search": False,
        "show_all_applications": False,
        "navigation": "omni.web.navigation.sidebar",
    },
}

# Webhook and API bodies larger than this are refused with 413 before parsing.
OMNI_MAX_BODY_BYTES = env.int("OMNI_MAX_BODY_BYTES", default=256 * 1024)
# POST /api/v1/events/batch takes up to 1,000 events: its own, larger limit.
OMNI_MAX_BATCH_BODY_BYTES = env.int("OMNI_MAX_BATCH_BODY_BYTES", default=2 * 1024 * 1024)
# POST /api/v1/journeys/<slug>/enrollments: its properties are copied onto the enrollment, so
# they stay small.
OMNI_MAX_ENROLLMENT_BODY_BYTES = env.int("OMNI_MAX_ENROLLMENT_BODY_BYTES", default=16 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(OMNI_MAX_BODY_BYTES, OMNI_MAX_BATCH_BODY_BYTES, 2_621_440)
# How long each web process trusts an API key it verified (a revoked key works that long).
OMNI_API_KEY_CACHE_SECONDS = env.int("OMNI_API_KEY_CACHE_SECONDS", default=10)
# How long each process keeps the declared attribute and event property types (contacts.data_types):
# a type changed in another process is checked that much later.
OMNI_TYPED_DATA_CACHE_SECONDS = env.float("OMNI_TYPED_DATA_CACHE_SECONDS", default=10)
# The most rows an XLSX message export holds (Excel's own limit is 1,048,576 a sheet); past it the
# page points at CSV, which streams any number.
OMNI_EXPORT_XLSX_MAX_ROWS = min(env.int("OMNI_EXPORT_XLSX_MAX_ROWS", default=100_000), 1_048_575)

# The contact import (contacts/imports.py): the largest file taken, in bytes and in rows, and
# the most rows the admin page checks and imports itself (a larger file runs as a Celery task).
OMNI_IMPORT_MAX_BYTES = env.int("OMNI_IMPORT_MAX_BYTES", default=32 * 1024 * 1024)
OMNI_IMPORT_MAX_ROWS = env.int("OMNI_IMPORT_MAX_ROWS", default=250_000)
OMNI_IMPORT_INLINE_ROWS = env.int("OMNI_IMPORT_INLINE_ROWS", default=2_000)
# An upload's file (personal data) is dropped when nobody imported or cancelled it in this long.
OMNI_IMPORT_KEEP_HOURS = env.int("OMNI_IMPORT_KEEP_HOURS", default=24)

# --- Celery ---------------------------------------------------------------------------------
# How long /readyz waits for the broker before calling it unreachable.
OMNI_READYZ_BROKER_TIMEOUT = env.float("OMNI_READYZ_BROKER_TIMEOUT", default=2.0)
CELERY_DATA_DIR = VAR_DIR / "celery"
# Under pytest the default broker is in-process memory, so tests never write into the
# embedded default's queue folder; CI sets CELERY_BROKER_URL to Redis for the worker tests.
TESTING = "pytest" in sys.modules
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="memory://" if TESTING else "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (CELERY_DATA_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_DATA_DIR / "queue"),
        "data_folder_out": str(CELERY_DATA_DIR / "queue"),
        "processed_folder": str(CELERY_DATA_DIR / "processed"),
        # Exchange bindings; kombu's default is a "control" folder in the working directory.
        "control_folder": str(CELERY_DATA_DIR / "control"),
        "store_processed": False,
    }
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
# One message at a time per worker process: a slow provider call never holds a queue of
# other sends hostage behind it.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
# The send tasks set reject_on_worker_lost themselves (they are idempotent); others are not re-run.
CELERY_TASK_REJECT_ON_WORKER_LOST = False
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Redis hands an unacknowledged task to another worker after this long (its default is an
    # hour). It must outlast a batch's provider calls; send retries wait in the database, not in
    # the broker (channels/delivery.py), and the tick's sweep republishes lost sends after a
    # minute anyway (channels/publishing.py).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 600}
CELERY_TASK_DEFAULT_QUEUE = "default"
# Tasks that always run on one queue whoever enqueues them, by task name (a name needs no import).
CELERY_TASK_ROUTES = {
    "campaigns.tasks.call_webhook_task": {"queue": "outbound"},
    "campaigns.tasks.send_campaign_batch_task": {"queue": "campaigns"},
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

# The demo's clock (omni/lib/demo_time.py): every wait the engine computes (journey waits, their
# timeouts, wait_date offsets, fallback timers, re-entry periods) lasts this many times less, e.g.
# 1440 makes a day last a minute, to watch the demo journeys run in minutes. Refused unless every
# channel's provider is the sandbox (omni/checks.py). 1: real time.
OMNI_DEMO_TIME_SCALE = env.float("OMNI_DEMO_TIME_SCALE", default=1.0)

# Activating a journey with marketing sends (or publishing changes to a running one) needs a
# marketing approver's yes, given to the draft as it is (campaigns/journey_approval.py). On by
# default: a marketing send reaches every contact the trigger enrolls, and a second pair of eyes
# is the safe default; a team of one turns it off (and then needs no approver).
OMNI_JOURNEY_APPROVAL_REQUIRED = env.bool("OMNI_JOURNEY_APPROVAL_REQUIRED", default=True)

# A marketing campaign whose audience is larger than this many contacts needs a marketing
# approver's yes before it starts (campaigns/campaign_approval.py), checked again at the start.
# 1,000: a send to a handful of people (a pilot, a small customer list) goes without waiting,
# while anything that could annoy a real share of the base, or cost real money in SMS, gets a
# second pair of eyes. 0: every marketing campaign with an audience needs approval.
OMNI_CAMPAIGN_APPROVAL_MIN_AUDIENCE = env.int("OMNI_CAMPAIGN_APPROVAL_MIN_AUDIENCE", default=1000)

# A campaign's start runs in the background (campaigns/campaign_start_requests.py). One still
# starting this long after it was handed to a worker (the worker was lost, or the broker refused
# the task) is handed off again, up to OMNI_CAMPAIGN_START_ATTEMPTS times in all; then it goes
# back to draft, saying so. 10 minutes: a snapshot of 100,000 contacts takes seconds, so a start
# still running after that is not running any more (one that is holds its row and is skipped).
OMNI_CAMPAIGN_START_RETRY_AFTER = timedelta(
    seconds=env.float("OMNI_CAMPAIGN_START_RETRY_AFTER_SECONDS", default=600.0))
OMNI_CAMPAIGN_START_ATTEMPTS = env.int("OMNI_CAMPAIGN_START_ATTEMPTS", default=3)

# Auto-pause (campaigns/auto_pause.py): a sending campaign or an active journey pauses itself
# when, once min_sample of its sends went out, a rate passes its limit (fractions: 0.05 = 5%) or
# engagement falls under its floor (0: not watched). A campaign may set its own limits; a
# journey is watched over its sends of the last journey_window_hours. Engagement counts sends at
# least engagement_after_hours old, so a send just out is not yet "not engaged with".
# Auto-pause runs on its own beat entry this often (not every tick: it counts all of a running
# campaign's deliveries).
OMNI_AUTO_PAUSE_SECONDS = env.int("OMNI_AUTO_PAUSE_SECONDS", default=60)
OMNI_AUTO_PAUSE = {
    "max_bounce_rate": env.float("OMNI_AUTO_PAUSE_MAX_BOUNCE_RATE", default=0.05),
    "max_complaint_rate": env.float("OMNI_AUTO_PAUSE_MAX_COMPLAINT_RATE", default=0.003),
    "max_opt_out_rate": env.float("OMNI_AUTO_PAUSE_MAX_OPT_OUT_RATE", default=0.02),
    "max_failure_rate": env.float("OMNI_AUTO_PAUSE_MAX_FAILURE_RATE", default=0.10),
    "min_engagement_rate": env.float("OMNI_AUTO_PAUSE_MIN_ENGAGEMENT_RATE", default=0.0),
    "min_sample": env.int("OMNI_AUTO_PAUSE_MIN_SAMPLE", default=200),
    "journey_window_hours": env.float("OMNI_AUTO_PAUSE_JOURNEY_WINDOW_HOURS", default=24.0),
    "engagement_after_hours": env.float("OMNI_AUTO_PAUSE_ENGAGEMENT_AFTER_HOURS", default=24.0),
}

# How often the beat tick claims due work (events, enrollments, deferred messages, fallbacks).
OMNI_TICK_SECONDS = env.float("OMNI_TICK_SECONDS", default=5.0)
# How long one stage of a tick may go on claiming batches before the next stage gets its turn
# (the first batch always runs): a backlog in one stage never starves the others.
OMNI_TICK_STAGE_SECONDS = env.float("OMNI_TICK_STAGE_SECONDS", default=5.0)
# How often the sealer chains committed audit entries; verify_audit flags entries unsealed
# for more than a minute.
OMNI_SEAL_SECONDS = env.float("OMNI_SEAL_SECONDS", default=5.0)
# Where the sealer writes checkpoints of the chain's end (seq, hash, time), outside the
# database, so verify_audit notices entries removed or rewritten at the end (omni/audit_checkpoints.py):
# file:///folder (a file per database in it; the embedded default) or, in production,
# s3://bucket/prefix/ on a bucket with S3 Object Lock, each checkpoint locked for
# OMNI_AUDIT_CHECKPOINT_RETENTION_DAYS in OMNI_AUDIT_CHECKPOINT_LOCK_MODE (COMPLIANCE: nobody,
# not even the account's root user, can delete it before then; GOVERNANCE: users with
# s3:BypassGovernanceRetention can).
OMNI_AUDIT_CHECKPOINT_URL = env.str("OMNI_AUDIT_CHECKPOINT_URL", default=f"file://{VAR_DIR / 'audit-checkpoints'}")
OMNI_AUDIT_CHECKPOINT_RETENTION_DAYS = env.int("OMNI_AUDIT_CHECKPOINT_RETENTION_DAYS", default=7 * 365)
OMNI_AUDIT_CHECKPOINT_LOCK_MODE = env.str("OMNI_AUDIT_CHECKPOINT_LOCK_MODE", default="COMPLIANCE")
# When beat verifies the audit chain (verify_audit, recorded as an audit.verified entry that the
# compliance home shows): a crontab "minute hour day_of_month month_of_year day_of_week", in UTC.
OMNI_VERIFY_AUDIT_CRON = env.str("OMNI_VERIFY_AUDIT_CRON", default="17 3 * * *")
# Retention (channels/retention.py): message bodies (deliveries, own content, inbound messages)
# older than this many days are blanked, the rows kept. 0, the default, keeps them for ever:
# how long to keep them is each organisation's policy, and turning it on blanks history.
OMNI_RETENTION_DAYS = env.int("OMNI_RETENTION_DAYS", default=0)
# When beat applies it: a crontab in UTC, as OMNI_VERIFY_AUDIT_CRON.
OMNI_RETENTION_CRON = env.str("OMNI_RETENTION_CRON", default="41 2 * * *")

# --- Channels and providers -----------------------------------------------------------------
# Which provider delivers each channel: "sandbox" (stores what would have been sent and
# simulates delivery events; see channels/providers/), "ses", "twilio" or "sns". Unset, a
# channel uses the real provider whose credentials are configured, else the sandbox.
_ses_configured = bool(env.str("SES_FROM_EMAIL", default=""))
_twilio_configured = bool(env.str("TWILIO_ACCOUNT_SID", default="") and env.str("TWILIO_AUTH_TOKEN", default=""))
OMNI_PROVIDERS = {
    "email": env.str("OMNI_EMAIL_PROVIDER", default="ses" if _ses_configured else "sandbox"),
    "sms": env.str("OMNI_SMS_PROVIDER", default="twilio" if _twilio_configured else "sandbox"),
    "whatsapp": env.str("OMNI_WHATSAPP_PROVIDER", default="twilio" if _twilio_configured else "sandbox"),
    "rcs": env.str("OMNI_RCS_PROVIDER", default="sandbox"),
    "push": env.str("OMNI_PUSH_PROVIDER", default="sandbox"),
}
# Retrying a send the provider refused for now (5xx, throttling, unreachable): the first retry
# after OMNI_RETRY_FIRST_SECONDS, each wait twice the last up to OMNI_RETRY_MAX_SECONDS (jittered),
# until an attempt at or after OMNI_RETRY_OUTAGE_SECONDS from the first, so an outage that long
# loses nothing; never past the message's expires_at. Then the delivery fails (not permanently)
# and the message falls back.
OMNI_RETRY_FIRST_SECONDS = env.float("OMNI_RETRY_FIRST_SECONDS", default=10.0)
OMNI_RETRY_MAX_SECONDS = env.float("OMNI_RETRY_MAX_SECONDS", default=300.0)
OMNI_RETRY_OUTAGE_SECONDS = env.float("OMNI_RETRY_OUTAGE_SECONDS", default=3600.0)
# An uncertain delivery (the provider may or may not have it) that neither the provider nor a
# webhook settled within this long is listed for administrators (the deliveries admin's
# "needs a person" filter, and a delivery.unresolved audit entry); it is never resent.
OMNI_UNRESOLVED_AFTER_SECONDS = env.float("OMNI_UNRESOLVED_AFTER_SECONDS", default=3600.0)
# Seconds the sandbox waits before simulating delivery events.
OMNI_SANDBOX_EVENT_DELAY = env.float("OMNI_SANDBOX_EVENT_DELAY", default=2.0)

AWS_REGION = env.str("AWS_REGION", default="us-east-1")
AWS_ACCESS_KEY_ID = env.str("AWS_ACCESS_KEY_ID", default="")
AWS_SECRET_ACCESS_KEY = env.str("AWS_SECRET_ACCESS_KEY", default="")
# Only for tests and local stacks (a moto server); empty means the real AWS endpoints.
AWS_ENDPOINT_URL = env.str("AWS_ENDPOINT_URL", default="")
SES_FROM_EMAIL = env.str("SES_FROM_EMAIL", default="")
SES_CONFIGURATION_SET_TRANSACTIONAL = env.str("SES_CONFIGURATION_SET_TRANSACTIONAL", default="")
SES_CONFIGURATION_SET_MARKETING = env.str("SES_CONFIGURATION_SET_MARKETING", default="")
SNS_SMS_SENDER_ID = env.str("SNS_SMS_SENDER_ID", default="")
SNS_SMS_ORIGINATION_NUMBER = env.str("SNS_SMS_ORIGINATION_NUMBER", default="")
# Amazon SNS's own hosts: sns.<region>.amazonaws.com, the region shaped like us-east-1 or
# us-gov-west-1, and .amazonaws.com.cn in China. A looser pattern ("sns.[a-z0-9-]+") admitted
# hosts such as sns.s3.amazonaws.com, whose content anyone can publish.
_SNS_HOST = r"https://sns\.[a-z]{2}(-[a-z]+)?-[a-z]+-[0-9]{1,2}\.amazonaws\.com(\.cn)?"
# SNS signs its messages with a certificate served from this pattern; anything else is
# refused before it is fetched.
SNS_CERT_URL_REGEX = env.str(
    "SNS_CERT_URL_REGEX", default=rf"^{_SNS_HOST}/SimpleNotificationService-[0-9a-f]+\.pem\Z"
)
# SubscriptionConfirmation's SubscribeURL is only followed on this pattern.
SNS_SUBSCRIBE_URL_REGEX = env.str("SNS_SUBSCRIBE_URL_REGEX", default=rf"^{_SNS_HOST}/(\?|\Z)")
# Accepted SNS topics for SES events; empty accepts any topic whose signature verifies.
SNS_TOPIC_ARNS = env.list("SNS_TOPIC_ARNS", default=[])
# An SNS message whose signed Timestamp is older than this is refused, so a captured bounce or
# complaint cannot be replayed later. SNS stops retrying an HTTP/S delivery within an hour (a
# hard limit of its delivery policies; by default it gives up after about a minute), so an hour
# never refuses a genuine retry.
SNS_MAX_AGE_SECONDS = env.int("SNS_MAX_AGE_SECONDS", default=3600)

TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM_NUMBER = env.str("TWILIO_FROM_NUMBER", default="")
TWILIO_MESSAGING_SERVICE_SID = env.str("TWILIO_MESSAGING_SERVICE_SID", default="")
TWILIO_WHATSAPP_FROM = env.str("TWILIO_WHATSAPP_FROM", default="")
# The secret of a Twilio webhook signing key (SharedKey), for webhooks Twilio signs with it
# (HMAC-SHA256 or SHA1, named in X-Twilio-Webhooks-Signature-Settings). Webhooks signed with
# the auth token are accepted either way.
TWILIO_WEBHOOK_SIGNING_SECRET = env.str("TWILIO_WEBHOOK_SIGNING_SECRET", default="")
# Only for tests: send the twilio client's requests to a local server in Twilio's shape.
TWILIO_API_BASE_URL = env.str("TWILIO_API_BASE_URL", default="")
# Channels on which Twilio's own opt-out handling answers STOP, START and HELP texted to Omni's
# Twilio senders (on by default for SMS; add "whatsapp" where Advanced Opt-Out covers your
# WhatsApp senders): Omni then records the keyword and sends no reply of its own.
TWILIO_OPT_OUT_HANDLING = env.list("TWILIO_OPT_OUT_HANDLING", default=["sms"])
# Sender numbers where Twilio support switched that handling off: Omni replies there.
TWILIO_OPT_OUT_HANDLING_OFF_FOR = env.list("TWILIO_OPT_OUT_HANDLING_OFF_FOR", default=[])

# National phone notation ("(415) 555-0102") in the admin's contact search is read as a number
# of this country (ISO 3166-1 alpha-2); empty reads only international notation (+1 415...).
OMNI_DEFAULT_COUNTRY = env.str("OMNI_DEFAULT_COUNTRY", default="" if PRODUCTION else "US")
# Support agents see every conversation in the inbox; false limits each agent to the
# conversations of their queues and those assigned to them (administrators always see all).
OMNI_SUPPORT_AGENTS_SEE_ALL = env.bool("OMNI_SUPPORT_AGENTS_SEE_ALL", default=True)
# Outbound webhooks (omni/lib/webhooks.py) call https and public addresses only, unless DEBUG or
# this is set (local receivers in development and tests).
OMNI_WEBHOOKS_ALLOW_PRIVATE = env.bool("OMNI_WEBHOOKS_ALLOW_PRIVATE", default=False)
# A PEM file of the certificate authorities webhook receivers' certificates are checked against
# (default: certifi's public ones).
OMNI_WEBHOOKS_CA_BUNDLE = env.str("OMNI_WEBHOOKS_CA_BUNDLE", default="")
# A journey's webhook step tries a call this many times, waiting webhooks.backoff() between
# attempts from this many seconds, doubling.
OMNI_WEBHOOK_ATTEMPTS = env.int("OMNI_WEBHOOK_ATTEMPTS", default=5)
OMNI_WEBHOOK_RETRY_BASE_SECONDS = env.float("OMNI_WEBHOOK_RETRY_BASE_SECONDS", default=10.0)

# --- Support -------------------------------------------------------------------------------
# A conversation waiting on the customer this many days closes itself (resolved by automation;
# beat runs channels.tasks.close_waiting_conversations_task hourly).
OMNI_CONVERSATION_WAITING_CLOSE_DAYS = env.int("OMNI_CONVERSATION_WAITING_CLOSE_DAYS", default=7)
# A 1-5 reply this many hours after the satisfaction question is kept as its answer.
OMNI_SATISFACTION_REPLY_HOURS = env.int("OMNI_SATISFACTION_REPLY_HOURS", default=24)
# Each web process checks at most this often whether keyword lists, service levels or business
# hours changed in another process (channels.inbound_settings): the inbound webhook's one
# settings query is spent once a second rather than on every message.
OMNI_INBOUND_SETTINGS_RECHECK_SECONDS = env.float("OMNI_INBOUND_SETTINGS_RECHECK_SECONDS", default=1.0)

# --- Compliance -----------------------------------------------------------------------------
# Used for a contact with no timezone and no phone number to infer one from.
OMNI_DEFAULT_TIMEZONE = env.str("OMNI_DEFAULT_TIMEZONE", default="UTC")
# Marketing email carries List-Unsubscribe: a signed link to OMNI_PUBLIC_URL (one-click POST,
# preference page on GET), valid this many days, and a mailto: to this address when set.
OMNI_UNSUBSCRIBE_LINK_DAYS = env.int("OMNI_UNSUBSCRIBE_LINK_DAYS", default=90)
OMNI_UNSUBSCRIBE_MAILTO = env.str("OMNI_UNSUBSCRIBE_MAILTO", default="")
# Double opt-in for marketing email: a consent granted from these sources is kept "pending"
# and a confirmation email sent; confirmed by its link within OMNI_DOUBLE_OPT_IN_DAYS, or it
# expires. Off by default.
OMNI_DOUBLE_OPT_IN = env.bool("OMNI_DOUBLE_OPT_IN", default=False)
OMNI_DOUBLE_OPT_IN_DAYS = env.int("OMNI_DOUBLE_OPT_IN_DAYS", default=7)
OMNI_DOUBLE_OPT_IN_SOURCES = env.list("OMNI_DOUBLE_OPT_IN_SOURCES", default=["form", "api"])
# Policy replay (compliance/replay.py) re-decides the gate's decisions of this many days before a rule change.
OMNI_REPLAY_DAYS = env.int("OMNI_REPLAY_DAYS", default=7)
# An opt-out word inside other text ("please stop texting me"): "opt_out_and_flag" (opt out and
# flag the message for an agent), "flag" (only flag it) or "ignore" (compliance/keywords.py).
OMNI_KEYWORD_EMBEDDED_OPT_OUT = env.str("OMNI_KEYWORD_EMBEDDED_OPT_OUT", default="opt_out_and_flag")
# STOP, STOPALL and a carrier's 21610 revoke every purpose but transactional; set to revoke
# transactional consent too.
OMNI_OPT_OUT_REVOKES_TRANSACTIONAL = env.bool("OMNI_OPT_OUT_REVOKES_TRANSACTIONAL", default=False)
# Opt-ins recorded by an import are confirmed (the first SMS after an opt-in) only when set.
OMNI_CONFIRM_IMPORTED_OPT_INS = env.bool("OMNI_CONFIRM_IMPORTED_OPT_INS", default=False)

# --- Support --------------------------------------------------------------------------------
# Marketing to a contact waits while they have a support conversation not closed, and this many
# hours after one closes (channels.routing passes the conversations to the gate).
OMNI_CONVERSATION_HOLD = timedelta(hours=env.float("OMNI_CONVERSATION_HOLD_HOURS", default=48.0))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The twilio client logs every request and response at INFO.
        "twilio.http_client": {"level": "WARNING"},
    },
}

# django-celery-beat's DatabaseScheduler copies these entries into its tables at start, where
# operators can see and change them in the admin.
CELERY_BEAT_SCHEDULE = {
    "omni-verify-audit": {"task": "omni.tasks.verify_audit_task", "options": {"queue": "default"},
                          "schedule": crontab_setting("OMNI_VERIFY_AUDIT_CRON", OMNI_VERIFY_AUDIT_CRON)},
    "omni-tick": {"task": "campaigns.tasks.tick_task", "schedule": OMNI_TICK_SECONDS, "options": {"queue": "default", "expires": OMNI_TICK_SECONDS * 2}},
    "omni-auto-pause": {"task": "campaigns.tasks.watch_sends_task", "schedule": OMNI_AUTO_PAUSE_SECONDS, "options": {"queue": "default", "expires": OMNI_AUTO_PAUSE_SECONDS * 2}},
    "omni-discard-unused-uploads": {"task": "contacts.tasks.discard_unused_uploads_task", "schedule": 3600.0, "options": {"queue": "default", "expires": 1800}},
    "omni-retry-stalled-campaign-starts": {"task": "campaigns.tasks.retry_stalled_starts_task", "schedule": 60.0, "options": {"queue": "default", "expires": 120}},
    "omni-carry-out-erasure-requests": {"task": "contacts.tasks.carry_out_erasure_requests_task", "schedule": 60.0, "options": {"queue": "default", "expires": 120}},
    "omni-seal-audit": {"task": "omni.tasks.seal_audit_task", "schedule": OMNI_SEAL_SECONDS, "options": {"queue": "default", "expires": OMNI_SEAL_SECONDS * 2}},
    "omni-reconcile-deliveries": {"task": "channels.tasks.reconcile_deliveries_task", "schedule": 60.0, "options": {"queue": "default", "expires": 120}},
    "omni-settle-uncertain-deliveries": {"task": "channels.tasks.settle_uncertain_deliveries_task", "schedule": 60.0, "options": {"queue": "default", "expires": 120}},
    "omni-close-waiting-conversations": {"task": "channels.tasks.close_waiting_conversations_task", "schedule": 3600.0, "options": {"queue": "default", "expires": 1800}},
    "omni-ask-satisfaction": {"task": "channels.tasks.ask_satisfaction_task", "schedule": 60.0, "options": {"queue": "default", "expires": 120}},
    "omni-expire-double-opt-ins": {"task": "compliance.tasks.expire_double_opt_ins_task", "schedule": 3600.0, "options": {"queue": "default", "expires": 1800}},
    "omni-apply-retention": {"task": "channels.tasks.apply_retention_task", "options": {"queue": "default"},
                             "schedule": crontab_setting("OMNI_RETENTION_CRON", OMNI_RETENTION_CRON)},
}
