"""Holds stored per worker (S3): one worker's holds never release another's, a template
folder's stamp is its contents (the same on every host), and staff can release a hold (CLI and
the action page, staff only, audited) for the next check to decide again."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from dispatcher.accounts import Role
from dispatcher.actions.files import load_actions
from dispatcher.channels import make_channels
from dispatcher.letters.render import RenderError
from dispatcher.models import ActionHold, Status, WorkerBeat
from dispatcher.sending.catalogue import stamp
from dispatcher.sending.runtime import Dispatcher
from dispatcher.store import Store
from dispatcher.store.accounts import entries
from tests.campaigns.test_cli import cli
from tests.campaigns.test_email_smtp import ACTION_ID, WORKER, make_settings
from tests.campaigns.test_email_smtp import action as action
from tests.campaigns.test_email_smtp import db as db
from tests.campaigns.test_forecast import (
    bad_signer,
    beat,
    forecast_of,
    held_campaign,
    queue_letters,
    utcnow,
)
from tests.conftest import ROOT
from tests.store.test_store_contract import people
from tests.support.processes import dispatcher_executable, stop, wait_until
from tests.support.web_client import add_users, client, web_settings
from tests.support.workers import run_once
from tests.web.test_dashboard import ACTION, as_role


def hold_of(worker: str) -> ActionHold:
    """A hold of the demo action as a worker on the shipped templates stores it."""
    action = load_actions(ROOT / "config" / "actions").actions[ACTION]
    templates = stamp(ROOT / "templates" / action.templates)
    return ActionHold(ACTION, "sending", f"held by {worker}", utcnow(), worker, templates)


async def test_a_hold_stays_while_another_worker_changes_its_own(tmp_path: Path, store: Store) -> None:
    add_users(store)
    queue_letters(store)
    beat(store, "host-a:1", seconds_ago=1)
    beat(store, "host-b:2", seconds_ago=1)
    store.set_holds("host-a:1", {ACTION: hold_of("host-a:1")})
    store.set_holds("host-b:2", {"other": replace(hold_of("host-b:2"), action_id="other")})
    store.set_holds("host-b:2", {})  # B's own holds change: A's stays
    async with client(web_settings(tmp_path), store) as web:
        await as_role(web, Role.VIEWER)
        said, _, page = await forecast_of(web)
    assert said == "held: nothing is sent (see dispatcher check)"
    assert "by host-a:1: held by host-a:1" in page
    assert [h.worker for h in store.action_holds(utcnow())] == ["host-a:1"]


async def test_holds_of_forgotten_workers_are_not_read(store: Store) -> None:
    beat(store, "gone:1", seconds_ago=2 * 3600)
    store.set_holds("gone:1", {ACTION: hold_of("gone:1")})
    assert store.action_holds(utcnow()) == []


async def test_a_stopped_worker_keeps_only_its_sending_holds(store: Store) -> None:
    """A check hold is about the host a worker sends from (its fax font): once it stopped, it
    sends nothing; a letter that failed while sending still holds the action for every worker."""
    now = utcnow()
    store.heartbeat(WorkerBeat("gone:1", now - dt.timedelta(minutes=5), now, 0, 0, now))
    sending = hold_of("gone:1")
    store.set_holds("gone:1", {ACTION: sending, "other": replace(sending, action_id="other", kind="check")})
    assert store.action_holds(utcnow()) == [sending]


def test_the_same_files_in_two_folders_stamp_alike(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    shutil.copytree(ROOT / "templates", first)
    shutil.copytree(ROOT / "templates", second)
    for path in second.rglob("*"):  # another checkout: other times
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert stamp(first) == stamp(second)
    template = second / "ua-61-21-update-1" / "en.j2"
    text = template.read_text(encoding="utf-8")
    template.write_text(text.replace("a", "b", 1), encoding="utf-8")  # same size, same name
    assert stamp(first) != stamp(second)


def pending(store: Store) -> int:
    return store.action_counts().get(ACTION, {}).get(Status.PENDING.value, 0)


@pytest.mark.slow
async def test_release_clears_a_hold_and_the_action_sends_again(tmp_path: Path) -> None:
    with held_campaign(tmp_path) as (_, env, store):
        bad = bad_signer()
        store.import_supporters([bad, *people(8, scopes=(ACTION,))], utcnow())
        assert "holding demo-xinjiang" in await run_once(env)
        left = pending(store)
        assert left and [h.kind for h in store.action_holds(utcnow())] == ["sending"]
        await run_once(env)  # a restart adopts the hold: nothing more is sent
        assert pending(store) == left
        store.import_supporters([replace(bad, name="Good Name")], utcnow())  # what failed is fixed
        await run_once(env)  # nothing says so to the worker: still held
        assert pending(store) == left
        assert f"{ACTION}: hold released" in cli(env, "release", ACTION).output
        assert store.action_holds(utcnow()) == []
        await run_once(env)  # the next check decides: it sends
        assert pending(store) == 0
        audit = [e for e in entries(store.accounts) if e.action == "release"]
        assert [(e.subject, e.address) for e in audit] == [(ACTION, "cli")]


async def test_only_staff_release_on_the_web(tmp_path: Path, store: Store) -> None:
    add_users(store)
    queue_letters(store)
    beat(store, "host-a:1", seconds_ago=1)
    store.set_holds("host-a:1", {ACTION: hold_of("host-a:1")})
    for role in (Role.VIEWER, Role.OPERATOR):
        async with client(web_settings(tmp_path), store) as web:
            csrf = await as_role(web, role)
            assert "/release" not in (await web.get(f"/actions/{ACTION}")).text
            refused = await web.post(f"/actions/{ACTION}/release", data={"csrf": csrf})
            assert refused.status_code == 403 and store.action_holds(utcnow())
    async with client(web_settings(tmp_path), store) as web:
        csrf = await as_role(web, Role.STAFF)
        assert f"/actions/{ACTION}/release" in (await web.get(f"/actions/{ACTION}")).text
        assert (await web.post(f"/actions/{ACTION}/release", data={})).status_code == 403  # no CSRF
        done = await web.post(f"/actions/{ACTION}/release", data={"csrf": csrf})
        assert done.status_code == 303 and store.action_holds(utcnow()) == []
        assert (await forecast_of(web))[0].startswith("on time (")
        assert "/release" not in (await web.get(f"/actions/{ACTION}")).text
        again = await web.post(f"/actions/{ACTION}/release", data={"csrf": csrf})
        assert again.status_code == 409  # nothing held
    audit = [e for e in entries(store.accounts) if e.action == "release"]
    assert [(e.subject, e.actor, e.address) for e in audit] == [(ACTION, "staff", "192.0.2.10")]


@pytest.mark.slow
def test_a_running_worker_drops_a_released_hold(tmp_path: Path) -> None:
    worker: subprocess.Popen[bytes] | None = None
    with held_campaign(tmp_path, DISPATCHER_PLAN_INTERVAL="1") as (_, env, store):
        try:
            bad = bad_signer()
            store.import_supporters([bad, *people(8, scopes=(ACTION,))], utcnow())
            with (tmp_path / "run.log").open("wb") as log:
                command = [dispatcher_executable(), "run"]
                worker = subprocess.Popen(
                    command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
                )
            wait_until(lambda: bool(store.action_holds(utcnow())), 20, "the hold", interval=0.2)
            store.import_supporters([replace(bad, name="Good Name")], utcnow())  # what failed is fixed
            time.sleep(3)  # plans every second: the hold stays, nothing says it was fixed
            assert pending(store) == 9 and store.action_holds(utcnow())
            cli(env, "release", ACTION)
            wait_until(lambda: pending(store) == 0, 20, "the letters sent after the release", interval=0.2)
            assert store.action_holds(utcnow()) == []
            assert worker.poll() is None, (tmp_path / "run.log").read_text()
        finally:
            stop(worker)


async def test_a_release_stays_when_a_worker_writes_its_holds_again(store: Store) -> None:
    """T2: a worker whose holds change before it noticed the release writes them all again;
    the released one stays released, but a failure after the release holds the action again."""
    beat(store, "host-a:1", seconds_ago=1)
    beat(store, "host-b:2", seconds_ago=1)
    failed_at = utcnow() - dt.timedelta(seconds=5)
    old = replace(hold_of("host-b:2"), held_at=failed_at)
    store.set_holds("host-a:1", {ACTION: replace(old, worker="host-a:1")})
    store.set_holds("host-b:2", {ACTION: old})
    assert store.release_holds(ACTION, utcnow()) == 2
    store.set_holds("host-b:2", {ACTION: old, "other": replace(old, action_id="other")})
    assert [h.action_id for h in store.action_holds(utcnow())] == ["other"]
    again = replace(old, held_at=utcnow() + dt.timedelta(seconds=1))  # it failed once more
    store.set_holds("host-b:2", {ACTION: again})
    assert [(h.action_id, h.worker) for h in store.action_holds(utcnow())] == [(ACTION, "host-b:2")]


@pytest.mark.usefixtures("action")
async def test_a_worker_without_its_heartbeat_row_keeps_its_holds(tmp_path: Path, db: Store) -> None:
    """T3: this worker's row is missing (never beat yet, or forgotten): its holds are not read
    back, which is no staff release; a real release is, at the worker's next plan."""
    settings = make_settings(tmp_path, "smtp://127.0.0.1:9")
    dispatcher = Dispatcher(settings, db, make_channels(settings, db), worker_id=WORKER)
    dispatcher.catalogue.reload()
    dispatcher.catalogue.hold(ACTION_ID, RenderError(ACTION_ID, "t", None, "boom"))
    await dispatcher.publish_holds()

    def kind() -> str:
        return dispatcher.catalogue.holds(WORKER, utcnow())[ACTION_ID].kind

    await dispatcher.take_holds()
    assert kind() == "sending"
    db.release_holds(ACTION_ID, utcnow())
    await dispatcher.take_holds()
    assert kind() == "check"  # forgotten; the next reload checks it again
