"""The forecast says "on time" only when letters go out: a paused action, a held one, or no
dispatcher alive (no heartbeat for 20 s) read as such on the overview, the action page, the
overview's JSON, ``dispatcher actions`` and ``/healthz``. Real app, real store, heartbeats as a
running dispatcher writes them."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from dispatcher.accounts import Role
from dispatcher.actions.model import Action
from dispatcher.letters.render import Renderer, RenderError
from dispatcher.models import ActionHold, SupporterRecord, WorkerBeat
from dispatcher.sending import forecast
from dispatcher.store import Store, open_store
from tests.campaigns.test_cli import cli
from tests.conftest import ROOT, cli_env
from tests.store.test_store_contract import people
from tests.support.web_client import add_users, client, csrf_of, web_settings
from tests.support.workers import run_once
from tests.web.test_dashboard import ACTION, as_role

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


async def test_a_dead_worker_is_forgotten_and_strangers_get_no_names(
    tmp_path: Path, web: httpx.AsyncClient, store: Store
) -> None:
    beat(store, "host-a:4242", seconds_ago=forecast.FORGET.total_seconds() + 60)  # killed long ago
    assert (await web.get("/healthz?workers=1")).status_code == 200
    assert "host-a" not in (await web.get("/")).text
    beat(store, "host-b:77", seconds_ago=40)
    async with client(web_settings(tmp_path), store) as stranger:  # not logged in
        health = await stranger.get("/healthz?workers=1")
    assert health.status_code == 503 and "1 dispatcher silent" in health.text
    assert "host-b" not in health.text and "77" not in health.text
    assert "dispatcher host-b:77 silent for 40 s" in (await web.get("/healthz")).text  # staff see it
    assert "host-a:4242" not in {w.worker_id for w in store.workers()}  # the next beat deleted it


async def test_holds_keep_when_they_were_first_taken(store: Store) -> None:
    first, later = utcnow(), utcnow() + dt.timedelta(minutes=5)
    beat(store, "w1", seconds_ago=1)
    store.set_holds("w1", {"a": ActionHold("a", "sending", "why", first, "w1", "x")})
    store.set_holds("w1", {"a": ActionHold("a", "sending", "again", later, "w1", "x")})
    assert store.action_holds(later) == [ActionHold("a", "sending", "again", first, "w1", "x")]
    store.set_holds("w1", {})
    assert store.action_holds(later) == []


def world_with_a_template_failing_for(tmp_path: Path, name: str) -> Path:
    """The shipped actions and templates, the demo's failing to render only for this signer."""
    world = tmp_path / "world"
    shutil.copytree(ROOT / "config" / "actions", world / "actions")
    shutil.copytree(ROOT / "templates", world / "templates")
    for language in ("en", "zh-Hans"):
        path = world / "templates" / "ua-61-21-update-1" / f"{language}.j2"
        trap = f'{{% if supporter.name == "{name}" %}}{{{{ supporter.name[30] }}}}{{% endif %}}'
        path.write_text(path.read_text(encoding="utf-8").replace("{{ today }}", trap + "{{ today }}"))
    return world


BAD_NAME = "Bad Name"


def bad_signer() -> SupporterRecord:
    """A signer of the demo action whose letter the world of ``held_campaign`` cannot render."""
    return replace(people(1, scopes=(ACTION,))[0], email="bad@example.net", name=BAD_NAME)


@contextlib.contextmanager
def held_campaign(tmp_path: Path, **settings: str) -> Iterator[tuple[Path, dict[str, str], Store]]:
    """A world whose demo template fails for ``bad_signer``, the CLI's settings over it and its store."""
    world = world_with_a_template_failing_for(tmp_path, BAD_NAME)
    env = cli_env(tmp_path, world, **settings)
    store = open_store(env["DISPATCHER_DATABASE_URL"])
    try:
        yield world, env, store
    finally:
        store.close()


@pytest.mark.slow
async def test_a_hold_taken_while_sending_reads_held_everywhere(tmp_path: Path) -> None:
    with held_campaign(tmp_path) as (world, env, store):
        store.import_supporters([*people(3, scopes=(ACTION,)), bad_signer()], utcnow())
        assert "no problems" in cli(env, "check").output  # only a real signer's letter fails
        assert "holding demo-xinjiang" in await run_once(env)
        beat(store, "w1", seconds_ago=1)
        add_users(store)
        settings = web_settings(tmp_path, actions_dir=world / "actions", templates_dir=world / "templates")
        async with client(settings, store) as web:
            await as_role(web, Role.VIEWER)
            said, overview, page = await forecast_of(web)
            assert said == "held: nothing is sent (see dispatcher check)" and said in overview
            assert "Held" in page and "has no element 30" in page  # why, since when, which worker
            assert "held: nothing is sent" in row_of(env, ACTION)
            template = world / "templates" / "ua-61-21-update-1" / "en.j2"
            template.write_text(template.read_text(encoding="utf-8").replace("[30]", ""), encoding="utf-8")
            assert (await forecast_of(web))[0].startswith("on time (")  # fixed: the hold is cleared


async def test_the_forecast_checks_templates_again_only_when_they_change(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = world_with_a_template_failing_for(tmp_path, BAD_NAME)
    checks: list[str] = []
    original = Renderer.check

    def counted(
        self: Renderer, action: Action, channels: tuple[str, ...], today: dt.date
    ) -> list[RenderError]:
        checks.append(action.id)
        return original(self, action, channels, today)

    monkeypatch.setattr(Renderer, "check", counted)
    add_users(store)
    queue_letters(store)
    beat(store, "w1", seconds_ago=1)
    settings = web_settings(tmp_path, actions_dir=world / "actions", templates_dir=world / "templates")
    async with client(settings, store) as web:
        await as_role(web, Role.VIEWER)
        for _ in range(3):  # a dashboard polling
            assert (await forecast_of(web))[0].startswith("on time (")
        assert checks.count(ACTION) == 1
        for language in ("en", "zh-Hans"):
            path = world / "templates" / "ua-61-21-update-1" / f"{language}.j2"
            path.write_text("{% if %}broken", encoding="utf-8")
        assert (await forecast_of(web))[0].startswith("held")
        assert checks.count(ACTION) == 2
