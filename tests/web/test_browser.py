"""The dashboard in a real browser (Playwright on Debian's Chromium, see ../shared/browser-tests.md)
against real processes on loopback: ``dispatcher web`` and ``dispatcher run`` sending to aiosmtpd.

Staff log in and watch the counts move without reloading, pause an action and see the SMTP server
go quiet, resume it; an operator requeues a refused letter and sees it sent again, exports the log
as CSV, and logs out. Screenshots land in tests/artifacts/; the overview, taken mid-send at a
phone and a desktop width, is also written to docs/dashboard.png for the README when that file is
missing or DISPATCHER_UPDATE_SCREENSHOTS=1.

Skipped when Chromium or Playwright is missing, unless DISPATCHER_REQUIRE_BROWSER=1 (then failed).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from dispatcher.sending.runtime import utcnow
from dispatcher.sending.sendlog import LOG_FIELDS
from dispatcher.store import open_store
from tests.campaigns.campaign import dispatcher_executable
from tests.campaigns.test_campaign_shapes import supporters, write_actions
from tests.conftest import ROOT, cli_env
from tests.support import processes
from tests.support.caps import NO_CAPS_ENV
from tests.support.processes import free_port, stop
from tests.support.smtp_server import SmtpServer

CHROMIUM = Path("/usr/bin/chromium")
REQUIRED = os.environ.get("DISPATCHER_REQUIRE_BROWSER") == "1"
ARTIFACTS = ROOT / "tests" / "artifacts"
README_SHOT = ROOT / "docs" / "dashboard.png"
PASSWORD = "correct horse battery"
APPEAL, PETITION = "appeal", "petition"
APPEAL_RCPTS = {"pres@example.org", "minister@example.org"}
REFUSED = "amb@example.org"  # the petition's one target; its first letter is refused with 550
APPEAL_SUPPORTERS, PETITION_SUPPORTERS = 200, 6

pytestmark = pytest.mark.slow


def _no_browser(reason: str) -> NoReturn:
    if REQUIRED:
        pytest.fail(f"browser tests required (DISPATCHER_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason, allow_module_level=True)


try:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    _no_browser("playwright is not installed (pip install -e '.[test]')")


@pytest.fixture
def chromium() -> Iterator[Browser]:
    """Debian's Chromium (Playwright's own download is unreachable here), for this test only.

    Playwright's sync API is started and stopped inside the test: a session-wide Playwright (as
    pytest-playwright keeps) leaves its event loop marked as running in the main thread, and
    every asyncio test collected after it would fail.
    """
    if not CHROMIUM.exists():
        _no_browser(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"], timeout=60_000
        )
        try:
            yield browser
        finally:
            browser.close()


# processes ------------------------------------------------------------------------------------
def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    # Every 0.2 s: each check asks a server or the store, while chromium needs the machine.
    processes.wait_until(check, timeout, what, interval=0.2)


def tail(path: Path, lines: int = 25) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def web_is_up(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class World:
    """Two actions, their supporters, two users, an SMTP server, ``web`` and ``run``."""

    def __init__(self, tmp_path: Path, smtp: SmtpServer) -> None:
        self.tmp, self.smtp = tmp_path, smtp
        self.exe = dispatcher_executable()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
        self.env = inherited | cli_env(
            tmp_path,
            tmp_path,
            DISPATCHER_SMTP_URL=smtp.url,
            DISPATCHER_SMTP_TIMEOUT="5",
            # Slow on purpose: 2 letters a second per official, so the appeal lasts ~100 s.
            DISPATCHER_RATE_PER_TARGET="2",
            DISPATCHER_BURST_PER_TARGET="1",
            **NO_CAPS_ENV,  # 200 letters to each official: a steady flow, not an hour's cap
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def prepare(self) -> None:
        write_actions(self.tmp, {APPEAL: ["pres", "minister"], PETITION: ["amb"]})
        store = open_store(self.env["DISPATCHER_DATABASE_URL"])
        try:
            now = utcnow()
            store.import_supporters(supporters(APPEAL_SUPPORTERS, (APPEAL,)), now)
            store.import_supporters(supporters(PETITION_SUPPORTERS, (PETITION,), APPEAL_SUPPORTERS), now)
        finally:
            store.close()
        for name, role in (("stella", "staff"), ("otto", "operator")):
            subprocess.run(
                [self.exe, "users", "add", name, "--role", role],
                input=f"{PASSWORD}\n".encode(),
                env=self.env,
                check=True,
                capture_output=True,
                timeout=30,
            )

    def start(self, name: str, *args: str) -> None:
        log = self.tmp / f"{name}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.procs.append(
                subprocess.Popen([self.exe, *args], env=self.env, stdout=out, stderr=subprocess.STDOUT)
            )

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)
        for log in self.logs:
            with contextlib.suppress(OSError):
                shutil.copy(log, ARTIFACTS / log.name)
            print(f"--- {log.name}\n{tail(log)}")

    def to_appeal(self) -> int:
        return sum(1 for r in self.smtp.received() for rcpt in r.rcpt_tos if rcpt in APPEAL_RCPTS)

    def quiet_for(self, seconds: float, within: float) -> None:
        """Letters to the appeal's officials stop arriving: none for ``seconds``, within ``within``."""
        deadline = time.monotonic() + within
        while True:
            before = self.to_appeal()
            time.sleep(seconds)
            if self.to_appeal() == before:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the SMTP server still receives appeal letters {within} s after pausing"
                )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    ARTIFACTS.mkdir(exist_ok=True)
    with SmtpServer() as smtp:
        smtp.fail(at="data", reply="550", rcpt=REFUSED, times=1)
        w = World(tmp_path, smtp)
        w.prepare()
        try:
            w.start("web", "web", "--port", str(w.port))
            w.start("run", "run", "--worker-id", "browser-test")
            wait_until(lambda: web_is_up(w.url), 20, "dispatcher web answering /healthz")
            wait_until(lambda: w.to_appeal() > 0, 20, "the first appeal letter at the SMTP server")
            yield w
        finally:
            w.stop_all()


# the browser ----------------------------------------------------------------------------------
def new_page(browser: Browser, base_url: str, **options: Any) -> tuple[BrowserContext, Page]:
    context = browser.new_context(
        base_url=base_url, locale="en-GB", viewport={"width": 1280, "height": 800}, **options
    )
    context.set_default_timeout(15_000)
    return context, context.new_page()


def log_in(page: Page, name: str) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator(".who")).to_contain_text(name)


def log_out(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))  # the session is gone


def number(text: str) -> int:
    return int(re.sub(r"[^0-9]", "", text) or 0)


def cell(page: Page, action_id: str, count: str) -> Any:
    return page.locator(f'tr[data-action="{action_id}"] td[data-count="{count}"]')


def shot(page: Page, name: str, full_page: bool = True) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def readme_picture(browser: Browser, desktop: Path, phone: Path) -> None:
    """The two widths side by side in one PNG, composed by the browser itself (no Pillow)."""

    def src(path: Path) -> str:
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()

    context = browser.new_context(viewport={"width": 1800, "height": 900})
    try:
        page = context.new_page()
        page.set_content(
            '<body style="margin:0;background:#cfd8dc">'
            '<div id="pair" style="display:inline-flex;gap:24px;align-items:flex-start;padding:16px">'
            f'<img src="{src(desktop)}" style="width:1000px;box-shadow:0 1px 6px #0004">'
            f'<img src="{src(phone)}" style="width:300px;box-shadow:0 1px 6px #0004">'
            "</div></body>"
        )
        page.wait_for_function("[...document.images].every(i => i.complete)")
        combined = ARTIFACTS / "dashboard.png"
        page.locator("#pair").screenshot(path=str(combined))
    finally:
        context.close()
    assert combined.stat().st_size < 200_000, f"{combined}: {combined.stat().st_size} bytes"
    if not README_SHOT.exists() or os.environ.get("DISPATCHER_UPDATE_SCREENSHOTS") == "1":
        README_SHOT.parent.mkdir(exist_ok=True)
        shutil.copy(combined, README_SHOT)


def test_staff_and_operator_at_work(chromium: Browser, world: World) -> None:
    started = time.monotonic()

    # Staff: the overview's numbers move without a reload (live.js polls /api/overview).
    staff_ctx, page = new_page(chromium, world.url)
    log_in(page, "stella")
    page.evaluate("window.__notReloaded = true")
    sent = cell(page, APPEAL, "sent")
    first = sent.inner_text()
    expect(sent).not_to_have_text(first, timeout=10_000)
    expect(sent).not_to_have_text(sent.inner_text(), timeout=10_000)
    assert number(sent.inner_text()) > number(first)
    assert page.evaluate("window.__notReloaded") is True, "the page reloaded"
    expect(page.locator(f'tr[data-action="{APPEAL}"] [data-field="status"]')).to_have_text("active")

    # Mid-send: the overview at a desktop and a phone width.
    desktop = shot(page, "overview-desktop")
    page.set_viewport_size({"width": 390, "height": 844})
    phone = shot(page, "overview-phone")
    page.set_viewport_size({"width": 1280, "height": 800})
    readme_picture(chromium, desktop, phone)

    # Pause the appeal: the SMTP server goes quiet within seconds and the page says so.
    page.get_by_role("link", name=APPEAL, exact=True).click()
    expect(page).to_have_url(re.compile(f"/actions/{APPEAL}$"))
    clicked = time.time()
    page.get_by_role("button", name="Pause").click()
    expect(page).to_have_url(re.compile(f"/actions/{APPEAL}$"))
    status = page.locator('#overview [data-field="status"]')
    expect(status).to_have_text("paused (by stella)")
    world.quiet_for(3.0, within=10.0)
    last = max(r.at for r in world.smtp.received() if APPEAL_RCPTS & set(r.rcpt_tos))
    print(f"last appeal letter {last - clicked:+.2f} s after pressing Pause")
    assert last - clicked < 5, f"the pause took effect only after {last - clicked:.1f} s"
    shot(page, "action-paused")
    paused_at = world.to_appeal()

    # Resume: sending goes on.
    page.get_by_role("button", name="Resume").click()
    expect(status).to_have_text("active")
    wait_until(lambda: world.to_appeal() > paused_at, 10, "appeal letters again after resuming")
    log_out(page)
    staff_ctx.close()

    # The petition's first letter was refused (550 at DATA); the others went out.
    refused = next(e for e in world.smtp.events() if e.reply == "550")
    assert refused.message_id

    # Operator: requeue it from the action page, and see it sent.
    operator_ctx, page = new_page(chromium, world.url, accept_downloads=True)
    log_in(page, "otto")
    page.goto(f"/actions/{PETITION}")
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)  # staff only, hidden
    requeue = page.locator('form:has(input[name="delivery_id"]) button')
    for _ in range(50):  # the refusal is committed with the next batch of results
        if requeue.count():
            break
        page.wait_for_timeout(200)
        page.reload()
    expect(requeue).to_have_count(1)
    expect(page.get_by_role("cell", name=re.compile("550"))).not_to_have_count(0)
    shot(page, "action-failed")
    requeue.click()
    expect(page).to_have_url(re.compile(f"/actions/{PETITION}$"))
    expect(requeue).to_have_count(0)
    wait_until(
        lambda: refused.message_id in world.smtp.message_ids(), 15, "the requeued letter at the SMTP server"
    )
    queues = page.locator("h2:text('Queues') + table tbody")
    everything_sent = re.compile(rf"^amb\s+email\s+sent\s+{PETITION_SUPPORTERS}\s")
    for _ in range(50):  # one row: every petition letter sent, none failed or pending
        page.reload()
        if everything_sent.search(queues.inner_text()):
            break
        page.wait_for_timeout(200)
    assert everything_sent.search(queues.inner_text()), queues.inner_text()
    expect(queues.locator("tr")).to_have_count(1)
    shot(page, "action-requeued")

    # The audit log names who paused and who requeued.
    page.get_by_role("link", name="Audit").click()
    for who_what in (f"stella 127.0.0.1 pause {APPEAL}", f"otto 127.0.0.1 requeue {PETITION}"):
        expect(page.get_by_role("row", name=re.compile(re.escape(who_what)))).to_have_count(1)

    # Export the send log as CSV.
    page.get_by_role("link", name="Send log").click()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    assert download.suggested_filename == "send-log.csv"
    saved = ARTIFACTS / "send-log.csv"
    download.save_as(saved)
    rows = list(csv.reader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert rows[0] == LOG_FIELDS
    log = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    petition = [r for r in log if r["action_id"] == PETITION]
    assert sorted(r["outcome"] for r in petition) == ["failed"] + ["sent"] * PETITION_SUPPORTERS
    assert any(r["outcome"] == "sent" and r["action_id"] == APPEAL for r in log)
    log_out(page)
    operator_ctx.close()

    assert time.monotonic() - started < 90
