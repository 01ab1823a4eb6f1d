"""The store goes away under a running dispatcher: it waits, keeps what it holds, and resumes.

Real parts only: a SQLite file on a small tmpfs that the test fills, a private PostgreSQL cluster
the test stops and restarts, real ``dispatcher run`` processes and a real SMTP server on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from dispatcher.models import Outcome
from dispatcher.sending.results import ResultWriter
from dispatcher.store import Store, open_store
from dispatcher.store.faults import StoreUnavailable
from dispatcher.store.thread import StoreThread
from tests.conftest import never_retry
from tests.faults import SmallDisk, private_cluster, small_disk
from tests.test_email_smtp import ROOT, write_action
from tests.test_email_smtp import people as letters_for
from tests.test_kill import dispatcher_executable, received, start_smtp_server, stop, wait_until
from tests.test_store_contract import NOW, people, result, take


@contextlib.contextmanager
def claimed_on_a_small_disk(tmp_path: Path) -> Iterator[tuple[SmallDisk, Store, ResultWriter]]:
    """30 letters claimed from a SQLite file on a small disk, and a writer for their outcomes."""
    with small_disk(tmp_path / "fs", 2048) as disk:
        store = open_store(f"sqlite:///{disk.path / 'd.db'}")
        db = StoreThread(first_wait=0.05, max_wait=0.2)
        try:
            store.import_supporters(people(30), NOW)
            store.plan("act", [("t1", "email")], NOW)
            writer = ResultWriter(store, db, "w", lambda: NOW, never_retry)
            for c in take(store, "w"):
                writer.add(result(c.delivery_id, Outcome.SENT))
            yield disk, store, writer
        finally:
            db.shutdown()
            store.close()


def sent_once(store: Store, total: int) -> None:
    outcomes = Counter((a.delivery_id, a.outcome) for a in store.attempt_log())
    assert len(outcomes) == total and set(outcomes.values()) == {1}, outcomes  # none lost, none twice
    assert {outcome for _, outcome in outcomes} == {"sent"}


async def test_a_commit_on_a_full_disk_waits_and_lands_once_the_disk_has_room(tmp_path: Path) -> None:
    with claimed_on_a_small_disk(tmp_path) as (disk, store, writer):
        disk.fill()
        flushing = asyncio.create_task(writer.flush())
        await asyncio.sleep(0.5)  # several failed commits
        assert writer.db.outage.since is not None
        assert not flushing.done() and writer.pending() == 30
        disk.free()
        await asyncio.wait_for(flushing, 10)
        assert writer.pending() == 0 and writer.db.outage.since is None
        sent_once(store, 30)


async def test_results_of_a_commit_given_up_are_kept_for_the_next_flush(tmp_path: Path) -> None:
    with claimed_on_a_small_disk(tmp_path) as (disk, store, writer):
        disk.fill()
        writer.db.stop(grace=0.2)  # a stopping worker gives up on a store that does not answer
        with pytest.raises(StoreUnavailable, match="database or disk is full"):
            await asyncio.wait_for(writer.flush(), 10)
        assert writer.pending() == 30
        disk.free()
        await asyncio.wait_for(writer.flush(), 10)
        assert writer.pending() == 0
        sent_once(store, 30)


def run_env(tmp_path: Path, db_url: str, smtp_port: int, **extra: str) -> dict[str, str]:
    """``dispatcher run`` settings: this database, the test's SMTP server, the test's action."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env.update(
        {
            "DISPATCHER_SETTINGS": str(tmp_path / "no-settings.toml"),
            "DISPATCHER_DATABASE_URL": db_url,
            "DISPATCHER_ACTIONS_DIR": str(tmp_path / "actions"),
            "DISPATCHER_TEMPLATES_DIR": str(ROOT / "templates"),
            "DISPATCHER_OUTBOX": str(tmp_path / "outbox"),
            "DISPATCHER_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            "DISPATCHER_SMTP_TIMEOUT": "5",
            **extra,
        }
    )
    return env


def seed(db_url: str, tmp_path: Path, total: int) -> None:
    write_action(tmp_path / "actions")
    store = open_store(db_url)
    try:
        store.import_supporters(letters_for(total), NOW)
    finally:
        store.close()


class Workers:
    """Real ``dispatcher run`` processes, each logging to its own file; stopped at the end."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path, self.env = tmp_path, env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def start(self, worker_id: str) -> None:
        log = (self.tmp_path / f"{worker_id}.log").open("wb")
        self._logs.append(log)
        command = [dispatcher_executable(), "run", "--worker-id", worker_id]
        self.procs[worker_id] = subprocess.Popen(
            command, cwd=self.tmp_path, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def log(self, worker_id: str) -> str:
        return (self.tmp_path / f"{worker_id}.log").read_text(encoding="utf-8")

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs.values())

    def stop(self) -> dict[str, int | None]:
        codes = {w: stop(p) for w, p in self.procs.items()}
        for log in self._logs:
            log.close()
        return codes


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[int]:
    with (tmp_path / "smtp.log").open("wb") as log:
        proc, port = start_smtp_server(tmp_path / "received.txt", log)
        try:
            yield port
        finally:
            stop(proc)


def all_received(tmp_path: Path, total: int) -> bool:
    return len({mid for mid, _ in received(tmp_path / "received.txt")}) >= total


def once_each(tmp_path: Path, total: int) -> None:
    counts = Counter(mid for mid, _ in received(tmp_path / "received.txt"))
    assert len(counts) == total
    assert {mid: n for mid, n in counts.items() if n > 1} == {}, "received twice"


@pytest.mark.slow
def test_a_worker_waits_out_a_full_disk_and_sends_every_letter_once(tmp_path: Path, smtp: int) -> None:
    total = 120
    with small_disk(tmp_path / "fs", 16384) as disk:
        db_url = f"sqlite:///{disk.path / 'd.db'}"
        seed(db_url, tmp_path, total)
        workers = Workers(tmp_path, run_env(tmp_path, db_url, smtp, DISPATCHER_RATE_PER_TARGET="30"))
        try:
            workers.start("w1")
            wait_until(lambda: len(received(tmp_path / "received.txt")) >= 20, 30, "20 letters")
            disk.fill()
            wait_until(lambda: "store unreachable" in workers.log("w1"), 10, "the outage to be logged")
            time.sleep(3)  # several retries: the worker must still be there
            assert workers.alive(), workers.log("w1")
            disk.free()
            wait_until(lambda: all_received(tmp_path, total) or not workers.alive(), 60, "every letter")
            assert workers.alive(), workers.log("w1")
        finally:
            codes = workers.stop()
    assert codes == {"w1": 0}, workers.log("w1")
    once_each(tmp_path, total)
    log = workers.log("w1")
    assert log.count("store unreachable") == 1 and "database or disk is full" in log, log
    assert "store answers again" in log and "Traceback" not in log


def test_a_missing_schema_ends_the_worker_with_one_clear_line(tmp_path: Path, smtp: int) -> None:
    db_url = f"sqlite:///{tmp_path / 'empty.db'}"  # never migrated: no tables
    write_action(tmp_path / "actions")
    env = run_env(tmp_path, db_url, smtp, DISPATCHER_AUTO_MIGRATE="false")
    done = subprocess.run(
        [dispatcher_executable(), "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1, done.stderr
    assert "stopped: the store failed with an error retrying cannot cure" in done.stderr
    assert "no such table" in done.stderr and "Traceback" not in done.stderr
    assert "store unreachable" not in done.stderr  # not retried


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_ride_out_a_postgresql_restart_and_a_stop(tmp_path: Path, smtp: int) -> None:
    total = 400
    with private_cluster() as cluster:
        seed(cluster.url, tmp_path, total)
        env = run_env(
            tmp_path, cluster.url, smtp, DISPATCHER_RATE_PER_TARGET="40", DISPATCHER_LEASE_SECONDS="30"
        )
        workers = Workers(tmp_path, env)
        try:
            cluster.stop()  # the workers start before their store: they wait for it
            for w in ("w1", "w2"):
                workers.start(w)
            waiting = lambda: all("waiting for it" in workers.log(w) for w in ("w1", "w2"))  # noqa: E731
            wait_until(waiting, 20, "both workers to wait for the store")
            time.sleep(1.5)
            assert workers.alive(), workers.log("w1") + workers.log("w2")
            cluster.start()

            def got() -> int:
                return len(received(tmp_path / "received.txt"))

            wait_until(lambda: got() >= 60 or not workers.alive(), 60, "60 letters")
            cluster.stop()
            cluster.start()  # a restart
            wait_until(lambda: got() >= 160 or not workers.alive(), 60, "160 letters")
            cluster.stop()
            time.sleep(6)  # a stop of several seconds: longer than a retry's first waits
            assert workers.alive(), workers.log("w1") + workers.log("w2")
            cluster.start()
            wait_until(lambda: all_received(tmp_path, total) or not workers.alive(), 90, "every letter")
            assert workers.alive(), workers.log("w1") + workers.log("w2")
            for w in ("w1", "w2"):
                assert "store answers again" in workers.log(w), workers.log(w)
        finally:
            codes = workers.stop()
        store: Store = open_store(cluster.url, migrate=False)
        try:
            outcomes = Counter(a.outcome for a in store.attempt_log())
        finally:
            store.close()
    assert codes == {"w1": 0, "w2": 0}, workers.log("w1") + workers.log("w2")
    once_each(tmp_path, total)
    assert outcomes["sent"] == total
    for w in ("w1", "w2"):
        assert "Traceback" not in workers.log(w), workers.log(w)


def test_sigterm_while_the_store_is_down_ends_the_worker_within_its_grace(tmp_path: Path, smtp: int) -> None:
    with small_disk(tmp_path / "fs", 16384) as disk:
        db_url = f"sqlite:///{disk.path / 'd.db'}"
        seed(db_url, tmp_path, 5)
        workers = Workers(tmp_path, run_env(tmp_path, db_url, smtp))
        try:
            workers.start("w1")
            wait_until(lambda: all_received(tmp_path, 5), 30, "5 letters")
            disk.fill()
            wait_until(lambda: "store unreachable" in workers.log("w1"), 15, "the outage to be logged")
            started = time.monotonic()
            workers.procs["w1"].send_signal(signal.SIGTERM)
            workers.procs["w1"].wait(timeout=15)
            assert time.monotonic() - started < 10
        finally:
            codes = workers.stop()
            disk.free()
    assert codes["w1"] is not None and "Traceback" not in workers.log("w1"), workers.log("w1")
