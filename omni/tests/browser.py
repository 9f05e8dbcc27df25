"""A real browser for tests: Debian's Chromium driven by Playwright, against pytest-django's
live server (the fixtures are in /conftest.py: `browser`, `page`, `screenshot`, `log_in`).

- Chromium is never downloaded: OMNI_CHROMIUM names the executable, else /usr/bin/chromium or
  `chromium` on the PATH. Without it, or without the playwright package, browser tests are
  skipped with the reason and how to install it; OMNI_REQUIRE_BROWSER=1 (CI) fails them instead.
- Screenshots go to OMNI_TEST_ARTIFACTS (default VAR_DIR/test-artifacts), under
  browser/<test>/, one folder per test, emptied when the test starts.
"""
import os
import re
import shutil
from pathlib import Path

from django.conf import settings

INSTALL_HINT = "apt-get install chromium (Debian; or set OMNI_CHROMIUM to a Chromium executable) " \
               "and pip install -r requirements.txt"

# As root, in a container, on a machine with no network: no sandbox (it needs user namespaces),
# no GPU, and none of the background calls home (updates, sync, QUIC probes) that otherwise
# keep retrying against the closed network.
LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

# A page that does not answer within this many milliseconds fails the test instead of
# waiting Playwright's default 30 s.
TIMEOUT_MS = 10_000


class BrowserUnavailable(Exception):
    """No Chromium or no Playwright here; the message says what to install."""


def browser_required() -> bool:
    return os.environ.get("OMNI_REQUIRE_BROWSER", "") not in ("", "0", "false", "no")


def chromium_path() -> str:
    """The Chromium executable to drive, or BrowserUnavailable naming what is missing."""
    configured = os.environ.get("OMNI_CHROMIUM")
    if configured:
        found = shutil.which(configured)
        if not found:
            raise BrowserUnavailable(f"OMNI_CHROMIUM={configured} is not an executable; unset it or {INSTALL_HINT}")
        return found
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BrowserUnavailable(f"needs Chromium: {INSTALL_HINT}")


class BrowserProcess:
    """One Playwright driver and one Chromium, started on first use and stopped on demand.

    Playwright's sync API keeps an asyncio event loop marked as running in this thread for as
    long as it is started, and Django's ORM then refuses to run here (SynchronousOnlyOperation),
    even between page actions, when no coroutine is running. So DJANGO_ALLOW_ASYNC_UNSAFE is set
    for exactly as long as Playwright runs (fixture setup and teardown of the tests around it
    included), and conftest stops the browser before any test that does not use it: the ORM's
    check keeps guarding every other test. pytest-django runs live-server tests together, so
    consecutive browser tests share one Chromium.
    """

    def __init__(self):
        self._playwright = None
        self.browser = None
        self._async_unsafe_before = None

    def start(self):
        if self.browser is not None:
            return self.browser
        try:
            from playwright.sync_api import Error, sync_playwright
        except ImportError:
            raise BrowserUnavailable(f"needs the playwright package: {INSTALL_HINT}")
        executable = chromium_path()
        self._async_unsafe_before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        self._playwright = sync_playwright().start()
        try:
            self.browser = self._playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        except Error as error:
            self.stop()
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise BrowserUnavailable(f"Chromium at {executable} did not start ({first_line}); {INSTALL_HINT}")
        return self.browser

    @property
    def running(self) -> bool:
        return self._playwright is not None

    def stop(self):
        if self.browser is not None:
            self.browser.close()
            self.browser = None
        if self._playwright is not None:
            self._playwright.stop()
            self._playwright = None
            if self._async_unsafe_before is None:
                os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
            else:
                os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = self._async_unsafe_before


def artifacts_root() -> Path:
    """Where test artifacts go. Read it once per run, before any test changes settings.VAR_DIR."""
    return Path(os.environ.get("OMNI_TEST_ARTIFACTS") or Path(settings.VAR_DIR) / "test-artifacts")


def artifacts_dir_for(root: Path, nodeid: str) -> Path:
    """root/browser/<module>.<test>[params], as a safe folder name."""
    path, _, name = nodeid.partition("::")
    module = Path(path).stem
    return root / "browser" / re.sub(r"[^A-Za-z0-9._\[\]-]+", "-", f"{module}.{name}")


class Screenshots:
    """Full-page screenshots of one test, numbered in the order they were taken."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.taken: list[Path] = []
        shutil.rmtree(folder, ignore_errors=True)  # a rerun keeps only its own pictures

    def path_for(self, name: str, suffix: str = ".png") -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")
        return self.folder / f"{len(self.taken) + 1:02d}-{slug}{suffix}"

    def take(self, page, name: str) -> Path:
        path = self.path_for(name)
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


def log_in(page, username: str, password: str) -> None:
    """Log in through the admin's own login form and land on the admin index."""
    page.goto("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    if "/admin/login/" in page.url:
        errors = page.locator(".errornote, .errorlist").all_inner_texts()
        raise AssertionError(f"logging in as {username!r} failed: {' '.join(errors) or page.url}")


# The models' names in the admin's sidebar (omni/web/navigation.py), leaving out the pages that
# are no model's list (the contact search, the support figures, the inbox).
INDEX_MODEL_LINKS = ('#nav-sidebar-apps ol a:not([href^="/admin/find/"]):not([href^="/admin/support/figures/"])'
                     ':not([href^="/admin/inbox/"]):not([href^="/admin/compliance/messages/export/"])')


def index_links(page) -> set[str]:
    """The names of the models the admin's sidebar links to for the logged-in user."""
    page.goto("/admin/")
    return {text.strip() for text in page.locator(INDEX_MODEL_LINKS).all_inner_texts()}


def open_from_index(page, name: str) -> None:
    """Click a model's name ("Contacts", "Audit entries") in the sidebar of the admin's home, as
    a person would; the test keeps working when the model moves to another group."""
    page.goto("/admin/")
    with page.expect_navigation():
        page.locator("#nav-sidebar-apps").get_by_role("link", name=name, exact=True).click()


def expect(actual, message=None):
    """Playwright's `expect` (assertions that wait for the page), imported only when called so
    a test module that uses it still loads, and is skipped, where Playwright is missing."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(actual, message)
