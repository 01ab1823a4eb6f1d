"""The heartbeat (the dashboard's list of workers) goes on while the store thread is busy."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy.exc import DisconnectionError

from dispatcher.channels import make_channels
from dispatcher.models import ALIVE, WorkerBeat
from dispatcher.sending import runtime
from dispatcher.sending.runtime import Dispatcher
from dispatcher.store import Store
from tests.smtp_server import SmtpServer
from tests.test_email_smtp import WORKER, make_settings, until
from tests.test_email_smtp import action as action
from tests.test_email_smtp import db as db
from tests.test_email_smtp import smtp as smtp
from tests.test_races import planned
from tests.test_store_contract import statuses, take


def last_seen(db: Store) -> float:
    return max(w.last_seen.timestamp() for w in db.workers() if w.worker_id == WORKER)


@pytest.mark.usefixtures("action")
async def test_a_long_store_call_does_not_silence_the_heartbeat(
    tmp_path: Path, smtp: SmtpServer, db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "BEAT_EVERY", 0.2)
    settings = make_settings(tmp_path, smtp.url)
    dispatcher = Dispatcher(settings, db, make_channels(settings, db), worker_id=WORKER)
    task = asyncio.create_task(dispatcher.run_forever())
    try:
        await until(lambda: any(w.worker_id == WORKER for w in db.workers()), 10, "a first heartbeat")
        busy = asyncio.create_task(dispatcher.db(time.sleep, 2.0))  # a long planning round, say
        await asyncio.sleep(0.3)
        before = last_seen(db)
        await asyncio.sleep(1.0)
        assert not busy.done() and last_seen(db) > before  # beats went on meanwhile
        await busy
    finally:
        dispatcher.stop()
        await asyncio.wait_for(task, 15)


def expired_leases_of(db: Store, worker: str) -> None:
    """Letters ``worker`` claimed long ago: their leases ran out, it has not beaten since."""
    planned(db, 2)
    take(db, worker)


@pytest.mark.usefixtures("action")
async def test_a_young_worker_leaves_another_workers_expired_leases(
    tmp_path: Path, smtp: SmtpServer, db: Store
) -> None:
    expired_leases_of(db, "other")
    settings = make_settings(tmp_path, smtp.url)
    dispatcher = Dispatcher(settings, db, make_channels(settings, db), worker_id=WORKER)
    try:
        # Just started after an outage, say: "other" may still be sending, its first beat on its way.
        await dispatcher.refresh()
        assert statuses(db) == {"sending": 2}
        dispatcher._up_since -= ALIVE.total_seconds() + runtime.BEAT_EVERY  # up long enough now
        dispatcher._recovered -= runtime.RECOVER_EVERY  # and time to look for leases again
        await dispatcher.refresh()
        assert statuses(db) == {"pending": 2}
    finally:
        dispatcher.db.shutdown()


@pytest.mark.usefixtures("action")
async def test_the_heartbeat_goes_out_as_soon_as_the_store_answers_again(
    tmp_path: Path, smtp: SmtpServer, db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    away, failed, written = True, 0, 0.0
    heartbeat = db.heartbeat

    def flaky_heartbeat(beat: WorkerBeat) -> None:
        nonlocal failed, written
        if away:
            failed += 1
            raise DisconnectionError("the store is away")
        heartbeat(beat)
        written = time.monotonic()

    def store_call() -> None:
        if away:
            raise DisconnectionError("the store is away")

    settings = make_settings(tmp_path, smtp.url)
    dispatcher = Dispatcher(settings, db, make_channels(settings, db), worker_id=WORKER)
    task = asyncio.create_task(dispatcher.run_forever())
    try:
        await until(lambda: any(w.worker_id == WORKER for w in db.workers()), 10, "a first heartbeat")
        monkeypatch.setattr(db, "heartbeat", flaky_heartbeat)
        outage = asyncio.create_task(dispatcher.db(store_call))  # the store thread sees it too
        seen = failed
        await until(lambda: failed > seen, 2 * runtime.BEAT_EVERY, "a heartbeat that failed")
        away, back = False, time.monotonic()  # just after a failed beat: the next is a period away
        await dispatcher.db(store_call)  # answers: the waiting call tries at once, the outage ends
        await outage
        await until(lambda: written > back, runtime.BEAT_EVERY / 2, "a heartbeat after the outage")
    finally:
        dispatcher.stop()
        await asyncio.wait_for(task, 15)
