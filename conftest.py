"""Project-wide pytest fixtures: the local stand-ins for outside services (omni/tests/fakes.py),
the demo data and its role groups, and a real browser (omni/tests/browser.py).

Servers start once per test session; each test gets them reset.
"""
import importlib.util
import io
import json

import boto3
import pytest
from django.conf import settings as django_settings

from omni.tests import browser as browser_testing
from omni.tests.fakes import MotoServer, SnsSigner, TwilioServer

# The role groups and their permissions (app label, codename) as the migrations made them.
_role_groups_as_migrated: dict[str, list[tuple[str, str]]] = {}
# Where this run keeps test artifacts, and the folders of the browser tests that saved
# screenshots in it, for the summary at the end.
_artifacts_root = browser_testing.artifacts_root()
_screenshot_folders: list = []
_call_report = pytest.StashKey()


def pytest_collection_modifyitems(config, items):
    """Mark every test that uses the browser `browser`, skipping them (saying how to install
    what is missing) when Chromium or Playwright is not here; skip tests marked `postgres`
    when the database is not PostgreSQL, saying why."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
    if not browser_testing.browser_required():
        missing = None
        if importlib.util.find_spec("playwright") is None:
            missing = f"needs the playwright package: {browser_testing.INSTALL_HINT}"
        else:
            try:
                browser_testing.chromium_path()
            except browser_testing.BrowserUnavailable as why:
                missing = str(why)
        if missing:
            for item in items:
                if "browser" in item.keywords:
                    item.add_marker(pytest.mark.skip(reason=missing))

    if "postgresql" in django_settings.DATABASES["default"]["ENGINE"]:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/omni")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.stash[_call_report] = report  # read by `page` to keep a screenshot of a failure
    return report


def pytest_terminal_summary(terminalreporter):
    if _screenshot_folders:
        root = _artifacts_root / "browser"
        terminalreporter.write_sep("-", f"browser screenshots of {len(_screenshot_folders)} test(s) in {root}")


@pytest.fixture(scope="session", autouse=True)
def _flush_fast_and_restore_the_seeds():
    """A transactional test ends by emptying every table (_empty_every_table). The rows the
    migrations seeded are then put back as they were, instead of post_migrate making content
    types and permissions again (slower, and it misses those older migrations name)."""
    from django.test import TransactionTestCase

    flush = TransactionTestCase._fixture_teardown

    def empty_and_restore_the_seeds(self):
        for alias in self._databases_names(include_mirrors=False):
            _empty_every_table(alias)
            _restore_migration_seeds(alias)

    TransactionTestCase._fixture_teardown = empty_and_restore_the_seeds
    yield
    TransactionTestCase._fixture_teardown = flush


def _empty_every_table(alias: str) -> None:
    """Django's flush, but on PostgreSQL a TRUNCATE of only the tables that have rows (and, by
    CASCADE, those that refer to them): TRUNCATE of every table took half a second after each
    test. TRUNCATE, not DELETE: the tables start again empty on disk, so rows come back in the
    order they were written, as a fresh table gives them. The audit log's trigger against it is
    ignored for it (pgtrigger.ignore acts on this connection only)."""
    import pgtrigger
    from django.core.management import call_command
    from django.db import connections, transaction

    connection = connections[alias]
    if connection.vendor != "postgresql":
        call_command("flush", verbosity=0, interactive=False, database=alias, inhibit_post_migrate=True)
        return
    tables = [connection.ops.quote_name(name)
              for name in connection.introspection.django_table_names(only_existing=True, include_views=False)]
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(f"SELECT '{table}' WHERE EXISTS (SELECT FROM {table})" for table in tables))
        filled = [table for table, in cursor.fetchall()]
        if filled:
            with transaction.atomic(using=alias), \
                    pgtrigger.ignore("omni.AuditEntry:protect_truncate", databases=[alias]):
                cursor.execute(f"TRUNCATE {', '.join(filled)} CASCADE")


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing():
    """Passwords hashed with MD5 in tests: the production hasher spends about a third of a
    second on each one on purpose, and many tests create users and sign them in."""
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True)
def _audit_checkpoints(settings, tmp_path):
    """Each test keeps the audit chain's checkpoints in a folder of its own: a test database
    starts a new chain, which the checkpoints of an earlier test would call truncated."""
    settings.OMNI_AUDIT_CHECKPOINT_URL = f"file://{tmp_path / 'audit-checkpoints'}"


# The rows data migrations seed (role groups, lifecycle stages, keyword lists, default plans,
# opt-out lines, arbitration rules), as the test database had them once migrated, with the content
# types and permissions the groups refer to: a flush empties them and migrations never run again,
# so every test after a transactional one would otherwise depend on which tests ran before it in
# its process. In the order they are put back in (what a row refers to comes first).
SEEDED_MODELS = ["contenttypes.ContentType", "auth.Permission", "auth.Group", "contacts.LifecycleStage",
                 "compliance.KeywordList", "channels.DefaultChannelPlan", "message_templates.OptOutDisclosure",
                 "channels.ArbitrationRule", "compliance.ConsentText"]
# (model, rows) for each seeded model, then for the tables of their many-to-many fields.
_seeded_rows: list[tuple] = []


def _remember_migration_seeds():
    from django.apps import apps

    models = [apps.get_model(label) for label in SEEDED_MODELS]
    throughs = [field.remote_field.through for model in models for field in model._meta.local_many_to_many]
    _seeded_rows[:] = [(model, list(model.objects.order_by("pk"))) for model in models + throughs]


def _restore_migration_seeds(using: str = "default"):
    for model, rows in _seeded_rows:
        model.objects.using(using).bulk_create(rows)


@pytest.fixture(autouse=True)
def _fresh_typed_data_definitions():
    """Each process keeps the declared types (contacts.data_types); a test must not see those of
    a test whose rows were rolled back."""
    from contacts.data_types import forget_definitions

    forget_definitions()
    yield
    forget_definitions()


@pytest.fixture(autouse=True)
def _fresh_inbound_settings():
    """Each process keeps the keyword lists and service levels (channels.inbound_settings) and
    rechecks them once a second; a test must not see those of a test whose rows were rolled back."""
    from channels.inbound_settings import forget_inbound_settings

    forget_inbound_settings()
    yield
    forget_inbound_settings()


# --- demo data and role groups -----------------------------------------------------------------

@pytest.fixture(autouse=True)
def _journey_approval_off(settings):
    """Journeys activate without a marketing approver's yes in tests, unless a test asks for it
    (`journey_approval_required`): most tests are about what a running journey does, and approval
    has its own (campaigns/tests/test_journey_approval.py). Production's default is on (settings)."""
    settings.OMNI_JOURNEY_APPROVAL_REQUIRED = False


@pytest.fixture
def journey_approval_required(settings):
    """OMNI_JOURNEY_APPROVAL_REQUIRED on, as in production: marketing journeys need approval."""
    settings.OMNI_JOURNEY_APPROVAL_REQUIRED = True


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test database, with a note of the role groups its migrations created.

    A transactional test (live server, Celery worker) ends by emptying every table, and the data
    migration that made the groups does not run again: `role_groups` puts them back from this.
    """
    from django.contrib.auth.models import Group

    with django_db_blocker.unblock():
        _remember_migration_seeds()
        for group in Group.objects.prefetch_related("permissions__content_type"):
            _role_groups_as_migrated[group.name] = [
                (permission.content_type.app_label, permission.codename) for permission in group.permissions.all()
            ]


@pytest.fixture
def user_in(django_user_model, role_groups):
    """A staff user in one role group (None: no group)."""

    def make(username: str, group_name: str | None):
        user = django_user_model.objects.create_user(username=username, password="not-used", is_staff=True)
        if group_name:
            from django.contrib.auth.models import Group

            user.groups.add(Group.objects.get(name=group_name))
        return user

    return make


@pytest.fixture
def role_groups(db):
    """The groups the migrations create (Marketers, Support agents, Compliance), with their
    permissions, also in a transactional test that runs after another one emptied the tables."""
    from django.contrib.auth.models import Group, Permission

    for name, permissions in _role_groups_as_migrated.items():
        group, created = Group.objects.get_or_create(name=name)
        if created:
            group.permissions.set([
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
                for app_label, codename in permissions
            ])
    return Group.objects.filter(name__in=_role_groups_as_migrated)


@pytest.fixture
def keyword_lists(db):
    """The English keyword lists and replies the migration seeds, also in a transactional test
    that runs after another one emptied the tables."""
    import importlib

    from compliance.models import KeywordList

    seeded = importlib.import_module("compliance.migrations.0005_keyword_lists")
    for kind, (words, reply) in seeded.ENGLISH.items():
        KeywordList.objects.get_or_create(language="en", kind=kind, defaults={"words": words, "reply": reply})
    return KeywordList.objects.all()


@pytest.fixture
def demo_logins(role_groups, settings, tmp_path) -> dict[str, str]:
    """The `make run` demo data (manage.py seed_demo); returns the password of each demo user
    (admin, marketer, support, compliance) by username."""
    from django.core.management import call_command

    settings.VAR_DIR = tmp_path  # where seed_demo keeps the logins
    call_command("seed_demo", stdout=io.StringIO())
    return json.loads((tmp_path / "demo-logins.json").read_text())


# --- a real browser ----------------------------------------------------------------------------

_browser_process = browser_testing.BrowserProcess()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # While Playwright runs, its event loop counts as running in this thread, so Django keeps the
    # thread's database connections apart from those of the thread without it, and Django's ORM
    # check for async code is switched off (see BrowserProcess). A test that does not use the
    # browser gets it stopped here, before any fixture: stopped later, the test's transaction
    # would be opened on one connection and its queries run on another.
    if "browser" not in item.fixturenames:
        _browser_process.stop()


def pytest_sessionfinish(session):
    _browser_process.stop()


@pytest.fixture
def browser():
    """Chromium (a Playwright Browser), kept running across consecutive browser tests.

    A test using it is marked `browser`; it is skipped, saying how to install what is missing,
    when Chromium or Playwright is absent, and fails instead with OMNI_REQUIRE_BROWSER=1.
    """
    try:
        return _browser_process.start()
    except browser_testing.BrowserUnavailable as why:
        if browser_testing.browser_required():
            pytest.fail(f"OMNI_REQUIRE_BROWSER is set, but {why}", pytrace=False)
        pytest.skip(str(why))


@pytest.fixture
def _screenshots(request):
    return browser_testing.Screenshots(browser_testing.artifacts_dir_for(_artifacts_root, request.node.nodeid))


@pytest.fixture
def page(request, browser, live_server, _screenshots):
    """A fresh browser tab (Playwright Page) on the live server: page.goto("/admin/") works.

    If the test fails, a full-page screenshot of where it stood is kept as failure.png.
    """
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(browser_testing.TIMEOUT_MS)
    tab = context.new_page()
    yield tab
    report = request.node.stash.get(_call_report, None)
    if report is not None and report.failed:
        _screenshots.take(tab, "failure")
    if _screenshots.taken:
        _screenshot_folders.append(_screenshots.folder)
    context.close()


@pytest.fixture
def screenshot(page, _screenshots):
    """screenshot("contacts") saves a full-page picture of `page` as it is now, numbered, in
    the test's artifacts folder, and returns its path."""
    return lambda name: _screenshots.take(page, name)


@pytest.fixture
def log_in(page):
    """log_in(username, password) logs `page` in through the admin's login form."""
    return lambda username, password: browser_testing.log_in(page, username, password)


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
    """Every task finished in this process while the test runs (omni.tests.fakes.FinishedTasks)."""
    from celery.signals import task_postrun

    from omni.tests.fakes import FinishedTasks

    tracker = FinishedTasks()
    task_postrun.connect(tracker.record, weak=False)
    yield tracker
    task_postrun.disconnect(tracker.record)


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker thread consuming every Omni queue (mark the test `celery_worker`)."""
    import channels.tasks  # noqa: F401  (registers the shared tasks before the worker app finalizes)
    from omni.choices import ALL_QUEUES
    from omni.tests.fakes import celery_worker_thread

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


@pytest.fixture(scope="session")
def _webhook_receiver():
    from omni.tests.fakes import WebhookReceiver

    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def webhook_receiver(_webhook_receiver, settings):
    """A local webhook receiver on 127.0.0.1, with private addresses allowed for webhooks."""
    settings.OMNI_WEBHOOKS_ALLOW_PRIVATE = True
    _webhook_receiver.reset()
    yield _webhook_receiver
    _webhook_receiver.reset()
