"""The dashboard over ASGI: logins, every role allowed and refused on the server, CSRF, escaping,
and the CSV export; on a real SQLite file (and PostgreSQL through the ``store`` fixture)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from dispatcher.accounts import Role
from dispatcher.models import AttemptResult, Outcome
from dispatcher.store import Store
from tests.conftest import never_retry
from tests.store.test_store_contract import NOW, people, take
from tests.support.web_client import add_users, client, csrf_of, log_in, web_settings
from tests.unit.test_faxpdf import MISSING

ACTION = "demo-xinjiang"
HOSTILE = '<script>alert("x")</script>'


@pytest.fixture
async def web(tmp_path: Path, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    add_users(store)
    async with client(web_settings(tmp_path), store) as c:
        yield c


async def as_role(web: httpx.AsyncClient, role: Role) -> str:
    """Log in as the user of that role; returns a CSRF token for its forms."""
    assert (await log_in(web, role.label)).status_code == 303
    return csrf_of((await web.get("/")).text)


async def test_every_page_needs_a_login(web: httpx.AsyncClient) -> None:
    for path in (
        "/",
        "/log",
        "/log.csv",
        "/workers",
        "/audit",
        "/audit.csv",
        f"/actions/{ACTION}",
        "/api/overview",
    ):
        got = await web.get(path)
        assert got.status_code == 303 and got.headers["location"].startswith("/login?next=/"), path
    refused = await web.post(f"/actions/{ACTION}/pause", data={"csrf": "x"})
    assert refused.status_code == 401


async def test_a_wrong_password_is_refused_and_then_rate_limited(web: httpx.AsyncClient) -> None:
    for _ in range(5):
        assert (await log_in(web, "staff", "not the password")).status_code == 401
    locked = await log_in(web, "staff")  # even the right password, for a while
    assert locked.status_code == 429 and "too many failed logins" in locked.text
    unknown = await log_in(web, "nobody", "whatever it is")
    assert unknown.status_code == 401 and "wrong name or password" in unknown.text


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.VIEWER, set()),
        (Role.OPERATOR, {"retry-now", "requeue"}),
        (Role.STAFF, {"retry-now", "requeue", "pause", "resume"}),
        (Role.ADMIN, {"retry-now", "requeue", "pause", "resume"}),
    ],
)
async def test_roles_are_checked_on_the_server(web: httpx.AsyncClient, role: Role, allowed: set[str]) -> None:
    csrf = await as_role(web, role)
    assert (await web.get("/")).status_code == 200
    for what in ("retry-now", "requeue", "pause", "resume"):
        got = await web.post(f"/actions/{ACTION}/{what}", data={"csrf": csrf})
        assert (got.status_code == 303) == (what in allowed), (role, what, got.status_code)
        if what not in allowed:
            assert got.status_code == 403
    page = (await web.get(f"/actions/{ACTION}")).text
    assert ('action="/actions/demo-xinjiang/pause"' in page) == ("pause" in allowed)  # the UI hides it too


async def test_a_state_change_without_the_csrf_token_is_refused(web: httpx.AsyncClient, store: Store) -> None:
    await as_role(web, Role.STAFF)
    assert (await web.post(f"/actions/{ACTION}/pause", data={})).status_code == 403
    assert (await web.post(f"/actions/{ACTION}/pause", data={"csrf": "0" * 64})).status_code == 403
    assert store.action_states().get(ACTION) is None  # nothing changed


async def test_a_pause_is_audited_with_who_and_where(web: httpx.AsyncClient, store: Store) -> None:
    csrf = await as_role(web, Role.STAFF)
    assert (await web.post(f"/actions/{ACTION}/pause", data={"csrf": csrf})).status_code == 303
    state = store.action_states()[ACTION]
    assert state.status == "paused" and state.updated_by == "staff"
    audit = (await web.get("/audit")).text
    assert "pause" in audit and "192.0.2.10" in audit
    exported = list(csv.reader(io.StringIO((await web.get("/audit.csv")).text)))
    assert exported[0] == ["at", "actor", "address", "action", "subject", "detail"]
    assert ["staff", "192.0.2.10", "pause", ACTION] in [row[1:5] for row in exported]
    again = await web.post(f"/actions/{ACTION}/pause", data={"csrf": csrf})
    assert again.status_code == 409 and "only an active action can be paused" in again.text


async def test_replies_are_escaped_and_the_csv_is_safe(web: httpx.AsyncClient, store: Store) -> None:
    store.import_supporters(people(1), NOW)
    store.plan("act", [("t1", "email")], NOW)
    (claim,) = take(store, "w")
    reply = AttemptResult(
        claim.delivery_id, "act", "t1", "email", NOW, NOW, Outcome.FAILED, 550, f"=1+1 {HOSTILE}"
    )
    store.record("w", [reply], never_retry)
    await as_role(web, Role.VIEWER)
    page = (await web.get("/log")).text
    assert HOSTILE not in page and "&lt;script&gt;" in page
    exported = (await web.get("/log.csv?action=act")).text
    rows = list(csv.reader(io.StringIO(exported)))
    assert rows[1][rows[0].index("detail")].startswith("'=1+1")  # neutralised for spreadsheets
    assert (await web.get("/log.csv?action=other")).text.count("\n") == 1  # the header alone


async def test_logout_and_removal_end_sessions(web: httpx.AsyncClient, store: Store) -> None:
    csrf = await as_role(web, Role.OPERATOR)
    assert (await web.post("/logout", data={"csrf": csrf})).status_code == 303
    assert (await web.get("/")).status_code == 303
    await as_role(web, Role.OPERATOR)
    store.accounts.remove("operator")
    assert (await web.get("/")).status_code == 303


async def test_the_overview_shows_progress_and_a_forecast(web: httpx.AsyncClient, store: Store) -> None:
    await as_role(web, Role.VIEWER)
    page = (await web.get("/")).text
    assert "demo-xinjiang" in page and "closed (deadline passed)" in page
    data = (await web.get("/api/overview")).json()
    assert data[ACTION]["status"] == "active" and data[ACTION]["counts"] == {}
    assert (await web.get("/actions/nope")).status_code == 404
    assert (await web.get("/workers")).status_code == 200


async def test_the_letter_is_previewed_as_each_target_receives_it(web: httpx.AsyncClient) -> None:
    await as_role(web, Role.VIEWER)
    letter = await web.get(f"/actions/{ACTION}/preview?target=president-demo")
    assert letter.status_code == 200 and "Zoë Sample-Signer" in letter.text
    assert (await web.get(f"/actions/{ACTION}/preview?target=nobody")).status_code == 404
    assert (await web.get(f"/actions/{ACTION}/preview?target=president-demo&channel=fax")).status_code == 404
    if MISSING:
        pytest.skip(MISSING)
    fax = await web.get("/actions/ua-61-21-update-1/preview?target=xi-jinping&channel=fax&lang=zh-Hans")
    assert fax.status_code == 200 and fax.content.startswith(b"%PDF")


async def test_the_preview_offers_each_variant_of_the_letter(web: httpx.AsyncClient) -> None:
    await as_role(web, Role.VIEWER)
    page = "/actions/ua-61-21/preview?target=xi-jinping&lang=zh-Hans"
    first, second = (await web.get(page)), (await web.get(f"{page}&variant=b"))
    assert "请释放在新疆被任意拘押的人士" in first.text and "variant=b" in first.text
    assert second.status_code == 200 and "恳请让新疆被拘押者回到家人身边" in second.text
    assert "variant=a" in second.text and "variant b" in second.text
    assert (await web.get(f"{page}&variant=z")).status_code == 404


async def test_only_admins_manage_users_and_it_is_audited(web: httpx.AsyncClient, store: Store) -> None:
    csrf = await as_role(web, Role.STAFF)
    assert (await web.get("/users")).status_code == 403
    form = {"csrf": csrf, "name": "newbie", "role": "viewer", "password": "long enough password"}
    assert (await web.post("/users/add", data=form)).status_code == 403
    await web.post("/logout", data={"csrf": csrf})
    csrf = await as_role(web, Role.ADMIN)
    assert (await web.post("/users/add", data=form | {"csrf": csrf})).status_code == 303
    assert (
        await web.post("/users/add", data=form | {"csrf": csrf, "name": "x", "password": "short"})
    ).status_code == 400
    assert (await web.post("/users/newbie/role", data={"csrf": csrf, "role": "operator"})).status_code == 303
    assert (await web.post("/users/admin/remove", data={"csrf": csrf})).status_code == 409  # not oneself
    assert (await web.post("/users/staff/remove", data={"csrf": csrf})).status_code == 303
    assert {u.name: u.role.label for u in store.accounts.all_users()} == {
        "viewer": "viewer",
        "operator": "operator",
        "admin": "admin",
        "newbie": "operator",
    }
    audit = (await web.get("/audit")).text
    assert "user added" in audit and "role changed" in audit and "user removed" in audit


async def test_staff_withdraw_a_consent_and_the_audit_names_no_one(
    web: httpx.AsyncClient, store: Store
) -> None:
    store.import_supporters(people(1), NOW)
    store.plan("act", [("t1", "email")], NOW)
    csrf = await as_role(web, Role.OPERATOR)
    assert (
        await web.post("/supporters/revoke", data={"csrf": csrf, "email": "p0@example.net"})
    ).status_code == 403
    await web.post("/logout", data={"csrf": csrf})
    csrf = await as_role(web, Role.STAFF)
    done = await web.post("/supporters/revoke", data={"csrf": csrf, "email": "P0@example.net"})
    assert done.status_code == 200 and "1 unsent letters cancelled" in done.text
    events = (store.people.export("p0@example.net") or {})["consent_events"]
    assert (events[-1]["kind"], events[-1]["source"]) == ("revoked", "dashboard")
    assert (
        await web.post("/supporters/revoke", data={"csrf": csrf, "email": "x@example.net"})
    ).status_code == 404
    audit = (await web.get("/audit.csv")).text
    assert "consent revoked" in audit and "p0@example.net" not in audit.lower()
