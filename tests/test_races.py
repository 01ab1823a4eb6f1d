"""Races between workers and staff: a sweep on a stale view of the action's state, a worker that
takes back a live worker's leases after an outage, calls that wait on after the store answered."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy.exc import DisconnectionError

from dispatcher.models import Status, WorkerBeat
from dispatcher.store import Store
from dispatcher.store.thread import StoreThread
from tests.test_store_contract import LEASE, NOW, people, statuses, take

DEADLINE = NOW + dt.timedelta(days=1)


def planned(store: Store, n: int = 3) -> None:
    store.import_supporters(people(n), NOW)
    store.plan("act", [("t1", "email")], NOW)


def test_a_stale_close_sweep_after_a_reopen_cancels_nothing(store: Store) -> None:
    planned(store)
    store.set_action_state("act", by="staff", now=NOW, status="closed")
    assert store.finish_pending("act", Status.CANCELLED, NOW, deadline=DEADLINE) == 3
    store.set_action_state("act", by="staff", now=NOW, status="active")  # reopen
    assert store.revive("act", Status.CANCELLED, NOW, closed=True) == 3
    # A worker's sweep still sees the action closed (its snapshot is up to a second old).
    assert store.finish_pending("act", Status.CANCELLED, NOW, deadline=DEADLINE) == 0
    assert statuses(store) == {"pending": 3}


def test_a_file_that_closes_the_action_cancels_whatever_the_store_says(store: Store) -> None:
    planned(store)
    assert store.finish_pending("act", Status.CANCELLED, NOW, deadline=DEADLINE, by_file=True) == 3


def test_a_stale_expire_sweep_after_an_extend_expires_nothing(store: Store) -> None:
    planned(store)
    past = NOW + dt.timedelta(days=2)  # the file's deadline has passed
    assert store.finish_pending("act", Status.EXPIRED, past, deadline=DEADLINE) == 3
    store.set_action_state("act", by="staff", now=past, deadline=past + dt.timedelta(days=7))  # extend
    assert store.revive("act", Status.EXPIRED, past) == 3
    assert store.finish_pending("act", Status.EXPIRED, past, deadline=DEADLINE) == 0
    assert statuses(store) == {"pending": 3}
    assert store.finish_pending("act", Status.EXPIRED, NOW, deadline=NOW) == 0  # not past the one in force


def beat(store: Store, worker: str, at: dt.datetime) -> None:
    store.heartbeat(WorkerBeat(worker, NOW, at, 0, 0, None))


def test_a_worker_started_after_an_outage_leaves_a_live_workers_leases(store: Store) -> None:
    planned(store, 2)
    beat(store, "A", NOW)
    take(store, "A")
    # The store was away for ten minutes: A's leases ran out. A's heartbeat lands first.
    back = NOW + dt.timedelta(minutes=10)
    beat(store, "A", back)
    assert store.recover("B", back + dt.timedelta(seconds=1)) == 0
    # A stays silent (killed at the outage's end): its letters go back to the queue.
    assert store.recover("B", back + dt.timedelta(minutes=1)) == 2


def test_a_worker_that_stopped_cleanly_is_not_alive(store: Store) -> None:
    planned(store, 2)
    take(store, "A")
    later = NOW + LEASE * 2
    store.heartbeat(WorkerBeat("A", NOW, later, 0, 0, later))
    assert store.recover("B", later) == 2


def test_a_worker_takes_back_its_own_leases_though_it_beats(store: Store) -> None:
    planned(store, 2)
    take(store, "w1")
    beat(store, "w1", NOW)  # restarted under the same id: its first beat came before recovery
    store.expire_leases_of("w1", NOW)
    assert store.recover("w1", NOW) == 2


async def test_a_call_that_answers_wakes_the_calls_waiting_out_an_outage() -> None:
    db = StoreThread(first_wait=30.0, max_wait=30.0)
    down = True

    def write() -> str:
        if down:
            raise DisconnectionError("store down")
        return "written"

    try:
        waiting = asyncio.ensure_future(db(write))
        await asyncio.sleep(0.2)
        assert db.outage.since is not None
        down = False
        assert await db(lambda: "read") == "read"  # a call that never failed
        assert await asyncio.wait_for(waiting, 5) == "written"  # not after its 30 s pause
        assert db.outage.since is None
    finally:
        db.shutdown()


def test_a_young_worker_takes_back_only_its_own_leases(store: Store) -> None:
    planned(store, 3)
    take(store, "A", 2)
    take(store, "B", 1)
    # The store was away for ten minutes: every lease ran out, nobody has beaten since.
    back = NOW + dt.timedelta(minutes=10)
    # B started in that window: A's first beat may still be on its way, so A looks dead but is not.
    assert store.recover("B", back, others=False) == 1
    assert store.recover("B", back) == 2  # up long enough: A's silence now means A is gone


def test_a_worker_whose_clock_runs_ahead_forgets_no_one(store: Store) -> None:
    now = dt.datetime.now(dt.UTC)  # pruning goes by the store's clock, which is the real one
    gone = now - dt.timedelta(hours=2)
    store.heartbeat(WorkerBeat("C", gone, gone, 0, 0, None))
    store.heartbeat(WorkerBeat("B", now, now, 0, 0, None))
    assert {w.worker_id for w in store.workers()} == {"B"}  # silent for over an hour: forgotten
    ahead = now + dt.timedelta(hours=2)
    store.heartbeat(WorkerBeat("A", ahead, ahead, 0, 0, None))
    assert {w.worker_id for w in store.workers()} == {"A", "B"}


def test_a_worker_whose_clock_runs_ahead_takes_back_no_live_workers_leases(store: Store) -> None:
    planned(store, 2)
    now = dt.datetime.now(dt.UTC)  # liveness goes by the store's clock, which is the real one
    take(store, "A", at=now - LEASE * 2)  # its leases ran out during an outage, say
    beat(store, "A", now)  # and it beats again
    assert store.recover("B", now + dt.timedelta(minutes=2)) == 0  # B's clock is two minutes ahead
