"""The action page's "Send proof" over ASGI with a real SMTP server on loopback: staff only
(checked on the server), CSRF, the rate limit per user and per address, targets refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from dispatcher.accounts import Role
from dispatcher.sending.proof import HEADER
from dispatcher.store import Store
from tests.support.smtp_server import SmtpServer
from tests.support.web_client import add_users, client, web_settings
from tests.web.test_controls import switch
from tests.web.test_dashboard import ACTION, as_role

STAFF = "proofs@staff.example"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
async def web(tmp_path: Path, store: Store, smtp: SmtpServer) -> AsyncIterator[httpx.AsyncClient]:
    add_users(store)
    async with client(web_settings(tmp_path, smtp_url=smtp.url), store) as c:
        yield c


async def send(
    web: httpx.AsyncClient, csrf: str | None, to: str = STAFF, action: str = ACTION
) -> httpx.Response:
    return await web.post(f"/actions/{action}/proof", data={"to": to, **({"csrf": csrf} if csrf else {})})


async def test_staff_send_a_proof_of_every_letter_and_it_is_audited(
    web: httpx.AsyncClient, store: Store, smtp: SmtpServer
) -> None:
    csrf = await as_role(web, Role.STAFF)
    assert 'action="/actions/ua-61-21/proof"' in (await web.get("/actions/ua-61-21")).text
    sent = await send(web, csrf, action="ua-61-21")  # 2 targets × email and fax × 2 variants
    assert sent.status_code == 200 and f"8 letters of ua-61-21 sent to {STAFF}" in sent.text
    received = smtp.wait_for(8)
    assert {m.rcpt_tos for m in received} == {(STAFF,)}
    assert sorted(str(m.message()[HEADER]).split(";")[2].strip() for m in received) == [
        *["channel=email"] * 4,
        *["channel=fax"] * 4,
    ]
    entry = store.accounts.audit_entries(None, 1)[0][1]
    assert (entry.actor, entry.address, entry.action, entry.subject) == (
        "staff",
        "192.0.2.10",
        "proof",
        "ua-61-21",
    )
    assert store.action_counts() == {}


async def test_viewers_and_operators_may_not_send_one(web: httpx.AsyncClient, smtp: SmtpServer) -> None:
    assert (await send(web, "x")).status_code == 401  # not logged in
    csrf = await as_role(web, Role.VIEWER)
    for _ in (Role.VIEWER, Role.OPERATOR):
        assert "/proof" not in (await web.get(f"/actions/{ACTION}")).text  # no button
        refused = await send(web, csrf)  # nor on the server, with a valid token
        assert refused.status_code == 403 and "needs the staff role" in refused.text
        csrf = await switch(web, csrf, Role.OPERATOR)
    assert smtp.transactions == 0


async def test_a_missing_or_wrong_csrf_token_is_refused(web: httpx.AsyncClient, smtp: SmtpServer) -> None:
    await as_role(web, Role.STAFF)
    for token in (None, "0" * 64):
        refused = await send(web, token)
        assert refused.status_code == 403 and "did not come from this site" in refused.text
    assert smtp.transactions == 0


async def test_a_targets_address_or_no_address_is_refused(web: httpx.AsyncClient, smtp: SmtpServer) -> None:
    csrf = await as_role(web, Role.STAFF)
    for to, why in (("Ambassador@example.org", "is the address of target"), ("", "not a valid email")):
        refused = await send(web, csrf, to)
        assert refused.status_code == 400 and why in refused.text
    assert (await send(web, csrf, action="nope")).status_code == 404
    assert smtp.transactions == 0


async def test_the_rate_limit_holds_per_user_and_per_address(
    web: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    csrf = await as_role(web, Role.STAFF)
    for _ in range(5):
        assert (await send(web, csrf)).status_code == 200
    smtp.wait_for(5)
    for to in (STAFF, "another@staff.example"):  # this user, to any address
        limited = await send(web, csrf, to)
        assert limited.status_code == 429 and "too many proofs" in limited.text
    csrf = await switch(web, csrf, Role.ADMIN)
    assert (await send(web, csrf)).status_code == 429  # anyone, to that mailbox
    assert (await send(web, csrf, "another@staff.example")).status_code == 200
    assert len(smtp.wait_for(6)) == 6
