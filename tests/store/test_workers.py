"""Two dispatchers on one PostgreSQL database, running at once: every letter goes out once."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from dispatcher.channels import make_channels
from dispatcher.models import Terms
from dispatcher.sending.runtime import Dispatcher, utcnow
from dispatcher.settings import Settings
from dispatcher.store import open_store
from tests.campaigns.test_email_smtp import DEMO_ACTION, people, write_action
from tests.conftest import ROOT
from tests.support.caps import NO_CAPS
from tests.support.smtp_server import ScriptedHandler, SmtpServer

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
                **NO_CAPS,
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


async def test_two_workers_keep_each_supporters_monthly_cap(tmp_path: Path, pg_url: str) -> None:
    """Five actions, supporters capped at 2, 4 or no letters a month, two dispatchers at once
    with default pacing: each capped supporter's name is on exactly their cap of letters."""
    data = yaml.safe_load(DEMO_ACTION.read_text(encoding="utf-8"))
    actions_dir = tmp_path / "actions"
    actions_dir.mkdir()
    for n in range(5):
        action = {**data, "id": f"cap{n}", "template_set": data["template_set"]}
        (actions_dir / f"cap{n}.yaml").write_text(
            yaml.safe_dump(action, allow_unicode=True), encoding="utf-8"
        )
    caps = {i: (2, 4, None)[i % 3] for i in range(9)}
    records = [
        replace(p, scopes=("all",), terms=Terms(monthly_cap=caps[i], replies="direct"))
        for i, p in enumerate(people(9))
    ]
    setup = open_store(pg_url)
    setup.import_supporters(records, utcnow())
    setup.close()
    with SmtpServer(ScriptedHandler(delay=0.002)) as smtp:
        settings = Settings.model_validate(
            {
                "database_url": pg_url,
                "actions_dir": actions_dir,
                "templates_dir": ROOT / "templates",
                "smtp_url": smtp.url,
                "batch_size": 4,
                # 33 letters to the demo's officials in a minute: over their hourly cap of 30.
                **NO_CAPS,
            }
        )
        stores = [open_store(pg_url, migrate=False) for _ in range(2)]
        workers = [
            Dispatcher(settings, s, make_channels(settings, s), worker_id=f"w{i}")
            for i, s in enumerate(stores)
        ]
        await asyncio.wait_for(asyncio.gather(*(w.run_once() for w in workers)), 120)
        signed = Counter(r.reply_to for r in smtp.received())
        for s in stores:
            s.close()
    assert signed == {p.email: caps[i] or 5 for i, p in enumerate(records)}
