"""The supporters' opt-in page in a real browser (Playwright on Debian's Chromium, see
../shared/browser-tests.md) against a real ``dispatcher web`` on loopback, mailing through aiosmtpd.

A Chinese-speaking supporter opens the demo action's form in Chinese, is stopped by the browser
and then by the server with every problem in Chinese next to its field, fills the form in, sends
it with the keyboard, gets the confirmation email in Chinese, opens its link, presses Confirm and
is recorded with the terms chosen; then withdraws with the email's other link. Screenshots of the
filled form at a phone and a desktop width land in tests/artifacts/; the desktop one is also
written to docs/optin.png for the README when that file is missing or
DISPATCHER_UPDATE_SCREENSHOTS=1.

Skipped when Chromium or Playwright is missing, unless DISPATCHER_REQUIRE_BROWSER=1 (then failed).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dispatcher.store import Store, open_store
from dispatcher.web.public.optin import text_for
from tests.asgi_server import free_port
from tests.campaign import dispatcher_executable
from tests.conftest import ROOT, cli_env
from tests.smtp_server import Received, SmtpServer

# The dashboard's browser test skips (or fails) this module too when there is no browser.
from tests.test_browser import ARTIFACTS, chromium, stop, tail, wait_until, web_is_up

from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Locator, Page, ViewportSize, expect  # isort: skip

pytestmark = pytest.mark.slow

ACTION = "demo-xinjiang"
TITLE = "Demo: missing and arbitrarily detained in Xinjiang"  # the action's only title
LANG = "zh-Hans"
ZH = text_for(LANG)
EMAIL = "lin.xiaowen@example.net"
WORDS = "我们关心伊力哈木·土赫提的安危，请立即释放他，并告知他的家人他的下落。"
README_SHOT = ROOT / "docs" / "optin.png"
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}

__all__ = ["chromium"]  # the fixture, imported for its name


class Site:
    """aiosmtpd and ``dispatcher web`` serving the demo action, and a store on the same file."""

    def __init__(self, tmp_path: Path, smtp: SmtpServer) -> None:
        self.smtp = smtp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        actions = tmp_path / "actions"
        actions.mkdir()
        source = ROOT / "config" / "actions" / f"{ACTION}.yaml"
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
        text = yaml.safe_dump({**data, "tags": ["xinjiang"]}, allow_unicode=True)
        (actions / f"{ACTION}.yaml").write_text(text, encoding="utf-8")
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
        self.env = inherited | cli_env(
            tmp_path,
            DISPATCHER_ACTIONS_DIR=str(actions),
            DISPATCHER_SMTP_URL=smtp.url,
            DISPATCHER_SMTP_TIMEOUT="5",
            DISPATCHER_PUBLIC_URL=self.url,  # the emailed links open this server
        )
        self.log = tmp_path / "optin-web.log"
        self.proc: subprocess.Popen[bytes] | None = None
        open_store(self.env["DISPATCHER_DATABASE_URL"]).close()  # the schema, before web starts
        self.store: Store = open_store(self.env["DISPATCHER_DATABASE_URL"], migrate=False)

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [dispatcher_executable(), "web", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: web_is_up(self.url), 20, "dispatcher web answering /healthz")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
        self.store.close()

    def keep_log(self) -> None:
        with contextlib.suppress(OSError):
            shutil.copy(self.log, ARTIFACTS / self.log.name)
        print(f"--- {self.log.name}\n{tail(self.log)}")

    def export(self) -> dict[str, Any] | None:
        return self.store.people.export(EMAIL)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    ARTIFACTS.mkdir(exist_ok=True)
    for stale in ("optin-failure.png", "optin-web.log"):  # from an earlier failed run
        (ARTIFACTS / stale).unlink(missing_ok=True)
    with SmtpServer() as smtp:
        s = Site(tmp_path, smtp)
        try:
            s.start()
            yield s
        finally:
            s.stop()


# the browser ----------------------------------------------------------------------------------
def chinese_page(browser: Browser, base_url: str) -> tuple[BrowserContext, Page, list[str]]:
    """A zh-CN browser; what goes wrong in it (console errors, failed requests) is collected."""
    context = browser.new_context(base_url=base_url, locale="zh-CN", viewport=DESKTOP)
    context.set_default_timeout(10_000)
    page = context.new_page()
    trouble: list[str] = []

    def console(message: ConsoleMessage) -> None:
        where = message.location.get("url", "")
        if message.type == "error" and not where.endswith("/favicon.ico"):  # browsers ask; none is served
            trouble.append(f"console: {message.text} ({where})")

    page.on("console", console)
    page.on("pageerror", lambda e: trouble.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: trouble.append(f"request failed: {r.url}"))
    return context, page, trouble


def heading(page: Page, text: str) -> None:
    expect(page.locator("html")).to_have_attribute("lang", LANG)
    expect(page.get_by_role("heading", level=1)).to_have_text(text)


def field(page: Page, key: str) -> Locator:
    """A form control by its visible Chinese label (so the label is tied to the control)."""
    return page.get_by_label(ZH[key], exact=True)


def fill_form(page: Page, name: str, email: str, cap: str) -> None:
    field(page, "name").fill(name)
    field(page, "email").fill(email)
    field(page, "city").fill("台北")
    field(page, "country").select_option("TW")
    field(page, "language").select_option(LANG)
    page.locator("#words").fill(WORDS)
    page.get_by_role("radio", name=ZH["display_name"]).check()
    field(page, "cap").fill(cap)
    page.get_by_role("checkbox", name=ZH["agree"]).check()


def expect_problem(page: Page, key: str, control: Locator, message: str) -> None:
    """The problem is shown by its field, in Chinese, tied to it for screen readers."""
    problem = page.locator(f"#{key}-problem")
    expect(problem).to_have_text(message)
    expect(control).to_have_attribute("aria-invalid", "true")
    expect(control).to_have_attribute("aria-describedby", re.compile(rf"(^| ){key}-problem$"))
    # Next to the field: inside the same .field block (below its help text).
    assert control.evaluate("(c, p) => c.closest('.field').contains(p)", problem.element_handle())
    control.focus()
    expect(control).to_be_focused()


def shot(page: Page, name: str, viewport: ViewportSize) -> Path:
    page.set_viewport_size(viewport)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert width <= 0, f"the page scrolls sideways by {width} px at {page.viewport_size}"


# the email ------------------------------------------------------------------------------------
def the_email(smtp: SmtpServer) -> Received:
    wait_until(lambda: len(smtp.received()) >= 1, 15, "the confirmation email at the SMTP server")
    [mail] = smtp.received()
    return mail


def email_links(mail: Received, base: str) -> dict[str, str]:
    body = mail.message().get_body(("plain",))
    assert body is not None
    text = str(body.get_content())
    assert "林小文，您好" in text and ZH["what_action"].format(title=TITLE) in text
    pattern = re.compile(re.escape(base) + r"/(join/confirm|revoke)/[A-Za-z0-9_.=\-]+\?lang=" + LANG)
    found = {m.group(1): m.group(0) for m in pattern.finditer(text)}
    assert set(found) == {"join/confirm", "revoke"}, text
    return found


# the test -------------------------------------------------------------------------------------
def test_a_chinese_supporter_joins_confirms_and_withdraws(chromium: Browser, site: Site) -> None:
    started = time.monotonic()
    context, page, trouble = chinese_page(chromium, site.url)
    try:
        form_path = f"/join/{ACTION}?lang={LANG}"
        page.goto(form_path)
        heading(page, ZH["title_action"].format(title=TITLE))
        expect(page.get_by_role("group", name=ZH["legend_you"])).to_be_visible()
        expect(page.locator(".consent")).to_have_text(ZH["consent_text"].format(org="Letters (demo)"))
        expect(field(page, "language")).to_have_value(LANG)  # the page's language, preselected

        # Sent empty: the browser itself stops it at the first required field.
        page.get_by_role("button", name=ZH["submit"]).click()
        expect(field(page, "name")).to_be_focused()
        assert field(page, "name").evaluate("e => e.validity.valueMissing")
        expect(page).to_have_url(re.compile(re.escape(form_path) + "$"))

        # What only the server can tell: a blank name, an address without a domain, a cap too high.
        fill_form(page, "   ", "lin@example", "500")
        page.get_by_role("button", name=ZH["submit"]).click()
        heading(page, ZH["title_action"].format(title=TITLE))
        expect(page.get_by_role("alert")).to_have_text(ZH["err_form"])
        expect_problem(page, "name", field(page, "name"), ZH["err_name"])
        expect_problem(page, "email", field(page, "email"), ZH["err_email"])
        expect_problem(page, "cap", field(page, "cap"), ZH["err_cap"].format(max=100))
        for key, typed in (("email", "lin@example"), ("city", "台北"), ("cap", "500")):
            expect(field(page, key)).to_have_value(typed)
        expect(field(page, "country")).to_have_value("TW")
        expect(page.locator("#words")).to_have_value(WORDS)
        expect(page.get_by_role("radio", name=ZH["display_name"])).to_be_checked()
        expect(page.get_by_role("checkbox", name=ZH["agree"])).to_be_checked()
        expect(page.locator("[aria-invalid=true]")).to_have_count(3)
        shot(page, "optin-zh-errors-phone", PHONE)
        page.set_viewport_size(DESKTOP)
        assert site.smtp.received() == []
        assert [t for t in trouble if "400" not in t] == []  # the page answered 400, as it should
        trouble.clear()

        # A fresh form, filled in well, at both widths; sent with the Enter key.
        page.goto(form_path)
        fill_form(page, "林小文", EMAIL, "１０")  # full-width digits, as a Chinese keyboard types them
        phone = shot(page, "optin-zh-phone", PHONE)
        no_horizontal_scroll(page)
        desktop = shot(page, "optin-zh-desktop", DESKTOP)
        no_horizontal_scroll(page)
        if not README_SHOT.exists() or os.environ.get("DISPATCHER_UPDATE_SCREENSHOTS") == "1":
            README_SHOT.parent.mkdir(exist_ok=True)
            shutil.copy(desktop, README_SHOT)
        assert phone.stat().st_size > 20_000 and desktop.stat().st_size > 20_000  # not blank
        assert desktop.stat().st_size < 300_000, f"{desktop}: too heavy for the README"
        field(page, "cap").press("Enter")
        heading(page, ZH["sent_title"])
        expect(page.get_by_text(ZH["sent_body"])).to_be_visible()

        # The email: in Chinese, with a one-click way out.
        mail = the_email(site.smtp)
        message = mail.message()
        assert mail.rcpt_tos == (EMAIL,)
        assert message["Content-Language"] == LANG and message["Subject"] == ZH["mail_subject"]
        links = email_links(mail, site.url)
        assert message["List-Unsubscribe"] == f"<{links['revoke']}>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

        # The confirmation link shows a button; opening it records nothing.
        page.goto(links["join/confirm"])
        heading(page, ZH["confirm_title"])
        assert site.export() is None
        shot(page, "optin-zh-confirm-phone", PHONE)
        page.get_by_role("button", name=ZH["confirm_button"]).click()
        heading(page, ZH["confirmed_title"])
        withdraw = page.get_by_role("link", name=ZH["withdraw_link"])
        expect(withdraw).to_have_attribute("href", re.compile(rf"^/revoke/[A-Za-z0-9_.=\-]+\?lang={LANG}$"))
        held = site.export()
        assert held is not None
        person = (held["name"], held["city"], held["country"], held["language"])
        assert person == ("林小文", "台北", "TW", LANG)
        [consent] = held["consents"]
        assert (consent["scope"], consent["name_display"], consent["monthly_cap"]) == (ACTION, "name", 10)
        assert (
            consent["channels"] == "email" and consent["source"] == "form"
        )  # the demo action writes by email only
        assert consent["confirmed_at"] and consent["revoked_at"] is None
        [own] = held["personal_words"]
        assert (own["action_id"], own["words"]) == (ACTION, WORDS)

        # The email's other link: a page with a button, then withdrawn.
        page.goto(links["revoke"])
        heading(page, ZH["revoke_title"])
        held = site.export()
        assert held is not None and held["consents"][0]["revoked_at"] is None  # a GET changes nothing
        page.get_by_role("button", name=ZH["revoke_button"]).click()
        heading(page, ZH["revoked_title"])
        shot(page, "optin-zh-revoked-phone", PHONE)
        held = site.export()
        assert held is not None
        assert all(c["revoked_at"] for c in held["consents"])
        assert [(e["kind"], e["source"]) for e in held["consent_events"]][-1] == ("revoked", "link")

        assert trouble == []
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(ARTIFACTS / "optin-failure.png"), full_page=True)
        site.keep_log()
        print("\n".join(trouble))
        raise
    finally:
        context.close()
    assert time.monotonic() - started < 60
