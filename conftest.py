"""Project-wide pytest fixtures: the local stand-ins for outside services (omni/testing.py).

Servers start once per test session; each test gets them reset.
"""
import boto3
import pytest
from django.conf import settings as django_settings

from omni.testing import MotoServer, SnsSigner, TwilioServer


def pytest_collection_modifyitems(config, items):
    """Skip tests marked `postgres` when the database is not PostgreSQL, saying why."""
    if "postgresql" in django_settings.DATABASES["default"]["ENGINE"]:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/omni")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def _moto_server():
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture
def moto_server(_moto_server) -> MotoServer:
    """A moto server (SES, SNS) with nothing in it: moto_server.url, .data(), .sent_emails()."""
    _moto_server.reset()
    return _moto_server


@pytest.fixture(scope="session")
def _twilio_server():
    server = TwilioServer()
    yield server
    server.stop()


@pytest.fixture
def twilio_server(_twilio_server) -> TwilioServer:
    """A local server in Twilio's REST shape: .url, .messages, .fail_next(status, code)."""
    _twilio_server.reset()
    return _twilio_server


@pytest.fixture(scope="session")
def _sns_signer():
    signer = SnsSigner()
    yield signer
    signer.stop()


@pytest.fixture
def sns_signer(_sns_signer, settings) -> SnsSigner:
    """Signs SNS envelopes with a local certificate that settings now trust."""
    _sns_signer.clear()
    settings.SNS_CERT_URL_REGEX = _sns_signer.cert_url_regex
    return _sns_signer


@pytest.fixture
def eager_celery(settings):
    """The Celery app running tasks inline when they are enqueued (no broker, no worker)."""
    from omni.celery import app

    settings.OMNI_SANDBOX_EVENT_DELAY = 0
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = previous


@pytest.fixture
def finished_tasks():
    """Every task finished in this process while the test runs (omni.testing.FinishedTasks)."""
    from celery.signals import task_postrun

    from omni.testing import FinishedTasks

    tracker = FinishedTasks()
    task_postrun.connect(tracker.record, weak=False)
    yield tracker
    task_postrun.disconnect(tracker.record)


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker thread consuming every Omni queue (mark the test `celery_worker`)."""
    import channels.tasks  # noqa: F401  (registers the shared tasks before the worker app finalizes)
    from omni.choices import ALL_QUEUES
    from omni.testing import celery_worker_thread

    with celery_worker_thread(ALL_QUEUES) as worker:
        yield worker


@pytest.fixture
def aws_settings(settings, moto_server):
    """Settings pointing boto3 at the moto server, with SES as the email and SNS as the SMS provider."""
    settings.AWS_ENDPOINT_URL = moto_server.url
    settings.AWS_REGION = "us-east-1"
    settings.AWS_ACCESS_KEY_ID = "testing"
    settings.AWS_SECRET_ACCESS_KEY = "testing"
    settings.SES_FROM_EMAIL = "omni@example.com"
    settings.OMNI_PROVIDERS = {**settings.OMNI_PROVIDERS, "email": "ses", "sms": "sns"}
    return settings


@pytest.fixture
def sesv2_client(aws_settings, moto_server):
    """An SESv2 client on the moto server, where the example.com sending identity is verified."""
    client = boto3.client("sesv2", region_name="us-east-1", endpoint_url=moto_server.url,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_email_identity(EmailIdentity="example.com")
    return client


@pytest.fixture
def twilio_settings(settings, twilio_server):
    """Settings sending SMS and WhatsApp through Twilio, at the local Twilio server."""
    settings.TWILIO_API_BASE_URL = twilio_server.url
    settings.TWILIO_ACCOUNT_SID = "AC00000000000000000000000000000001"
    settings.TWILIO_AUTH_TOKEN = "twilio-test-auth-token"
    settings.TWILIO_FROM_NUMBER = "+15005550006"
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    settings.TWILIO_WHATSAPP_FROM = "+14155238886"
    settings.OMNI_PUBLIC_URL = "https://omni.example.com"
    settings.OMNI_PROVIDERS = {**settings.OMNI_PROVIDERS, "sms": "twilio", "whatsapp": "twilio"}
    return settings
