"""The forecast says "on time" only when letters go out: a paused action, a held one, or no
dispatcher alive (no heartbeat for 20 s) read as such on the overview, the action page, the
overview's JSON, ``dispatcher actions`` and ``/healthz``. Real app, real store, heartbeats as a
running dispatcher writes them."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from dispatcher.accounts import Role
from dispatcher.store import Store, WorkerBeat, open_store
from tests.conftest import ROOT, cli_env
from tests.test_cli import cli
from tests.test_dashboard import ACTION, as_role
from tests.test_store_contract import people
from tests.web_client import add_users, client, csrf_of, web_settings

PAIRS = [("president-demo", "email")]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def queue_letters(store: Store, n: int = 5) -> None:
    store.import_supporters(people(n, scopes=(ACTION,)), utcnow())
    store.plan(ACTION, PAIRS, utcnow())


def beat(store: Store, worker: str, seconds_ago: float) -> None:
    seen = utcnow() - dt.timedelta(seconds=seconds_ago)
    store.heartbeat(WorkerBeat(worker, seen - dt.timedelta(minutes=5), seen, 0, 0, None))


async def forecast_of(web: httpx.AsyncClient) -> tuple[str, str, str]:
    """The demo action's forecast on the overview's JSON, and the overview and action pages."""
    data = (await web.get("/api/overview")).json()[ACTION]
    return data["forecast"], (await web.get("/")).text, (await web.get(f"/actions/{ACTION}")).text


@pytest.fixture
async def web(tmp_path: Path, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    add_users(store)
    queue_letters(store)
    async with client(web_settings(tmp_path), store) as c:
        await as_role(c, Role.STAFF)
        yield c


async def test_no_heartbeat_reads_not_sending_with_a_banner(web: httpx.AsyncClient, store: Store) -> None:
    said, overview, page = await forecast_of(web)
    assert said == "not sending: no dispatcher running"
    for html in (overview, page):
        assert "No dispatcher is running" in html and said in html and "on time" not in html
    beat(store, "w1", seconds_ago=1)
    said, overview, page = await forecast_of(web)
    assert said.startswith("on time (") and "No dispatcher is running" not in overview + page
    beat(store, "w1", seconds_ago=35)  # it went silent: frozen, killed, or cut off from the store
    said, overview, page = await forecast_of(web)
    assert said == "not sending: no dispatcher running"
    assert "w1 (35 s ago)" in overview and "unable to reach the database" in overview


async def test_a_silent_worker_shows_on_healthz_beside_a_running_one(
    web: httpx.AsyncClient, store: Store
) -> None:
    assert (await web.get("/healthz")).text == "ok\n"
    beat(store, "alive", seconds_ago=1)
    beat(store, "cut-off", seconds_ago=40)
    health = await web.get("/healthz")
    assert health.status_code == 200  # the web process itself is well
    assert health.text.startswith("store ok\n") and "dispatcher cut-off silent for 40 s" in health.text
    assert "alive" not in health.text
    assert (await web.get("/healthz?workers=1")).status_code == 503
    overview = (await web.get("/")).text
    assert "Not heard from for over 20 s: cut-off (40 s ago)" in overview
    assert (await web.get("/api/overview")).json()[ACTION]["forecast"].startswith("on time")


async def test_a_paused_action_reads_paused(web: httpx.AsyncClient, store: Store) -> None:
    beat(store, "w1", seconds_ago=1)
    csrf_page = (await web.get(f"/actions/{ACTION}")).text
    assert (await web.post(f"/actions/{ACTION}/pause", data={"csrf": csrf_of(csrf_page)})).status_code == 303
    said, overview, page = await forecast_of(web)
    assert said == "paused: nothing is sent" and said in overview and said in page


async def test_a_held_action_reads_held(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    for language in ("en", "zh-Hans"):
        (templates / "ua-61-21-update-1" / f"{language}.j2").write_text("{% if %}broken", encoding="utf-8")
    add_users(store)
    queue_letters(store)
    beat(store, "w1", seconds_ago=1)
    async with client(web_settings(tmp_path, templates_dir=templates), store) as web:
        await as_role(web, Role.VIEWER)
        said, overview, page = await forecast_of(web)
        logged = caplog.text.count("holding demo-xinjiang")
        await forecast_of(web)  # a dashboard refreshing itself
    assert said == "held: nothing is sent (see dispatcher check)" and said in overview and said in page
    assert logged and caplog.text.count("holding demo-xinjiang") == logged  # logged once, not per page


def row_of(env: dict[str, str], action_id: str) -> str:
    """The action's line in ``dispatcher actions``."""
    return next(line for line in cli(env, "actions").output.splitlines() if line.startswith(action_id))


def test_dispatcher_actions_says_why_nothing_is_sent(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    store = open_store(env["DISPATCHER_DATABASE_URL"])
    try:
        queue_letters(store)
        assert "not sending: no dispatcher running" in row_of(env, ACTION)
        assert "no dispatcher running" in cli(env, "actions").stderr
        beat(store, "w1", seconds_ago=1)
        assert "on time (" in row_of(env, ACTION)
        cli(env, "pause", ACTION)
        assert "paused: nothing is sent" in row_of(env, ACTION)
    finally:
        store.close()
