"""The web app as an attacker meets it: forged Host headers, login-lockout wiping, oversized and
half-sent requests, hostile query strings and JSON, and security headers; over ASGI and over
real HTTP to uvicorn on loopback, on a real store."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import select
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from dispatcher.accounts import Role
from dispatcher.models import AttemptResult, Outcome
from dispatcher.store import Store
from dispatcher.store.accounts import AuditEntry
from dispatcher.web import Context, app_for, bodies
from dispatcher.web.limits import SlidingWindow
from dispatcher.web.public.optin import text_for
from tests.asgi_server import free_port, serve
from tests.conftest import ROOT, cli_env, never_retry
from tests.smtp_server import SmtpServer
from tests.test_optin import FORM, PUBLIC, form_token, join, links, text_of, visitor, write_world
from tests.test_store_contract import NOW, people, take
from tests.test_web import wait_until_up
from tests.web_client import PASSWORD, add_users, client, csrf_of, log_in, web_settings

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
            assert page.status_code == 503 and text_for("en")["unavailable_body"] in page.text
            posted = await web.post("/join", data={**FORM, "email": "victim@example.net"})
            assert posted.status_code == 503
        assert smtp.received() == []
    assert store.people.export("victim@example.net") is None


@pytest.mark.slow
def test_dispatcher_web_says_at_start_that_without_a_public_url_no_one_can_sign_up(tmp_path: Path) -> None:
    port = free_port()
    web = ROOT / ".venv" / "bin" / "dispatcher"
    env = {**os.environ, **cli_env(tmp_path)}
    proc = subprocess.Popen([str(web), "web", "--port", str(port)], env=env, stderr=subprocess.PIPE)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", proc)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert b"DISPATCHER_PUBLIC_URL is not set" in err and b"opt-in pages take no sign-ups" in err


@pytest.mark.parametrize("language", ["en", "zh-Hans"])
async def test_the_confirmation_email_says_when_the_officials_would_get_the_address(
    tmp_path: Path, store: Store, language: str
) -> None:
    """Anyone can fill in the form with someone else's address and choose that replies go
    straight to them: the person asked to confirm must read that choice, and its risk, before
    confirming 'as you chose', not only the one who filled it in."""
    t = text_for(language)
    with SmtpServer() as smtp:
        async with visitor(optin_app(tmp_path, store, smtp, PUBLIC)) as web:
            for email, replies in (("direct@example.net", "direct"), ("kept@example.net", "organisation")):
                answered = await join(web, email, language=language, replies=replies)
                assert answered.status_code == 200
        direct, kept = sorted(smtp.wait_for(2), key=lambda m: "kept@" in m.message()["To"])
    assert t["replies_direct"] in text_of(direct) and t["replies"] in text_of(direct)
    assert t["replies_risk"].split("{org}")[0] in text_of(direct)
    assert t["replies_direct"] not in text_of(kept)


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


@pytest.mark.slow
async def test_a_new_ipv6_address_per_try_is_still_one_network(tmp_path: Path, store: Store) -> None:
    """One home or server holds a whole /64: counting single addresses would count nothing."""
    add_users(store)
    app = app_for(web_settings(tmp_path), store)
    for n in range(20):
        async with visitor(app, f"2001:db8:1:2::{n + 1:x}") as web:
            await fail_logins(web, [f"guess-{n}"], 401)
    async with (
        visitor(app, "2001:db8:1:2:ffff::9") as same_network,
        visitor(app, "2001:db8:1:3::1") as next_one,
    ):
        assert (await log_in(same_network, "staff", PASSWORD)).status_code == 429
        assert (await log_in(next_one, "staff", PASSWORD)).status_code == 303


def test_a_full_window_sheds_expired_and_unblocked_keys_never_blocked_ones() -> None:
    window = SlidingWindow(2, 900, max_keys=10)
    window.hit("locked")
    window.hit("locked")
    for n in range(100):
        window.hit(f"name-{n}")
        assert len(window) <= 10
    assert window.blocked("locked") > 0
    assert window.blocked("name-99") == 0.0 and len(window) <= 10


def test_a_full_window_sheds_the_keys_with_fewest_hits_first() -> None:
    window = SlidingWindow(5, 900, max_keys=10)
    for _ in range(4):
        window.hit("admin")  # one guess short of the lockout
    for n in range(100):
        window.hit(f"name-{n}")
    window.hit("admin")
    assert window.blocked("admin") > 0  # its four hits were kept


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


# Item 8: bodies and headers bounded, over real HTTP to `dispatcher web` -----------------------------
@contextlib.contextmanager
def dispatcher_web(tmp_path: Path, *flags: str) -> Iterator[int]:
    """The real ``dispatcher web`` on a free loopback port, with these flags; yields the port."""
    port = free_port()
    env = {**os.environ, **cli_env(tmp_path, DISPATCHER_PUBLIC_URL=PUBLIC)}
    command = [str(ROOT / ".venv" / "bin" / "dispatcher"), "web", "--port", str(port), *flags]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture(scope="module")
def web_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with dispatcher_web(tmp_path_factory.mktemp("web"), "--header-timeout", "1") as port:
        yield port


def exchange(port: int, head: bytes, chunks: Iterable[bytes] = ()) -> bytes:
    """Send ``head`` and then ``chunks`` until the server answers; what it answered first
    (b"" when it closed the connection without a word)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break
            sock.sendall(chunk)
        return sock.recv(65536)


def chunked(size: int, piece: int = 64 * 1024) -> Iterator[bytes]:
    """``size`` bytes of a chunked body, never its last chunk: only a limit ends the request."""
    for _ in range(0, size, piece):
        yield f"{piece:x}\r\n".encode() + b"x" * piece + b"\r\n"


def post(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/login", "/join", "/join/confirm/T", "/revoke/T", "/users/add"])
def test_a_declared_large_form_is_refused_before_it_is_sent(web_port: int, path: str) -> None:
    head = post(path, "Content-Type: application/x-www-form-urlencoded", "Content-Length: 1048576")
    assert exchange(web_port, head).startswith(b"HTTP/1.1 413 ")


@pytest.mark.slow
@pytest.mark.parametrize(("path", "limit"), [("/login", 64 * 1024), ("/webhooks/fax/file", 8 << 20)])
def test_a_chunked_body_is_refused_once_it_passes_the_limit(web_port: int, path: str, limit: int) -> None:
    head = post(path, "Content-Type: application/x-www-form-urlencoded", "Transfer-Encoding: chunked")
    assert exchange(web_port, head, chunked(limit + 256 * 1024)).startswith(b"HTTP/1.1 413 ")


@pytest.mark.slow
async def test_a_body_that_stops_arriving_is_answered_408(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bodies, "BODY_IDLE", 0.5)
    app = app_for(web_settings(tmp_path), store)
    with serve(app) as url:
        port = int(url.rsplit(":", 1)[1])
        head = post("/login", "Content-Type: application/x-www-form-urlencoded", "Content-Length: 1000")
        started = time.monotonic()
        answer = await asyncio.to_thread(exchange, port, head + b"name=a&pass")
        assert answer.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < 3
        head = post("/webhooks/fax/file", "Content-Type: application/json", "Transfer-Encoding: chunked")
        assert (await asyncio.to_thread(exchange, port, head + b"5\r\n{}   \r\n")).startswith(
            b"HTTP/1.1 408 "
        )


def trickle(port: int, head: bytes, every: float, within: float) -> tuple[bytes, float]:
    """Send ``head``, then one body byte each ``every`` seconds (never fast enough to finish)
    until the server answers or ``within`` seconds pass: what it answered, and after how long."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=within) as sock:
        sock.sendall(head)
        while time.monotonic() - started < within:
            if select.select([sock], [], [], every)[0]:
                return sock.recv(65536), time.monotonic() - started
            with contextlib.suppress(OSError):  # the server may close between two bytes
                sock.sendall(b"1" if b"chunked" not in head else b"1\r\nx\r\n")
    return b"", time.monotonic() - started


TRICKLED = {
    "form": post("/login", "Content-Type: application/x-www-form-urlencoded", "Content-Length: 60000"),
    "webhook": post("/webhooks/fax/file", "Content-Type: application/json", "Transfer-Encoding: chunked"),
    "api": post("/api/consents", f"Authorization: Bearer {'t' * 32}", "Content-Length: 60000"),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(TRICKLED))
async def test_a_body_trickled_under_the_idle_bound_is_answered_408_by_its_deadline(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A byte every 0.3 s never stalls for the idle bound (0.5 s here, 10 s in production): only
    the whole body's deadline for its route class (2 s here) ends it."""
    monkeypatch.setattr(bodies, "BODY_IDLE", 0.5)
    monkeypatch.setitem(bodies.DEADLINES, kind, 2.0)
    app = app_for(web_settings(tmp_path, api_token="t" * 32), store)
    with serve(app) as url:
        port = int(url.rsplit(":", 1)[1])
        answer, took = await asyncio.to_thread(trickle, port, TRICKLED[kind], 0.3, 8)
    assert answer.startswith(b"HTTP/1.1 408 ") and 1.8 < took < 4, (answer[:40], took)


@pytest.mark.slow
async def test_an_unread_body_cannot_hold_the_connection_after_the_answer(
    tmp_path: Path, store: Store
) -> None:
    """A route that answers without reading the body (here a 401) leaves the rest of it unread:
    uvicorn would keep taking the bytes, restarting its keep-alive timer on each, for ever."""
    app = app_for(web_settings(tmp_path, api_token="t" * 32), store)
    with serve(app) as url:
        port = int(url.rsplit(":", 1)[1])
        head = post("/api/consents", "Content-Length: 60000")
        answered, _ = await asyncio.to_thread(trickle, port, head, 0.3, 3)
        assert answered.startswith(b"HTTP/1.1 401 ") and b"connection: close" in answered.lower()
        closed = await asyncio.to_thread(trickle_after_answer, port, head)
    assert closed


def trickle_after_answer(port: int, head: bytes) -> bool:
    """Whether the server closes the connection while the client trickles the rest of the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        sock.recv(65536)  # the answer
        for _ in range(20):  # 6 s of a byte per 0.3 s, past uvicorn's 5 s keep-alive
            try:
                sock.sendall(b"1")
                if select.select([sock], [], [], 0.3)[0] and sock.recv(65536) == b"":
                    return True
            except OSError:
                return True
    return False


def read_answer(sock: socket.socket) -> bytes:
    """One whole answer (headers, then Content-Length bytes), which may come in pieces."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.mark.slow
def test_a_request_whose_headers_never_finish_is_closed(web_port: int) -> None:
    started = time.monotonic()
    assert exchange(web_port, b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n") == b""
    assert time.monotonic() - started < 4
    with socket.create_connection(("127.0.0.1", web_port), timeout=5) as sock:  # on a kept-alive one
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_answer(sock).startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        sock.sendall(b"GET /login HTTP/1.1\r\n")
        assert sock.recv(65536) == b"" and time.monotonic() - started < 4


# Item 13: the rest ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("public_url", "hsts"), [(PUBLIC, True), ("http://127.0.0.1:8080", False), (None, False)]
)
async def test_every_answer_asks_for_https_when_the_public_url_is_https_and_is_never_sniffed(
    tmp_path: Path, store: Store, public_url: str | None, hsts: bool
) -> None:
    async with client(web_settings(tmp_path, public_url=public_url), store) as web:
        for path in ("/login", "/join", "/healthz", "/static/nothing.css", "/nowhere"):
            got = await web.get(path)
            assert ("strict-transport-security" in got.headers) is hsts, path
            assert got.headers["x-content-type-options"] == "nosniff", path  # downloads too
            assert not hsts or got.headers["strict-transport-security"] == "max-age=31536000"


async def test_an_admin_cannot_add_a_look_alike_name_ending_in_a_line_break(
    tmp_path: Path, store: Store
) -> None:
    add_users(store)
    async with client(web_settings(tmp_path), store) as web:
        assert (await log_in(web, Role.ADMIN.label)).status_code == 303
        csrf = csrf_of((await web.get("/users")).text)
        form = {"name": "admin\n", "role": "admin", "password": PASSWORD, "csrf": csrf}
        assert (await web.post("/users/add", data=form)).status_code == 400
    assert [u.name for u in store.accounts.all_users()].count("admin") == 1
    assert len(store.accounts.all_users()) == len(Role)


@pytest.mark.parametrize("invisible", ["\u200b", "\u3164", "\u2060", "\u200b\u3164 \u2060", "\u115f\u00a0"])
async def test_a_supporter_name_of_invisible_characters_only_is_refused(
    tmp_path: Path, store: Store, invisible: str
) -> None:
    with SmtpServer() as smtp:
        async with visitor(optin_app(tmp_path, store, smtp, PUBLIC)) as web:
            token = await form_token(web)
            data = {**FORM, "name": invisible, "email": "ghost@example.net", "form_token": token}
            assert (await web.post("/join", data=data)).status_code == 400
        assert smtp.received() == []


@pytest.mark.parametrize(
    "query", ["before=99999999999999999999999", "before=²", "until=9999-12-31", "since=0000-01-01"]
)
async def test_hostile_log_queries_are_answered_not_crashed_on(
    tmp_path: Path, store: Store, query: str
) -> None:
    add_users(store)
    async with client(web_settings(tmp_path), store) as web:
        assert (await log_in(web, Role.VIEWER.label)).status_code == 303
        for path in ("/log", "/log.csv", "/audit"):
            got = await web.get(f"{path}?{query}")
            assert got.status_code in (200, 400), (path, got.status_code)


async def test_a_deeply_nested_json_body_is_a_bad_request(tmp_path: Path, store: Store) -> None:
    async with client(web_settings(tmp_path, api_token="t" * 32), store) as web:
        deep = "[" * 30_000 + "]" * 30_000  # under the 64 KiB limit, past the parser's depth
        headers = {"Authorization": f"Bearer {'t' * 32}", "Content-Type": "application/json"}
        got = await web.post("/api/consents", content=deep, headers=headers)
        assert got.status_code == 400 and got.json() == {"error": "the body is not JSON"}


# Found while probing ------------------------------------------------------------------------------
async def test_a_login_form_posted_without_any_cookie_is_refused(tmp_path: Path, store: Store) -> None:
    """Without a cookie, the CSRF token would be that of an empty value: the same for every
    stranger, so one leak would let any site log its visitors in as someone else (login CSRF)."""
    add_users(store)
    anonymous = hmac.new(store.instance_secret(), b"csrf:", hashlib.sha256).hexdigest()
    async with client(web_settings(tmp_path), store) as web:
        form = {"name": Role.ADMIN.label, "password": PASSWORD, "csrf": anonymous, "next": "/"}
        got = await web.post("/login", data=form)
        assert got.status_code == 403 and "dispatcher_session" not in got.cookies


@pytest.mark.parametrize("setting", ["api_token", "metrics_token"])
def test_a_short_bearer_token_is_refused_at_start_without_being_shown(
    tmp_path: Path, store: Store, setting: str
) -> None:
    with pytest.raises(ValueError, match="shorter than 32 characters") as refused:
        app_for(web_settings(tmp_path, **{setting: "hunter2-secret"}), store)
    assert "hunter2" not in str(refused.value) and setting.upper() in str(refused.value)


# Every route not meant for strangers wants a login, including routes added later ------------------
PUBLIC_PATHS = (
    "/login",
    "/join",
    "/revoke/",
    "/webhooks/fax/",
    "/media/fax/",
    "/healthz",
    "/metrics",  # a bearer token (tests/test_metrics.py)
    "/api/consents",  # a bearer token (tests/test_api.py)
)


def routes_of(app: Starlette) -> Iterator[tuple[str, str]]:
    """(method, path) of every route, path parameters filled in."""
    for route in app.routes:
        path = getattr(route, "path", "")
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                yield method, re.sub(r"\{[^}]+\}", "x", path)


async def test_every_route_but_the_public_ones_wants_a_login(tmp_path: Path, store: Store) -> None:
    app = app_for(web_settings(tmp_path), store)
    guarded = [(m, p) for m, p in routes_of(app) if not p.startswith(PUBLIC_PATHS)]
    assert len(guarded) > 15  # the dashboard's pages and controls
    async with visitor(app) as stranger:
        for method, path in guarded:
            got = await stranger.request(method, path, data={"csrf": "x"} if method == "POST" else None)
            wanted = (303, "/login?next=") if method == "GET" else (401, None)
            assert (got.status_code, got.headers.get("location", "")[:12] or None) == wanted, (method, path)


async def test_every_state_change_wants_the_csrf_token_even_from_an_admin(
    tmp_path: Path, store: Store
) -> None:
    add_users(store)
    app = app_for(web_settings(tmp_path), store)
    posts = [p for m, p in routes_of(app) if m == "POST" and not p.startswith(PUBLIC_PATHS)]
    async with visitor(app) as admin:
        admin.base_url = httpx.URL("http://testserver")  # the session cookie is not Secure here
        assert (await log_in(admin, Role.ADMIN.label)).status_code == 303
        for path in posts:
            for form in ({}, {"csrf": "0" * 64}):
                got = await admin.post(path, data=form)
                assert got.status_code == 403, (path, form)
    assert [e.action for _, e in store.accounts.audit_entries(None, 100)] == ["login"]


@pytest.mark.slow
def test_past_the_concurrency_limit_the_app_answers_503(tmp_path: Path) -> None:
    with dispatcher_web(tmp_path, "--limit-concurrency", "2") as port:
        holders = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
        try:
            for sock in holders:
                sock.sendall(b"GET /login HTTP/1.1\r\n")  # held open, headers never finished
            time.sleep(0.2)
            assert exchange(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").startswith(
                b"HTTP/1.1 503 "
            )
        finally:
            for sock in holders:
                sock.close()
