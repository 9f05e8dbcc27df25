"""A browser step other walks reuse: a compliance user changes a quiet-hours rule and reads its
policy replay before saving (compliance/replay_admin.py)."""
import re
from datetime import datetime, time, timedelta

from omni.tests.browser import expect

# The replay runs as a Celery task; on a loaded machine its page may reload a few times first.
REPLAY_TIMEOUT_MS = 60_000


def wait_for_replay(page) -> None:
    """After a replayable rule's Save: the replay page, once its run is done (a refused form, not
    the replay page, fails here naming the page's address)."""
    expect(page).to_have_url(re.compile(r"/replay/\d+/$"), timeout=REPLAY_TIMEOUT_MS)
    expect(page.locator("#replay")).to_have_attribute("data-status", "done", timeout=REPLAY_TIMEOUT_MS)


def confirm_replay(page) -> None:
    """After a replayable rule's Save: wait for its replay, then confirm it (the rule is saved)."""
    wait_for_replay(page)
    with page.expect_navigation():
        page.locator("#replay-confirm").click()


def replay_quiet_hours_step(page, base_url: str, rule, *, start: time | None = None, screenshot=None) -> dict:
    """With `page` logged in as a Compliance user: open `rule` (a QuietHours row) from the quiet
    hours list, move its start to `start` (default: two hours earlier), save, wait on the replay
    page until the replay is done and its differences per channel and purpose show, then confirm.

    The replay runs as a Celery task: the live server must run it (eager_celery, or a worker).
    Returns what the page said: {"summary", "differences": [row texts], "changes": [texts]}."""
    start = start or (datetime.combine(datetime.min, rule.start) - timedelta(hours=2)).time()
    page.goto(f"{base_url}/admin/compliance/quiethours/")
    with page.expect_navigation():
        page.locator("#result_list").get_by_role("link", name=rule.name, exact=True).click()
    page.locator("#id_start").fill(f"{start:%H:%M:%S}")
    with page.expect_navigation():
        page.get_by_role("button", name="Save", exact=True).click()

    # the replay page: its bar fills, the page reloads itself until the replay is done
    expect(page.locator("h1, #replay-proposed-title").first).to_be_visible()
    wait_for_replay(page)
    expect(page.locator("#replay-summary")).to_be_visible()
    expect(page.locator("#replay-differences")).to_be_visible()
    expect(page.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", page.locator(
        "[role=progressbar]").get_attribute("aria-valuemax"))
    said = {
        "summary": page.locator("#replay-summary").inner_text(),
        "differences": page.locator("#replay-differences tbody tr").all_inner_texts(),
        "changes": page.locator("#replay-changes li").all_inner_texts() if page.locator("#replay-changes").count()
        else [],
    }
    if screenshot:
        screenshot("quiet hours change: its replay before saving")

    with page.expect_navigation():
        page.locator("#replay-confirm").click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    if screenshot:
        screenshot("quiet hours change saved after its replay")
    return said
