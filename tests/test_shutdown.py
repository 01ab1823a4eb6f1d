"""SIGTERM while a slow server holds a letter: a real ``dispatcher run`` process, a real SQLite
file (or a private PostgreSQL cluster), aiosmtpd on 127.0.0.1 taking its time over every RCPT."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dispatcher.channels import make_channels
from dispatcher.sending import runtime
from dispatcher.sending.runtime import Dispatcher, utcnow
from dispatcher.store import Store, open_store
from tests.conftest import ROOT, cli_env
from tests.faults import private_cluster
from tests.smtp_server import ScriptedHandler, SmtpServer
from tests.test_email_smtp import DEMO_ACTION, delivery_rows, make_settings, people, until, write_action
from tests.test_email_smtp import db as db
from tests.test_kill import dispatcher_executable, stop, wait_until

COPIES = 6  # copies on the one letter: an attempt is MAIL, 7 x RCPT, DATA and the message
PAUSE = 1.5  # seconds the server takes over each MAIL and RCPT
TIMEOUT = 2.0  # DISPATCHER_SMTP_TIMEOUT: every reply comes within it, the attempt takes far longer
QUICK_RCPT = 0.3  # seconds before each RCPT reply of every letter but the first


def write_copied_action(actions_dir: Path) -> None:
    """The demo action with its one addressee and COPIES officials copied by email."""
    targets = yaml.safe_load(DEMO_ACTION.read_text(encoding="utf-8"))["targets"]
    cc = {key: value for key, value in targets[1].items() if key != "email"}
    copies = [{**cc, "id": f"cc{i}", "email": f"cc{i}@example.org"} for i in range(COPIES)]
    write_action(actions_dir, targets=[targets[0], *copies])


@pytest.fixture
def slow() -> Iterator[SmtpServer]:
    with SmtpServer(ScriptedHandler(delay=0.5, pause={"mail": PAUSE, "rcpt": PAUSE})) as server:
        yield server


class OneSlowLetter(ScriptedHandler):
    """Two letters sent together end far apart: the first to reach RCPT waits PAUSE before each
    of its RCPT replies, the others QUICK_RCPT."""

    def __init__(self) -> None:
        super().__init__(delay=0.5, pause={"rcpt": QUICK_RCPT})

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self._number(envelope) == 1:
            await asyncio.sleep(PAUSE - QUICK_RCPT)
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


@pytest.fixture
def uneven() -> Iterator[SmtpServer]:
    with SmtpServer(OneSlowLetter()) as server:
        yield server


def worker_env(tmp_path: Path, server: SmtpServer, supporters: int = 1, **extra: str) -> dict[str, str]:
    """The copied action, ``supporters`` supporters in the store, the slow server: a worker's env."""
    write_copied_action(tmp_path / "world" / "actions")
    os.symlink(ROOT / "templates", tmp_path / "world" / "templates")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env |= cli_env(
        tmp_path,
        tmp_path / "world",
        DISPATCHER_SMTP_URL=server.url,
        DISPATCHER_SMTP_TIMEOUT=str(TIMEOUT),
        **({"DISPATCHER_SMTP_POOL": "1"} | extra),
    )
    store = open_store(env["DISPATCHER_DATABASE_URL"])
    try:
        store.import_supporters(people(supporters), utcnow())
    finally:
        store.close()
    return env


def launch(
    tmp_path: Path, env: dict[str, str], name: str, *args: str
) -> tuple[subprocess.Popen[bytes], Path]:
    """``dispatcher run --worker-id w1`` (each launch logging to its own file)."""
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [dispatcher_executable(), "run", "--worker-id", "w1", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return worker, log


def start_worker(tmp_path: Path, server: SmtpServer) -> tuple[subprocess.Popen[bytes], Path]:
    return launch(tmp_path, worker_env(tmp_path, server), "worker")


def rcpt_accepted(server: SmtpServer, letters: int = 1) -> bool:
    return len({event.number for event in server.events() if event.stage == "rcpt"}) >= letters


def statuses(tmp_path: Path, url: str | None = None) -> list[str]:
    store = open_store(url or f"sqlite:///{tmp_path / 'd.db'}", migrate=False)
    try:
        return sorted(row.status for row in delivery_rows(store))
    finally:
        store.close()


def beating_since(tmp_path: Path, since: dt.datetime) -> bool:
    """Worker w1 said it is alive (not stopped) after ``since``."""
    store = open_store(f"sqlite:///{tmp_path / 'd.db'}", migrate=False)
    try:
        beats = [b for b in store.workers() if b.worker_id == "w1" and b.stopped_at is None]
    finally:
        store.close()
    return any(b.last_seen.replace(tzinfo=b.last_seen.tzinfo or dt.UTC) > since for b in beats)


@pytest.mark.slow
def test_sigterm_lets_a_slow_attempt_finish_and_records_it(tmp_path: Path, slow: SmtpServer) -> None:
    # SIGTERM lands once the first RCPT was answered: the rest of the attempt (6 RCPT, DATA)
    # takes about 10 s, longer than smtp_timeout + 5 but well within the attempt's own bound.
    worker, log = start_worker(tmp_path, slow)
    try:
        wait_until(lambda: rcpt_accepted(slow) or worker.poll() is not None, 30, "the first RCPT")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, log.read_text()
    finally:
        stop(worker, signal.SIGKILL)
    assert len(slow.message_ids()) == 1, log.read_text()
    assert statuses(tmp_path) == ["sent"], log.read_text()


@pytest.mark.slow
def test_a_second_sigterm_cuts_the_wait_short(tmp_path: Path, slow: SmtpServer) -> None:
    # The operator insists: the letter in flight is cut off, its lease left to run out (or to
    # be given back when this worker id starts again), and the worker ends within a second.
    worker, log = start_worker(tmp_path, slow)
    try:
        wait_until(lambda: rcpt_accepted(slow) or worker.poll() is not None, 30, "the first RCPT")
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        worker.send_signal(signal.SIGTERM)
        started = time.monotonic()
        worker.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        stop(worker, signal.SIGKILL)
    assert took < 2.0, log.read_text()
    assert slow.message_ids() == []
    assert statuses(tmp_path) == ["sending"]
    assert "1 letter still in flight" in log.read_text()


@pytest.mark.slow
def test_a_letter_finished_during_the_wait_is_committed_at_once_and_never_sent_twice(
    tmp_path: Path, uneven: SmtpServer
) -> None:
    # Two letters under way at SIGTERM: the quick one ends about a second later, the slow one
    # some 9 s later. The quick one's outcome is in the store while the worker still waits, so a
    # SIGKILL then (systemd's, say) and a restart under the same id resend only the slow one.
    env = worker_env(tmp_path, uneven, supporters=2, DISPATCHER_SMTP_POOL="2")
    worker, log = launch(tmp_path, env, "worker")
    try:
        wait_until(lambda: rcpt_accepted(uneven, 2) or worker.poll() is not None, 30, "two letters under way")
        worker.send_signal(signal.SIGTERM)
        wait_until(lambda: "sent" in statuses(tmp_path) or worker.poll() is not None, 20, "the quick commit")
        waiting = worker.poll() is None
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=15)
        assert waiting, log.read_text()
        assert statuses(tmp_path) == ["sending", "sent"], log.read_text()
    finally:
        stop(worker, signal.SIGKILL)
    again, again_log = launch(tmp_path, env, "again", "--once")
    try:
        assert again.wait(timeout=60) == 0, again_log.read_text()
    finally:
        stop(again, signal.SIGKILL)
    ids = uneven.message_ids()
    assert len(ids) == 2 and len(set(ids)) == 2, again_log.read_text()
    assert statuses(tmp_path) == ["sent", "sent"]


@pytest.mark.slow
def test_the_worker_keeps_beating_while_it_waits(tmp_path: Path, slow: SmtpServer) -> None:
    # The wait (about 9 s here, minutes in production) outlasts a heartbeat period: the
    # dashboard must not show the draining worker as gone.
    worker, log = start_worker(tmp_path, slow)
    try:
        wait_until(lambda: rcpt_accepted(slow) or worker.poll() is not None, 30, "the first RCPT")
        signalled = utcnow()
        worker.send_signal(signal.SIGTERM)
        beat = lambda: beating_since(tmp_path, signalled) or worker.poll() is not None  # noqa: E731
        wait_until(beat, 15, "a heartbeat after SIGTERM")
        assert worker.poll() is None and beating_since(tmp_path, signalled), log.read_text()
        assert worker.wait(timeout=30) == 0, log.read_text()
    finally:
        stop(worker, signal.SIGKILL)
    assert statuses(tmp_path) == ["sent"]


@pytest.mark.slow
def test_the_final_commit_retries_a_store_restarted_after_the_wait(tmp_path: Path, slow: SmtpServer) -> None:
    # PostgreSQL goes away at SIGTERM and comes back once the letter is done (the wait, about
    # 9 s, outlasted the 5 s grace): the final commit still gets its grace, and records it.
    with private_cluster() as cluster:
        env = worker_env(tmp_path, slow, DISPATCHER_DATABASE_URL=cluster.url)
        worker, log = launch(tmp_path, env, "worker")
        try:
            wait_until(lambda: rcpt_accepted(slow) or worker.poll() is not None, 30, "the first RCPT")
            worker.send_signal(signal.SIGTERM)
            cluster.stop()
            slow.wait_for(1, timeout=30)
            time.sleep(1.5)  # the server's 250 (0.5 s later), then the final commit fails a while
            cluster.start()
            assert worker.wait(timeout=30) == 0, log.read_text()
        finally:
            stop(worker, signal.SIGKILL)
        assert statuses(tmp_path, cluster.url) == ["sent"], log.read_text()


async def test_the_wait_is_capped_below_the_units_stop_timeout(
    tmp_path: Path,
    slow: SmtpServer,
    db: Store,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The letter could take (3 + 7) x 2 s more; the cap (160 s, shrunk to 1 s here) ends the
    # wait first, as it must before systemd's SIGKILL: the letter is logged as cut off.
    monkeypatch.setattr(runtime, "STOP_WAIT_MAX", 1.0)
    write_copied_action(tmp_path / "actions")
    db.import_supporters(people(1), utcnow())
    settings = make_settings(tmp_path, slow.url, smtp_timeout=TIMEOUT, smtp_pool=1)
    dispatcher = Dispatcher(settings, db, make_channels(settings, db), worker_id="w1")
    task = asyncio.create_task(dispatcher.run_forever())
    try:
        await until(lambda: rcpt_accepted(slow) or task.done(), 30, "the first RCPT")
        dispatcher.stop()
        started = time.monotonic()
        await asyncio.wait_for(task, 30)
        took = time.monotonic() - started
    finally:
        dispatcher.stop()
        await asyncio.wait_for(task, 30)
    assert took < 3.0
    assert "1 letter still in flight cut off" in caplog.text
