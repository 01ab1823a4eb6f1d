"""Caps under faults, end to end: two real ``dispatcher run`` workers on PostgreSQL send to aiosmtpd
with small caps (3 letters an hour per address, 5 per domain of three officials), pacing lifted.

- PostgreSQL restarts while they send: once it is back, what the server received still holds
  every cap, and nothing is lost (each letter received is recorded sent, none sent unreceived).
- One worker is frozen (SIGSTOP) inside its claim while the other sends on: the caps hold on the
  wire, and each cap's count is exactly the letters leased against it: the frozen claim, ended by
  the server, counted nothing, and the thawed worker claims afresh rather than counting it again.
"""

from __future__ import annotations

import datetime as dt
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, func, select

from dispatcher.store import open_store
from dispatcher.store.schema import cap_counts, deliveries
from dispatcher.store.sql import engine_for
from tests.campaigns.test_caps_e2e import CAPS, DOMAIN, LIFTED, PER_HOUR, clear_of_the_hour
from tests.campaigns.test_email_smtp import DEMO_ACTION, write_action
from tests.store import test_frozen_worker as frozen
from tests.support import wire
from tests.support.postgres import private_cluster
from tests.support.processes import wait_until
from tests.support.smtp_server import Received, ScriptedHandler, SmtpServer
from tests.support.workers import Workers, seed, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PER_DOMAIN = 3  # officials in each domain: their hourly caps together (9) exceed the domain's (5)


def officials(domains: int) -> list[dict[str, Any]]:
    """``domains`` × PER_DOMAIN officials, as the demo's president (not its copied ambassador,
    whose cap would bind alone), at domains d0.example, d1.example, …"""
    (demo,) = yaml.safe_load(DEMO_ACTION.read_text(encoding="utf-8"))["targets"][:1]
    out = []
    for d in range(domains):
        for n in range(PER_DOMAIN):
            name = f"o{n}-d{d}"
            out.append({**demo, "id": name, "name": name.upper(), "email": f"{name}@d{d}.example"})
    return out


def within_caps(received: list[Received]) -> None:
    """On the wire, every arrival counted (a letter received twice reached the filter twice)."""
    hours = {dt.datetime.fromtimestamp(at, dt.UTC).hour for r in received for _, at in r.arrivals()}
    assert len(hours) == 1, "the run crossed a clock hour: the caps' windows changed under it"
    per_address = Counter(rcpt for r in received for rcpt in r.rcpt_tos)
    per_domain = Counter(rcpt.rpartition("@")[2] for r in received for rcpt in r.rcpt_tos)
    assert max(per_address.values()) <= PER_HOUR, per_address.most_common(3)
    assert max(per_domain.values()) <= DOMAIN, per_domain.most_common(3)


def domains_full(db_url: str) -> int:
    """How many domains have had their hour's cap of letters leased."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(cap_counts.c.counter, cap_counts.c.used)).all()
    finally:
        engine.dispose()
    return sum(
        used >= DOMAIN for counter, used in rows if counter.startswith("hour ") and "|domain:" in counter
    )


def counted_as_leased(db_url: str) -> None:
    """Each address's hourly count is the leases of its letters (``attempts``), no more, no less."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            query = select(deliveries.c.target_id, func.sum(deliveries.c.attempts)).group_by("target_id")
            leases = {r[0]: int(r[1]) for r in conn.execute(query)}
            rows = conn.execute(select(cap_counts.c.counter, cap_counts.c.used)).all()
    finally:
        engine.dispose()
    used = {
        c.partition("|email:")[2].partition("@")[0]: n
        for c, n in rows
        if n and c.startswith("hour ") and "|email:" in c
    }
    assert used == {t: n for t, n in leases.items() if n}, (used, leases)


def nothing_lost(db_url: str, received: list[Received]) -> None:
    """Every letter received is recorded sent, and every letter recorded sent was received."""
    signed = wire.signers(db_url)
    got = {int(m.group(1)) for r in received if (m := wire.DELIVERY_ID.match(r.message_id or ""))}
    store = open_store(db_url, migrate=False)
    try:
        sent = {r.delivery_id for r in store.attempt_log() if r.outcome == "sent"}
    finally:
        store.close()
    assert got == sent and got <= set(signed), (sorted(got ^ sent), len(got))
    assert wire.strangers(received, signed, direct=True) == []


def test_caps_hold_across_a_postgresql_restart_under_two_workers(tmp_path: Path) -> None:
    domains = 6
    with private_cluster() as cluster:
        seed(cluster.url, tmp_path, 4)  # 4 supporters × 18 officials: 72 letters, 30 allowed
        write_action(tmp_path / "actions", targets=officials(domains))
        clear_of_the_hour(45)  # each run takes 15-30 s
        with SmtpServer(ScriptedHandler(delay=0.3)) as smtp:
            workers = Workers(tmp_path, worker_env(tmp_path, cluster.url, smtp.url, **LIFTED, **CAPS))
            try:
                workers.start("w1")
                workers.start("w2")
                # Both running before the server goes: a worker still starting meets the outage as
                # a database to wait for (CI, under load: w1 started 0.5 s after the stop).
                running = lambda: all(f"dispatcher {w} running" in workers.log(w) for w in ("w1", "w2"))  # noqa: E731
                wait_until(running, 60, "both workers running")
                wait_until(lambda: len(smtp.received()) >= 8, 60, "the first letters")
                cluster.stop()
                before = len(smtp.received())
                time.sleep(2)  # longer than a retry's first waits
                cluster.start()
                full = lambda: domains_full(cluster.url) == domains or not workers.alive()  # noqa: E731
                wait_until(full, 60, "every domain's hour of letters")
                time.sleep(3)  # long enough for any letter over a cap to arrive too
                received = smtp.received()
            finally:
                codes = workers.stop()
        assert codes == {"w1": 0, "w2": 0}, workers.logs()
        # A worker between sends may not touch the store during the 2 s: each that lost it got it back.
        lost = [w for w in ("w1", "w2") if "store unreachable" in workers.log(w)]
        assert lost and all("store answers again" in workers.log(w) for w in lost), workers.logs()
        assert len(received) > before, "no letter went after the restart"
        within_caps(received)
        counted_as_leased(cluster.url)
        nothing_lost(cluster.url, received)


def test_caps_hold_and_count_once_when_a_worker_freezes_inside_its_claim(tmp_path: Path, pg_url: str) -> None:
    domains = 20  # 100 letters allowed this hour: the other worker still has some to send
    seed(pg_url, tmp_path, 3)
    write_action(tmp_path / "actions", targets=officials(domains))
    clear_of_the_hour(45)  # each run takes 15-30 s
    watcher, running = engine_for(pg_url), Workers(tmp_path)
    try:
        with SmtpServer(ScriptedHandler(delay=frozen.SERVER_DELAY)) as smtp:
            for name in ("frozen", "other"):
                env = frozen.worker_env(tmp_path, pg_url, smtp.url, name) | LIFTED | CAPS
                running.start(name, env=env | {"DISPATCHER_RATE_GLOBAL": "8"})
            smtp.wait_for(10, timeout=30)
            frozen.stop_inside_claim(running.procs["frozen"], watcher, "frozen")
            at_freeze = len(smtp.received())
            time.sleep(8)  # longer than the idle-in-transaction timeout and the lease
            during = len(smtp.received()) - at_freeze
            running.procs["frozen"].send_signal(signal.SIGCONT)
            wait_until(lambda: domains_full(pg_url) == domains, 60, "every domain's hour of letters")
            time.sleep(3)  # the thawed worker has claimed again by now: nothing over a cap arrives
            codes = running.stop()
            received = smtp.received()
    finally:
        for proc in running.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
        running.stop(signal.SIGKILL)
        watcher.dispose()
    assert codes == {"frozen": 0, "other": 0}, running.logs()
    # Its claim was the one the server ended: the thawed worker gave it up and asked afresh.
    assert "claim given up, asking again" in running.log("frozen"), running.log("frozen")
    assert during > 0, "the other worker sent nothing while the first was frozen"
    within_caps(received)
    counted_as_leased(pg_url)
    nothing_lost(pg_url, received)
