"""Two dispatchers on one PostgreSQL database, running at once: every letter goes out once."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from dispatcher.channels import make_channels
from dispatcher.config import Settings
from dispatcher.scheduler import Dispatcher, utcnow
from dispatcher.store import open_store
from tests.conftest import ROOT
from tests.smtp_server import ScriptedHandler, SmtpServer
from tests.test_email_smtp import people, write_action

pytestmark = pytest.mark.postgres


async def test_two_workers_share_the_queue_and_send_each_letter_once(tmp_path: Path, pg_url: str) -> None:
    total = 300
    write_action(tmp_path / "actions")
    setup = open_store(pg_url)
    setup.import_supporters(people(total), utcnow())
    setup.close()
    # A little latency per message keeps both workers busy at the same time.
    with SmtpServer(ScriptedHandler(delay=0.005)) as smtp:
        settings = Settings.model_validate(
            {
                "database_url": pg_url,
                "actions_dir": tmp_path / "actions",
                "templates_dir": ROOT / "templates",
                "smtp_url": smtp.url,
                "smtp_pool": 4,
                "rate_per_target": 10_000.0,
                "burst_per_target": 10_000,
                "rate_global": 10_000.0,
                "batch_size": 20,
            }
        )
        stores = [open_store(pg_url, migrate=False) for _ in range(2)]
        workers = [
            Dispatcher(settings, s, make_channels(settings, s), worker_id=f"w{i}")
            for i, s in enumerate(stores)
        ]
        tallies = await asyncio.wait_for(asyncio.gather(*(w.run_once() for w in workers)), 120)
        ids = smtp.message_ids()
        attempts = list(stores[0].attempt_log())
        for s in stores:
            s.close()
    assert len(ids) == total and len(set(ids)) == total
    assert all(t.counts["sent"] > 0 for t in tallies), [t.counts for t in tallies]
    assert sum(t.counts["sent"] for t in tallies) == total
    assert Counter(a.outcome for a in attempts) == {"sent": total}
    assert {a.worker for a in attempts} == {"w0", "w1"}
