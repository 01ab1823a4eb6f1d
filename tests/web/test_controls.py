"""Staff controls as staff and viewers use them: only the controls that can apply are offered, a
close needs the action id typed, and staff can take it back within the grace period, after which
the page says it is final. Over HTTP on the web app, and through the real ``dispatcher`` command."""

from __future__ import annotations

import dataclasses
import datetime as dt
import mailbox
import re
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from dispatcher.accounts import Role
from dispatcher.actions import controls
from dispatcher.actions.files import load_actions
from dispatcher.actions.model import Action
from dispatcher.actions.planner import finish_action, plan_action
from dispatcher.channels import IMPLEMENTED
from dispatcher.models import ActionStatus, AttemptResult, ClaimGroup, Outcome, Status, Terms
from dispatcher.store import ClaimRequest, Store, open_store
from tests.campaigns.test_cli import cli
from tests.conftest import ROOT, cli_env
from tests.store.test_store_contract import LEASE, UNPACED, people
from tests.support.web_client import add_users, client, web_settings
from tests.unit.test_render import make
from tests.web.test_dashboard import ACTION, as_role

FORM = re.compile(r'<form method="post" action="/actions/[^/"]+/([a-z-]+)"')


@pytest.fixture
async def web(tmp_path: Path, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    add_users(store)
    async with client(web_settings(tmp_path), store) as c:
        yield c


async def offered(web: httpx.AsyncClient) -> set[str]:
    """The control forms the action page shows (but "Send proof", offered to staff in every
    state: it sends nothing to a target)."""
    return set(FORM.findall((await web.get(f"/actions/{ACTION}")).text)) - {"proof"}


async def switch(web: httpx.AsyncClient, csrf: str, role: Role) -> str:
    assert (await web.post("/logout", data={"csrf": csrf})).status_code == 303
    return await as_role(web, role)


def queued(store: Store, n: int) -> None:
    """``n`` letters pending for the demo action's first target."""
    store.import_supporters(people(n, (ACTION,)), dt.datetime.now(dt.UTC))
    assert store.plan(ACTION, [("president-demo", "email")], dt.datetime.now(dt.UTC)) == n


def counts(store: Store) -> dict[str, int]:
    return store.action_counts().get(ACTION, {})


async def test_close_needs_the_action_id_typed_and_staff_can_reopen_it(
    web: httpx.AsyncClient, store: Store
) -> None:
    queued(store, 3)
    csrf = await as_role(web, Role.STAFF)
    assert await offered(web) == {"pause", "close", "extend", "retry-now", "requeue"}
    for typed in ({}, {"confirm": ""}, {"confirm": "demo"}):
        refused = await web.post(f"/actions/{ACTION}/close", data={"csrf": csrf, **typed})
        assert refused.status_code == 400 and "type the action id" in refused.text
    assert store.action_states().get(ACTION) is None and counts(store) == {"pending": 3}
    closed = await web.post(f"/actions/{ACTION}/close", data={"csrf": csrf, "confirm": ACTION})
    assert closed.status_code == 303 and counts(store) == {"cancelled": 3}
    page = (await web.get(f"/actions/{ACTION}")).text
    assert "Staff can reopen it until" in page
    assert await offered(web) == {"reopen"}  # nothing else applies to a closed action
    for what in ("requeue", "retry-now"):  # nor can it send anything: refused on the server too
        refused = await web.post(f"/actions/{ACTION}/{what}", data={"csrf": csrf})
        assert refused.status_code == 409 and "closed" in refused.text
    again = await web.post(f"/actions/{ACTION}/close", data={"csrf": csrf, "confirm": ACTION})
    assert again.status_code == 409 and "already closed" in again.text
    later = await web.post(f"/actions/{ACTION}/extend", data={"csrf": csrf, "deadline": "2036-01-31"})
    assert later.status_code == 409 and "reopen it first" in later.text

    viewer = await switch(web, csrf, Role.VIEWER)
    assert (await web.post(f"/actions/{ACTION}/reopen", data={"csrf": viewer})).status_code == 403
    assert "reopen" not in await offered(web)
    csrf = await switch(web, viewer, Role.STAFF)
    assert (await web.post(f"/actions/{ACTION}/reopen", data={"csrf": csrf})).status_code == 303
    assert store.action_states()[ACTION].status == "active" and counts(store) == {"pending": 3}
    assert await offered(web) == {"pause", "close", "extend", "retry-now", "requeue"}
    audit = (await web.get("/audit")).text
    assert "reopen" in audit and "3 cancelled requeued" in audit


async def test_after_the_grace_period_a_close_is_final(web: httpx.AsyncClient, store: Store) -> None:
    queued(store, 2)
    action = load_actions(ROOT / "config" / "actions").actions[ACTION]
    long_ago = dt.datetime.now(dt.UTC) - controls.REOPEN_GRACE - dt.timedelta(minutes=1)
    assert controls.close(store, action, "staff", long_ago) == 2
    csrf = await as_role(web, Role.STAFF)
    assert "The close is final" in (await web.get(f"/actions/{ACTION}")).text
    assert await offered(web) == set()
    refused = await web.post(f"/actions/{ACTION}/reopen", data={"csrf": csrf})
    assert refused.status_code == 409 and "only within 24 hours" in refused.text
    assert counts(store) == {"cancelled": 2}


async def test_a_paused_action_offers_resume_not_pause(web: httpx.AsyncClient, store: Store) -> None:
    csrf = await as_role(web, Role.STAFF)
    assert (await web.post(f"/actions/{ACTION}/pause", data={"csrf": csrf})).status_code == 303
    assert {"resume", "close", "extend"} <= await offered(web) and "pause" not in await offered(web)


def test_reopen_requeues_only_what_the_close_cancelled(store: Store) -> None:
    """Not letters cancelled earlier (here by a sweep while the file said closed), nor those of a
    supporter who withdrew after the close."""
    now = dt.datetime.now(dt.UTC)
    queued(store, 2)
    closed_file = demo().model_copy(update={"status": ActionStatus.CLOSED})
    assert finish_action(store, closed_file, Status.CANCELLED, now - dt.timedelta(hours=2)) == 2
    store.import_supporters(people(3, (ACTION,), start=2), now)
    assert store.plan(ACTION, [("president-demo", "email")], now) == 3
    action = load_actions(ROOT / "config" / "actions").actions[ACTION]
    closed_at = now - dt.timedelta(hours=1)
    assert controls.close(store, action, "staff", closed_at) == 3
    store.people.revoke("p4@example.net", closed_at + dt.timedelta(minutes=5), "cli")
    assert controls.reopen(store, action, "staff", now) == 2
    assert counts(store) == {"pending": 2, "cancelled": 3}


def demo() -> Action:
    return load_actions(ROOT / "config" / "actions").actions[ACTION]


async def test_an_action_paused_before_a_mistaken_close_comes_back_paused(
    web: httpx.AsyncClient, store: Store
) -> None:
    queued(store, 2)
    csrf = await as_role(web, Role.STAFF)
    assert (await web.post(f"/actions/{ACTION}/pause", data={"csrf": csrf})).status_code == 303
    closed = await web.post(f"/actions/{ACTION}/close", data={"csrf": csrf, "confirm": ACTION})
    assert closed.status_code == 303 and counts(store) == {"cancelled": 2}
    assert (await web.post(f"/actions/{ACTION}/reopen", data={"csrf": csrf})).status_code == 303
    assert store.action_states()[ACTION].status == "paused" and counts(store) == {"pending": 2}
    assert "resume" in await offered(web) and "pause" not in await offered(web)


def test_a_supporter_who_changed_their_terms_after_the_close_keeps_their_letters(store: Store) -> None:
    """Their old consent ended when the new one replaced it: the letter moves to the new one,
    as the sweep moves a waiting letter, if it still allows the channel."""
    now = dt.datetime.now(dt.UTC)
    queued(store, 2)
    assert controls.close(store, demo(), "staff", now) == 2
    changed = people(2, (ACTION,))
    changed[0] = dataclasses.replace(changed[0], terms=Terms(name_display="name", text_version="v2"))
    changed[1] = dataclasses.replace(changed[1], terms=Terms(channels=("fax",), text_version="v2"))
    store.import_supporters(changed, now + dt.timedelta(minutes=5))
    assert controls.reopen(store, demo(), "staff", now + dt.timedelta(minutes=10)) == 1
    assert counts(store) == {"pending": 1, "cancelled": 1}  # the second now signs by fax only


def claim_one(store: Store, now: dt.datetime) -> int:
    group = ClaimGroup(ACTION, "president-demo", "email", ("email:president@example.org",))
    (claim,) = store.claim("w", ClaimRequest([group], {"email": 1}, UNPACED), now, LEASE).claims
    return claim.delivery_id


def test_reopen_requeues_a_letter_a_worker_cancelled_after_the_close_whatever_its_clock(
    store: Store,
) -> None:
    """A letter in flight at the close comes back for a retry, and the worker's sweep cancels it,
    stamped by the worker's clock, here 5 s behind the web host's: it was cancelled by the close
    all the same."""
    queued(store, 3)
    web_clock = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10)
    in_flight = claim_one(store, web_clock - dt.timedelta(seconds=9))
    assert controls.close(store, demo(), "staff", web_clock) == 2
    worker_clock = web_clock - dt.timedelta(seconds=5)
    retry = AttemptResult(
        in_flight, ACTION, "president-demo", "email", worker_clock, worker_clock, Outcome.RETRY, 451, "later"
    )
    store.record("w", [retry], lambda _attempts, at: at + dt.timedelta(minutes=1))
    assert finish_action(store, demo(), Status.CANCELLED, worker_clock) == 1
    assert controls.reopen(store, demo(), "staff", web_clock + dt.timedelta(minutes=1)) == 3
    assert counts(store) == {"pending": 3}


@pytest.mark.parametrize("deadline", ["9999-12-31", "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"])
async def test_a_deadline_past_the_calendar_is_refused_not_crashed_on(
    web: httpx.AsyncClient, store: Store, deadline: str
) -> None:
    csrf = await as_role(web, Role.STAFF)
    refused = await web.post(f"/actions/{ACTION}/extend", data={"csrf": csrf, "deadline": deadline})
    assert refused.status_code == 409 and "out of range" in refused.text
    assert store.action_states().get(ACTION) is None


@pytest.mark.parametrize("delivery", ["99999999999999999999999", "²", "-1", "1 "])
async def test_requeueing_a_delivery_id_that_is_no_number_requeues_nothing(
    web: httpx.AsyncClient, store: Store, delivery: str
) -> None:
    """Not a crash (a number past the store's integers, a digit Python will not convert), nor
    every failed letter of the action, as an id that is no number used to mean."""
    queued(store, 1)
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    failed = AttemptResult(
        claim_one(store, now), ACTION, "president-demo", "email", now, now, Outcome.FAILED, 550, "no"
    )
    store.record("w", [failed], lambda _attempts, _at: None)
    csrf = await as_role(web, Role.OPERATOR)
    refused = await web.post(f"/actions/{ACTION}/requeue", data={"csrf": csrf, "delivery_id": delivery})
    assert refused.status_code == 400 and counts(store) == {"failed": 1}


def outbox(tmp_path: Path) -> list[EmailMessage]:
    box = mailbox.Maildir(str(tmp_path / "outbox"), create=False)
    return [message_from_bytes(m.as_bytes(), policy=policy.default) for m in box]


def test_a_close_taken_back_from_the_cli_sends_the_cancelled_letters(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    cli(env, "supporters", "import", str(ROOT / "config/demo-supporters.csv"))
    store = open_store(env["DISPATCHER_DATABASE_URL"])
    try:  # planned as a running dispatcher would, not yet sent
        action = load_actions(ROOT / "config" / "actions").actions[ACTION]
        assert plan_action(store, action, IMPLEMENTED, dt.datetime.now(dt.UTC)) == 6
    finally:
        store.close()
    closed = cli(env, "close", ACTION).output
    assert "6 pending deliveries cancelled" in closed and f"dispatcher reopen {ACTION}" in closed
    cli(env, "run", "--once")
    assert not (tmp_path / "outbox").exists() or outbox(tmp_path) == []
    assert "nothing to reopen" in cli(env, "reopen", "ua-61-21", ok=False).output
    assert "6 cancelled deliveries back in the queue" in cli(env, "reopen", ACTION).output
    cli(env, "run", "--once")
    assert len(outbox(tmp_path)) == 6


@pytest.mark.parametrize("until", ["2030-03-15", "2030-03-15T12:00:00+00:00"])
def test_letters_sent_after_an_extension_name_the_new_deadline(tmp_path: Path, until: str) -> None:
    by = "{{ action.deadline | date }}"
    subject, body = f"By {by}", f"Act by {by}.\n{{{{ supporter.words }}}}"
    make(
        tmp_path,
        {"en.j2": f"{{% block subject %}}{subject}{{% endblock %}}{{% block body %}}{body}{{% endblock %}}"},
    )
    supporters = tmp_path / "supporters.csv"
    supporters.write_text(
        "email,name,language,city,country,scope,channels,consent_version,opted_in_at\n"
        "ann@example.net,Ann Lee,en,Oslo,NO,a,email,v1,2026-01-01T00:00:00+00:00\n",
        encoding="utf-8",
    )
    env = cli_env(tmp_path, tmp_path)
    cli(env, "supporters", "import", str(supporters))
    cli(env, "extend", "a", until)
    cli(env, "run", "--once")
    (sent,) = outbox(tmp_path)
    assert sent["Subject"] == "By March 15, 2030" and "Act by March 15, 2030." in sent.get_content()
