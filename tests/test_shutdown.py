"""SIGTERM while a slow server holds a letter: a real ``dispatcher run`` process, a real SQLite
file, aiosmtpd on 127.0.0.1 taking its time over every RCPT."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dispatcher.scheduler import utcnow
from dispatcher.store import open_store
from tests.conftest import ROOT, cli_env
from tests.smtp_server import ScriptedHandler, SmtpServer
from tests.test_email_smtp import DEMO_ACTION, delivery_rows, people, write_action
from tests.test_kill import dispatcher_executable, stop, wait_until

COPIES = 6  # copies on the one letter: an attempt is MAIL, 7 x RCPT, DATA and the message
PAUSE = 1.5  # seconds the server takes over each MAIL and RCPT
TIMEOUT = 2.0  # DISPATCHER_SMTP_TIMEOUT: every reply comes within it, the attempt takes far longer


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


def start_worker(tmp_path: Path, server: SmtpServer) -> tuple[subprocess.Popen[bytes], Path]:
    write_copied_action(tmp_path / "world" / "actions")
    os.symlink(ROOT / "templates", tmp_path / "world" / "templates")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env |= cli_env(
        tmp_path,
        tmp_path / "world",
        DISPATCHER_SMTP_URL=server.url,
        DISPATCHER_SMTP_TIMEOUT=str(TIMEOUT),
        DISPATCHER_SMTP_POOL="1",
    )
    store = open_store(env["DISPATCHER_DATABASE_URL"])
    try:
        store.import_supporters(people(1), utcnow())
    finally:
        store.close()
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [dispatcher_executable(), "run", "--worker-id", "w1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return worker, log


def rcpt_accepted(server: SmtpServer) -> bool:
    return any(event.stage == "rcpt" for event in server.events())


def statuses(tmp_path: Path) -> list[str]:
    store = open_store(f"sqlite:///{tmp_path / 'd.db'}", migrate=False)
    try:
        return [row.status for row in delivery_rows(store)]
    finally:
        store.close()


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
