"""The store goes away under a running dispatcher: it waits, keeps what it holds, and resumes.

Real parts only: a SQLite file on a small tmpfs that the test fills, a private PostgreSQL cluster
the test stops and restarts, real ``dispatcher run`` processes and a real SMTP server on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.models import Outcome
from dispatcher.sending.results import ResultWriter
from dispatcher.store import Store, open_store
from dispatcher.store.faults import StoreUnavailable
from dispatcher.store.thread import StoreThread
from tests.campaigns.test_email_smtp import write_action
from tests.conftest import never_retry
from tests.store.test_store_contract import NOW, people, result, take
from tests.support.disk import SmallDisk, small_disk
from tests.support.postgres import private_cluster
from tests.support.processes import dispatcher_executable, wait_until
from tests.support.sink import all_received, letters, once_each
from tests.support.sink import smtp as smtp  # a fixture
from tests.support.workers import Workers, outcomes, seed, worker_env


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


@pytest.mark.slow
def test_a_worker_waits_out_a_full_disk_and_sends_every_letter_once(tmp_path: Path, smtp: str) -> None:
    total = 120
    with small_disk(tmp_path / "fs", 16384) as disk:
        db_url = f"sqlite:///{disk.path / 'd.db'}"
        seed(db_url, tmp_path, total)
        workers = Workers(tmp_path, worker_env(tmp_path, db_url, smtp, DISPATCHER_RATE_PER_TARGET="30"))
        try:
            workers.start("w1")
            wait_until(lambda: letters(tmp_path) >= 20, 30, "20 letters")
            disk.fill()
            workers.wait_for_outage("w1", 10)
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


def test_a_missing_schema_ends_the_worker_with_one_clear_line(tmp_path: Path, smtp: str) -> None:
    db_url = f"sqlite:///{tmp_path / 'empty.db'}"  # never migrated: no tables
    write_action(tmp_path / "actions")
    env = worker_env(tmp_path, db_url, smtp, DISPATCHER_AUTO_MIGRATE="false")
    done = subprocess.run(
        [dispatcher_executable(), "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1, done.stderr
    assert "stopped: the store failed with an error retrying cannot cure" in done.stderr
    assert "no such table" in done.stderr and "Traceback" not in done.stderr
    assert "store unreachable" not in done.stderr  # not retried


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_ride_out_a_postgresql_restart_and_a_stop(tmp_path: Path, smtp: str) -> None:
    total = 400
    with private_cluster() as cluster:
        seed(cluster.url, tmp_path, total)
        env = worker_env(
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
            assert workers.alive(), workers.logs()
            cluster.start()
            wait_until(lambda: letters(tmp_path) >= 60 or not workers.alive(), 60, "60 letters")
            cluster.stop()
            cluster.start()  # a restart
            wait_until(lambda: letters(tmp_path) >= 160 or not workers.alive(), 60, "160 letters")
            cluster.stop()
            time.sleep(6)  # a stop of several seconds: longer than a retry's first waits
            assert workers.alive(), workers.logs()
            cluster.start()
            wait_until(lambda: all_received(tmp_path, total) or not workers.alive(), 90, "every letter")
            assert workers.alive(), workers.logs()
            for w in ("w1", "w2"):
                assert "store answers again" in workers.log(w), workers.log(w)
        finally:
            codes = workers.stop()
        ended = outcomes(cluster.url)
    assert codes == {"w1": 0, "w2": 0}, workers.logs()
    once_each(tmp_path, total)
    assert ended["sent"] == total
    for w in ("w1", "w2"):
        assert "Traceback" not in workers.log(w), workers.log(w)


def test_sigterm_while_the_store_is_down_ends_the_worker_within_its_grace(tmp_path: Path, smtp: str) -> None:
    with small_disk(tmp_path / "fs", 16384) as disk:
        db_url = f"sqlite:///{disk.path / 'd.db'}"
        seed(db_url, tmp_path, 5)
        workers = Workers(tmp_path, worker_env(tmp_path, db_url, smtp))
        try:
            workers.start("w1")
            wait_until(lambda: all_received(tmp_path, 5), 30, "5 letters")
            disk.fill()
            workers.wait_for_outage("w1", 15)
            assert workers.terminate("w1", 15) < 10
        finally:
            codes = workers.stop()
            disk.free()
    assert codes["w1"] is not None and "Traceback" not in workers.log("w1"), workers.log("w1")
