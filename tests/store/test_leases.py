"""Leases across store outages: letters a worker has sent but not yet recorded are never taken
back and sent again by another worker, however long the store was away."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from dispatcher.models import Outcome
from dispatcher.sending.leases import LeaseKeeper
from dispatcher.sending.results import ResultWriter
from dispatcher.sending.runtime import utcnow
from dispatcher.store import Store, open_store
from dispatcher.store.thread import StoreThread
from tests.conftest import never_retry
from tests.store.test_store_contract import LEASE, NOW, people, result, take
from tests.support.postgres import private_cluster
from tests.support.processes import wait_until
from tests.support.sink import letters, once_each, smtp_sink
from tests.support.workers import Workers, outcomes, seed, worker_env

# Seconds the server holds each 250 to DATA: when the store stops, attempts are running, and
# their outcomes reach the (failing) store up to this long after the rest of the worker's calls.
SLOW_DATA = 4.0


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[str]:
    """An SMTP server on loopback, slow to accept each letter."""
    with smtp_sink(tmp_path, SLOW_DATA) as url:
        yield url


def all_recorded(db_url: str, total: int) -> bool:
    """Every letter recorded as sent, and none still leased (a resend would be in flight)."""
    store = open_store(db_url, migrate=False)
    try:
        counts = [c for by_status in store.action_counts().values() for c in by_status.items()]
    finally:
        store.close()
    return sum(n for status, n in counts if status == "sent") >= total and not any(
        n for status, n in counts if status == "sending"
    )


@pytest.mark.slow
@pytest.mark.postgres
def test_a_store_outage_longer_than_the_lease_sends_no_letter_twice(tmp_path: Path, sink: str) -> None:
    total, lease = 60, 8
    with private_cluster() as cluster:
        seed(cluster.url, tmp_path, total)
        env = worker_env(
            tmp_path,
            cluster.url,
            sink,
            DISPATCHER_RATE_PER_TARGET="10",
            DISPATCHER_LEASE_SECONDS=str(lease),
            DISPATCHER_SMTP_TIMEOUT=str(SLOW_DATA * 4),
        )
        workers = Workers(tmp_path, env)
        try:
            for w in ("w1", "w2"):
                workers.start(w)
            running = lambda: all("running;" in workers.log(w) for w in ("w1", "w2"))  # noqa: E731
            wait_until(running, 30, "both workers to run")
            some = lambda: letters(tmp_path) >= 5 or not workers.alive()  # noqa: E731
            wait_until(some, 60, "5 letters")
            cluster.stop()  # letters in flight: their outcomes wait in memory
            # Longer than the lease; back just before the workers' calls retry (1, 3, 7, 15 s).
            time.sleep(13)
            cluster.start()
            done = lambda: all_recorded(cluster.url, total) or not workers.alive()  # noqa: E731
            wait_until(done, 120, "every letter recorded as sent", interval=0.5)
            assert workers.alive(), workers.logs()
        finally:
            codes = workers.stop()
        ended = outcomes(cluster.url)
    assert codes == {"w1": 0, "w2": 0}, workers.logs()
    once_each(tmp_path, total)
    # No letter of a live worker was taken back ("interrupted"): the first step to a second send.
    assert ended == {"sent": total}, ended
    for w in ("w1", "w2"):
        assert "Traceback" not in workers.log(w), workers.log(w)


def dropped() -> OperationalError:
    """What a connection lost mid-call raises (curable: the call is tried again)."""
    return OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))


def claimed(store: Store, n: int, lease_left: float) -> list[int]:
    """``n`` letters claimed by "w1" whose leases run out ``lease_left`` seconds from now."""
    store.import_supporters(people(n), NOW)
    store.plan("act", [("t1", "email")], NOW)
    at = utcnow() - LEASE + dt.timedelta(seconds=lease_left)
    return [c.delivery_id for c in take(store, "w1", at=at)]


async def test_letters_sent_keep_their_lease_until_their_outcome_is_committed(store: Store) -> None:
    ids = claimed(store, 3, lease_left=0.3)
    db = StoreThread()
    try:
        writer = ResultWriter(store, db, "w1", utcnow, never_retry)
        keeper = LeaseKeeper(store, "w1", dt.timedelta(seconds=0.3), utcnow, writer.uncommitted)
        for delivery_id in ids:
            with keeper.attempt(delivery_id):
                await asyncio.sleep(0.01)
            writer.add(result(delivery_id, Outcome.SENT))  # not committed: the store is away
        await asyncio.sleep(1.0)  # several leases
        assert store.recover("w2", utcnow()) == 0  # nobody takes them back to send again
        await writer.flush()
        await asyncio.sleep(0.3)  # nothing left to renew: the renewals end
        assert keeper._task is not None and keeper._task.done()
    finally:
        db.shutdown()


async def test_a_call_that_answers_wakes_every_call_waiting_for_the_store() -> None:
    db = StoreThread(first_wait=0.1, max_wait=10)
    up = False

    def call() -> str:
        if not up:
            raise dropped()
        return "ok"

    first = asyncio.create_task(db(call))
    await asyncio.sleep(1.6)  # its waits: 0.1, 0.2, 0.4, 0.8, then 1.6 s
    second = asyncio.create_task(db(call))
    await asyncio.sleep(0.05)
    up = True
    await asyncio.wait_for(second, 1)  # tried again 0.1 s after its failure
    started = time.monotonic()
    await asyncio.wait_for(first, 5)
    assert time.monotonic() - started < 0.5  # woken by the second's answer, not after its backoff
    assert db.outage.since is None
    db.shutdown()


async def test_an_outage_ends_however_its_last_waiting_call_ends(caplog: pytest.LogCaptureFixture) -> None:
    db = StoreThread(first_wait=0.01, max_wait=0.01)
    errors = [dropped(), ValueError("a bug")]

    def call() -> None:
        raise errors.pop(0) if errors else dropped()

    caplog.set_level(logging.WARNING, "dispatcher")
    with pytest.raises(ValueError):
        await db(call)  # a curable error, then one retrying cannot cure
    assert db.outage.since is None and "store answers again" in caplog.text
    waiting = asyncio.create_task(db(call))
    await asyncio.sleep(0.1)
    waiting.cancel()  # a call cut short while the store is away
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert caplog.text.count("store unreachable") == 2  # the next outage is logged too
    db.shutdown()


async def test_an_outcome_committed_whose_answer_was_lost_is_not_recorded_twice(store: Store) -> None:
    ids = claimed(store, 4, lease_left=60)
    results = [result(ids[0], Outcome.SENT), result(ids[1], Outcome.FAILED, detail="no such mailbox")]
    lost = [True]

    def record_then_drop() -> None:
        store.record("w1", results, never_retry)
        if lost.pop() if lost else False:
            raise dropped()  # the COMMIT landed, its answer did not: tried again

    db = StoreThread(first_wait=0.01)
    try:
        await db(record_then_drop)
    finally:
        db.shutdown()
    counts = Counter((a.delivery_id, a.outcome) for a in store.attempt_log())
    assert counts == {(ids[0], "sent"): 1, (ids[1], "failed"): 1}
