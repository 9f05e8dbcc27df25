"""Start-up checks: a wrong or missing production setting stops the start and names itself."""
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

DEV_SECRET_KEY = "omni-insecure-development-key-change-me"
# What Django's own deploy check (security.W009) asks of a secret key.
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_UNIQUE_CHARACTERS = 5


def secret_key_is_weak(key: str) -> bool:
    return (
        key == DEV_SECRET_KEY
        or key.startswith("django-insecure-")
        or len(key) < SECRET_KEY_MIN_LENGTH
        or len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
    )


@register(Tags.security, deploy=False)
def check_production_settings(app_configs, **kwargs):
    if not settings.PRODUCTION:
        return []
    errors = []
    if secret_key_is_weak(settings.SECRET_KEY):
        errors.append(Error(
            f"SECRET_KEY must be set to a random value of {SECRET_KEY_MIN_LENGTH}+ characters with "
            f"{SECRET_KEY_MIN_UNIQUE_CHARACTERS}+ different ones in production.", id="omni.E001",
        ))
    if settings.DEBUG:
        errors.append(Error("DEBUG must be off in production.", id="omni.E002"))
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        errors.append(Error("DATABASE_URL must point at PostgreSQL in production (SQLite is the embedded default).", id="omni.E003"))
    if settings.CELERY_BROKER_URL.startswith(("filesystem://", "memory://")):
        errors.append(Error("CELERY_BROKER_URL must be Redis or RabbitMQ in production.", id="omni.E004"))
    if not settings.OMNI_PUBLIC_URL.startswith("https://"):
        errors.append(Error("OMNI_PUBLIC_URL must be the https:// address providers call back.", id="omni.E005"))
    if not settings.SNS_TOPIC_ARNS:
        # Without it, /webhooks/ses/ accepts SES events from any SNS topic whose signature
        # verifies, that is from any AWS account.
        errors.append(Error("SNS_TOPIC_ARNS must list the SNS topics of your SES configuration sets in production.",
                            id="omni.E006"))
    return errors


@register(Tags.security)
def check_webhook_settings(app_configs, **kwargs):
    """Outbound webhooks reach private addresses only where someone meant them to."""
    if settings.PRODUCTION and settings.OMNI_WEBHOOKS_ALLOW_PRIVATE:
        return [Warning("OMNI_WEBHOOKS_ALLOW_PRIVATE is on in production: webhook endpoints may reach private, "
                        "loopback and link-local addresses (your network, cloud metadata) and plain http.",
                        id="omni.W001")]
    return []


@register()
def check_provider_settings(app_configs, **kwargs):
    """Each channel's chosen provider has what it needs to send."""
    needs = {
        "ses": ["SES_FROM_EMAIL"],
        "twilio": ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"],
        "sns": [],
    }
    errors = []
    for channel, provider in settings.OMNI_PROVIDERS.items():
        if provider == "sandbox":
            if settings.PRODUCTION:
                errors.append(Error(
                    f"OMNI_{channel.upper()}_PROVIDER is 'sandbox' in production: nothing would be delivered.",
                    id="omni.E010",
                ))
            continue
        if provider not in needs:
            errors.append(Error(f"OMNI_{channel.upper()}_PROVIDER={provider!r} is not a known provider.", id="omni.E011"))
            continue
        for name in needs[provider]:
            if not getattr(settings, name, ""):
                errors.append(Error(f"{name} must be set: OMNI_{channel.upper()}_PROVIDER is {provider!r}.", id="omni.E012"))
        if provider == "twilio":
            errors += _twilio_sender_errors(channel)
    return errors


def _twilio_sender_errors(channel: str) -> list:
    """Twilio needs a sender for each channel it carries."""
    service = settings.TWILIO_MESSAGING_SERVICE_SID
    if channel == "sms" and not (settings.TWILIO_FROM_NUMBER or service):
        return [Error("TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID must be set for Twilio SMS.", id="omni.E013")]
    if channel == "whatsapp" and not (settings.TWILIO_WHATSAPP_FROM or service):
        return [Error("TWILIO_WHATSAPP_FROM or TWILIO_MESSAGING_SERVICE_SID must be set for Twilio WhatsApp.",
                      id="omni.E014")]
    if channel == "rcs" and not service:
        return [Error("TWILIO_MESSAGING_SERVICE_SID (with an RCS sender) must be set for Twilio RCS.", id="omni.E015")]
    return []


# UPDATE ... RETURNING, which the state machine and the claims rely on, came in SQLite 3.35.
SQLITE_MIN_VERSION = (3, 35, 0)


@register()
def check_sqlite_version(app_configs, **kwargs):
    """The embedded default needs an SQLite new enough for UPDATE ... RETURNING."""
    import sqlite3

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
        return []
    return sqlite_version_errors(sqlite3.sqlite_version_info)


def sqlite_version_errors(version: tuple[int, ...]) -> list:
    if tuple(version) >= SQLITE_MIN_VERSION:
        return []
    wanted = ".".join(map(str, SQLITE_MIN_VERSION))
    found = ".".join(map(str, version))
    return [Error(f"SQLite {wanted} or newer is needed (UPDATE ... RETURNING); this Python has SQLite {found}. "
                  "Use a newer Python build, or PostgreSQL with DATABASE_URL.", id="omni.E020")]


@register()
def check_demo_time_scale(app_configs, **kwargs):
    """A shortened clock is for the demo: real contacts never get a week's journey in minutes."""
    scale = settings.OMNI_DEMO_TIME_SCALE
    if scale == 1:
        return []
    if not scale > 0:
        return [Error(f"OMNI_DEMO_TIME_SCALE must be a number above 0 (1: real time), not {scale!r}.", id="omni.E030")]
    real = sorted(f"OMNI_{channel.upper()}_PROVIDER={provider!r}"
                  for channel, provider in settings.OMNI_PROVIDERS.items() if provider != "sandbox")
    if real:
        return [Error(f"OMNI_DEMO_TIME_SCALE={scale:g} shortens every journey wait, so it runs only when every "
                      f"channel's provider is the sandbox; here {', '.join(real)}. Unset OMNI_DEMO_TIME_SCALE.",
                      id="omni.E031")]
    return []


# Settings where 0 or less would switch a safeguard off or stop work without saying so (an SNS
# message of any age refused, every request body too large, a tick that never waits), by the
# environment variable that sets each one.
MUST_BE_ABOVE_ZERO = [
    "SNS_MAX_AGE_SECONDS", "OMNI_MAX_BODY_BYTES", "OMNI_MAX_BATCH_BODY_BYTES", "OMNI_MAX_ENROLLMENT_BODY_BYTES",
    "OMNI_IMPORT_MAX_BYTES", "OMNI_IMPORT_MAX_ROWS", "OMNI_TICK_SECONDS", "OMNI_TICK_STAGE_SECONDS",
    "OMNI_SEAL_SECONDS", "OMNI_RETRY_FIRST_SECONDS", "OMNI_RETRY_MAX_SECONDS", "OMNI_WEBHOOK_ATTEMPTS",
    "OMNI_UNSUBSCRIBE_LINK_DAYS", "OMNI_DOUBLE_OPT_IN_DAYS", "OMNI_REPLAY_DAYS",
    "OMNI_CONVERSATION_WAITING_CLOSE_DAYS", "OMNI_SATISFACTION_REPLY_HOURS", "OMNI_AUDIT_CHECKPOINT_RETENTION_DAYS",
    "SEGMENT_COUNT_TIMEOUT_MS", "AXES_FAILURE_LIMIT", "SESSION_COOKIE_AGE",
]
# Those set by a variable of another name.
SET_BY = {"AXES_FAILURE_LIMIT": "OMNI_LOGIN_FAILURE_LIMIT", "SESSION_COOKIE_AGE": "OMNI_SESSION_IDLE_MINUTES"}


@register()
def check_numbers_above_zero(app_configs, **kwargs):
    return [Error(f"{variable} must be above 0.", id="omni.E040")
            for name in MUST_BE_ABOVE_ZERO if not getattr(settings, name) > 0
            for variable in [SET_BY.get(name, name)]]
