"""The web app as an attacker meets it: forged Host headers, login-lockout wiping, oversized and
half-sent requests, hostile query strings and JSON, and security headers; over ASGI and over
real HTTP to uvicorn on loopback, on a real store."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx
from starlette.applications import Starlette

from dispatcher.accounts import Role
from dispatcher.store import AttemptResult, Outcome, Store
from dispatcher.store.accounts import AuditEntry
from dispatcher.web import Context, app_for
from dispatcher.web.limits import SlidingWindow
from dispatcher.web.optin_text import TEXT
from tests.conftest import never_retry
from tests.smtp_server import SmtpServer
from tests.test_optin import FORM, PUBLIC, form_token, links, visitor, write_world
from tests.test_store_contract import NOW, people, take
from tests.web_client import PASSWORD, add_users, client, log_in, web_settings

EVIL = "evil.example"


def optin_app(tmp_path: Path, store: Store, smtp: SmtpServer, public_url: str | None) -> Starlette:
    settings = web_settings(
        tmp_path, actions_dir=write_world(tmp_path), smtp_url=smtp.url, public_url=public_url
    )
    return app_for(settings, store)


async def forged_join(web: httpx.AsyncClient, email: str) -> httpx.Response:
    """A valid form posted with someone else's address and a Host header of the attacker's."""
    token = await form_token(web)
    return await web.post("/join", data={**FORM, "email": email, "form_token": token}, headers={"host": EVIL})


# Item 7: links never come from the Host header ----------------------------------------------------
async def test_a_forged_host_never_reaches_the_emailed_links(tmp_path: Path, store: Store) -> None:
    with SmtpServer() as smtp:
        async with visitor(optin_app(tmp_path, store, smtp, PUBLIC)) as web:
            assert (await forged_join(web, "victim@example.net")).status_code == 200
        mail = smtp.wait_for(1)[0]
    assert EVIL not in mail.message().as_string()
    assert set(links(mail)) == {"join/confirm", "revoke"}  # both at the public URL


async def test_without_a_public_url_no_form_is_taken_and_no_email_sent(tmp_path: Path, store: Store) -> None:
    with SmtpServer() as smtp:
        async with visitor(optin_app(tmp_path, store, smtp, None)) as web:
            page = await web.get("/join")
            assert page.status_code == 503 and TEXT["en"]["unavailable_body"] in page.text
            posted = await web.post("/join", data={**FORM, "email": "victim@example.net"})
            assert posted.status_code == 503
        assert smtp.received() == []
    assert store.people.export("victim@example.net") is None


# Item 9: a flood of names cannot unlock an account ------------------------------------------------
async def fail_logins(web: httpx.AsyncClient, names: list[str], status: int) -> None:
    for name in names:
        assert (await log_in(web, name, "not the password")).status_code == status, name


async def test_random_names_from_a_blocked_address_do_not_unlock_an_account(
    tmp_path: Path, store: Store
) -> None:
    add_users(store)
    app = app_for(web_settings(tmp_path), store)
    ctx: Context = app.state.ctx
    ctx.by_account = SlidingWindow(5, 900, max_keys=20)  # the production table, in small
    random_names = [secrets.token_hex(6) for _ in range(60)]
    async with visitor(app, "192.0.2.66") as attacker, visitor(app, "192.0.2.77") as other:
        await fail_logins(attacker, ["staff"] * 5, 401)  # the account is locked
        await fail_logins(attacker, random_names[:15], 401)  # and now the address
        await fail_logins(attacker, random_names[15:], 429)  # asking about names adds none
        await fail_logins(other, [secrets.token_hex(6) for _ in range(10)], 401)  # a full table
        locked = await log_in(other, "staff", PASSWORD)
        assert locked.status_code == 429
    assert len(ctx.by_account) <= 20
    assert ctx.by_account.blocked("never-seen") == 0.0 and len(ctx.by_account) <= 20


def test_a_full_window_sheds_expired_and_unblocked_keys_never_blocked_ones() -> None:
    window = SlidingWindow(2, 900, max_keys=10)
    window.hit("locked")
    window.hit("locked")
    for n in range(100):
        window.hit(f"name-{n}")
        assert len(window) <= 10
    assert window.blocked("locked") > 0
    assert window.blocked("name-99") == 0.0 and len(window) <= 10


# Item 10: no formula in any piece a spreadsheet may split a cell into ----------------------------
INJECTED = "x;=1+1;\t-2+3\n@SUM(A1)"


def formulas(raw: str) -> list[str]:
    """Pieces of a CSV file that a spreadsheet splitting on ';', tab or line breaks (and
    ignoring quotes) would evaluate."""
    pieces = re.split(r"[;\t\n,]", raw)
    return [p for p in pieces if p.strip().lstrip('"').lstrip().startswith(("=", "+", "-", "@"))]


async def test_the_log_and_audit_exports_hold_no_formula_for_any_locale(tmp_path: Path, store: Store) -> None:
    add_users(store)
    store.import_supporters(people(1), NOW)
    store.plan("act", [("t1", "email")], NOW)
    (claim,) = take(store, "w")
    reply = AttemptResult(claim.delivery_id, "act", "t1", "email", NOW, NOW, Outcome.FAILED, 550, INJECTED)
    store.record("w", [reply], never_retry)
    store.accounts.audit(AuditEntry(NOW, "staff", "192.0.2.10", "extended", "act", INJECTED))
    async with client(web_settings(tmp_path), store) as web:
        assert (await log_in(web, Role.VIEWER.label)).status_code == 303
        for path in ("/log.csv?action=act", "/audit.csv"):
            raw = (await web.get(path)).text
            assert "x;'=1+1;" in raw and formulas(raw) == [], path
