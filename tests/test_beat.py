"""The heartbeat (the dashboard's list of workers) goes on while the store thread is busy."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from dispatcher import scheduler
from dispatcher.channels import make_channels
from dispatcher.scheduler import Dispatcher
from dispatcher.store import Store
from tests.smtp_server import SmtpServer
from tests.test_email_smtp import WORKER, make_settings, until
from tests.test_email_smtp import action as action
from tests.test_email_smtp import db as db
from tests.test_email_smtp import smtp as smtp


def last_seen(db: Store) -> float:
    return max(w.last_seen.timestamp() for w in db.workers() if w.worker_id == WORKER)


@pytest.mark.usefixtures("action")
async def test_a_long_store_call_does_not_silence_the_heartbeat(
    tmp_path: Path, smtp: SmtpServer, db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler, "BEAT_EVERY", 0.2)
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
