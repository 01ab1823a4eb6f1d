"""Caps end to end: the catalogue gives each group its plan's caps; two real ``dispatcher run``
workers sharing PostgreSQL send to aiosmtpd with small caps (3 letters an hour per address, 5 per
domain), pacing lifted. What the server receives holds the caps exactly, the other letters wait,
``dispatcher why`` says for which cap, and the workers sleep rather than spin until the hour
ends."""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, select

from dispatcher.channels import make_channels
from dispatcher.models import Caps
from dispatcher.sending.catalogue import Catalogue
from dispatcher.store import Status, open_store
from dispatcher.store.schema import deliveries
from tests.campaigns.test_email_smtp import DEMO_ACTION, write_action
from tests.campaigns.test_office_hours import target as office_target
from tests.campaigns.test_office_hours import world
from tests.campaigns.test_run_once import cpu_seconds
from tests.support import wire
from tests.support.actions import action_data
from tests.support.processes import dispatcher_executable, wait_until
from tests.support.smtp_server import SmtpServer
from tests.support.workers import Workers, seed, worker_env

PER_HOUR, DOMAIN = 3, 5
LIFTED = {"DISPATCHER_RATE_PER_TARGET": "1000", "DISPATCHER_BURST_PER_TARGET": "1000"}
CAPS = {
    "DISPATCHER_MAX_PER_HOUR": str(PER_HOUR),
    "DISPATCHER_MAX_PER_DAY": "none",
    "DISPATCHER_DOMAIN_MAX_PER_HOUR": str(DOMAIN),
}


def targets() -> list[dict[str, Any]]:
    """The demo's president and a minister (the demo's copied ambassador left out: copied on
    every letter, their cap alone would bind): two mailboxes of one domain, whose cap is below
    theirs together."""
    demo = yaml.safe_load(DEMO_ACTION.read_text(encoding="utf-8"))["targets"][:1]
    minister = {**demo[0], "id": "minister-demo", "name": "Minister (demo)", "email": "minister@example.org"}
    minister["salutation"] = {"en": "Dear Minister (demo)", "zh-Hans": "尊敬的部长（演示）"}
    return [*demo, minister]


def clear_of_the_hour(margin: float = 30.0) -> None:
    """The caps count per clock hour: start far enough from the next one to see a single hour."""
    now = dt.datetime.now(dt.UTC)
    left = 3600 - (now.minute * 60 + now.second)
    if left < margin:
        time.sleep(left + 1)


def why(env: dict[str, str], delivery_id: int) -> str:
    run = subprocess.run(
        [dispatcher_executable(), "why", str(delivery_id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def letters(db_url: str) -> tuple[Counter[str], int]:
    """How many letters are in each status, and one that waits."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            d = deliveries
            rows = conn.execute(select(d.c.id, d.c.status).order_by(d.c.id)).all()
    finally:
        engine.dispose()
    return Counter(r.status for r in rows), next(r.id for r in rows if r.status == Status.PENDING)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_hold_the_caps_on_what_the_server_receives(tmp_path: Path, pg_url: str) -> None:
    seed(pg_url, tmp_path, 10)
    write_action(tmp_path / "actions", targets=targets())
    clear_of_the_hour()
    with SmtpServer() as smtp:
        env = worker_env(tmp_path, pg_url, smtp.url, **LIFTED, **CAPS)
        workers = Workers(tmp_path, env)
        try:
            workers.start("w1")
            workers.start("w2")
            wait_until(lambda: len(smtp.received()) >= DOMAIN, 60, "the domain's hour of letters")
            time.sleep(2)  # long enough for any letter over a cap to arrive too
            before = {name: cpu_seconds(p.pid) for name, p in workers.procs.items()}
            time.sleep(4)
            used = {name: cpu_seconds(p.pid) - before[name] for name, p in workers.procs.items()}
            received = smtp.received()
            counts, waiting = letters(pg_url)
            answer = why(env, waiting)
        finally:
            codes = workers.stop()
    assert codes == {"w1": 0, "w2": 0}, workers.logs()
    per_address = Counter(rcpt for r in received for rcpt in r.rcpt_tos)
    assert len(received) == DOMAIN and sorted(per_address.values()) == [DOMAIN - PER_HOUR, PER_HOUR]
    assert counts == {Status.SENT: DOMAIN, Status.PENDING: 20 - DOMAIN}, counts
    assert wire.strangers(received, wire.signers(pg_url), direct=True) == []
    next_hour = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%H:00")
    assert "waiting for a cap: the hourly cap of" in answer and f"{next_hour} UTC" in answer, answer
    # Asleep until the hour ends: a worker claiming in a loop would use far more than this.
    assert max(used.values()) < 0.3, used


def test_each_group_is_claimed_under_its_plans_caps_in_its_zone(tmp_path: Path, sqlite_url: str) -> None:
    """The caps the claim holds come from the target's plan over the action's over the settings'
    (here lifted), with the day in the target's zone."""
    newyork = office_target("newyork", timezone="America/New_York", plan={"max_per_hour": 5})
    action = action_data("a", [office_target("brussels"), newyork], plan={"max_per_day": 50})
    settings = world(tmp_path, sqlite_url, [action]).model_copy(update={"domain_max_per_hour": 9})
    store = open_store(sqlite_url)
    channels = make_channels(settings, store)
    store.close()
    catalogue = Catalogue(settings, tuple(channels), lambda: dt.datetime(2030, 1, 7, 12, tzinfo=dt.UTC))
    catalogue.reload()
    caps = {g.target_id: g.caps for g in catalogue.groups(tuple(channels), channels)}
    assert caps == {
        "brussels": Caps(None, 50, 9, "Europe/Brussels"),
        "newyork": Caps(5, 50, 9, "America/New_York"),
    }
