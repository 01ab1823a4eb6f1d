"""A worker frozen (SIGSTOP: a VM freeze, a stalled process) inside its claim, holding the pacing
buckets' row locks: the other worker keeps sending, takes back the frozen one's letters, and both
carry on when it thaws. Two real ``dispatcher run`` processes on a real PostgreSQL database, one
aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import itertools
import random
import signal
import subprocess
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, make_url, text
from sqlalchemy import select as sql_select

from dispatcher import pacing
from dispatcher.models import Terms
from dispatcher.store import Store, open_store
from dispatcher.store.schema import deliveries
from dispatcher.store.sql import IDLE_IN_TRANSACTION, SqlStore, engine_for
from tests.campaigns.test_kill import delivery_rows
from tests.store.test_claims import DEFAULT, claim, group
from tests.store.test_store_contract import NOW
from tests.store.test_store_contract import people as claims_people
from tests.support import workers
from tests.support.processes import wait_until
from tests.support.smtp_server import ScriptedHandler, SmtpServer

pytestmark = pytest.mark.postgres

TOTAL = 400
RATE = 25.0  # letters a second from the deployment: the run outlasts the freeze
FREEZE = 15.0  # seconds; three times the idle-in-transaction timeout
LEASE = 4.0  # shorter than the freeze: the thawed worker's letters are taken back meanwhile
BATCH = 10  # the most letters a worker claims at once
SERVER_DELAY = 0.15  # seconds before each 250 to DATA: a frozen worker has letters in flight


def worker_env(tmp_path: Path, pg_url: str, smtp_url: str, name: str) -> dict[str, str]:
    return workers.worker_env(
        tmp_path,
        pg_url,
        smtp_url,
        smtp_timeout=None,
        DISPATCHER_AUTO_MIGRATE="false",
        DISPATCHER_SMTP_POOL="4",
        DISPATCHER_RATE_GLOBAL=str(RATE),
        DISPATCHER_RATE_PER_TARGET=str(RATE),
        DISPATCHER_BURST_PER_TARGET="5",
        DISPATCHER_BATCH_SIZE=str(BATCH),
        DISPATCHER_LEASE_SECONDS=str(LEASE),
        PGAPPNAME=name,  # libpq's: how the test finds this worker's sessions
    )


def holds_buckets(engine: Engine, name: str) -> bool:
    """A transaction of worker ``name`` holds the global pacing bucket's row lock (the row's
    xmax is its transaction id): it is inside a claim, and every other claim waits for it."""
    query = text(
        "select count(*) from pacing_buckets b join pg_stat_activity a on a.backend_xid = b.xmax "
        "where b.key = :key and a.application_name = :name and a.datname = current_database()"
    )
    with engine.connect() as conn:
        return bool(conn.scalar(query, {"key": pacing.GLOBAL, "name": name}))


def leased_by(store: Store, worker: str) -> set[int]:
    assert isinstance(store, SqlStore)
    d = deliveries
    mine = sql_select(d.c.id).where(d.c.lease_owner == worker, d.c.status == "sending")
    with store.engine.connect() as conn:
        return set(conn.scalars(mine))


def stop_inside_claim(proc: subprocess.Popen[bytes], engine: Engine, name: str) -> None:
    """SIGSTOP ``proc`` at a moment its claim holds the bucket locks (tries until it does)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the worker ended before it could be frozen"
        proc.send_signal(signal.SIGSTOP)
        if holds_buckets(engine, name):
            time.sleep(0.2)  # and still, a moment later: a COMMIT on its way would have let go
            if holds_buckets(engine, name):
                return
        proc.send_signal(signal.SIGCONT)
        time.sleep(random.uniform(0.01, 0.1))
    raise AssertionError("never caught the worker inside a claim")


def longest_gap(times: list[float], start: float, end: float) -> float:
    points = [start, *sorted(t for t in times if start < t < end), end]
    return max(b - a for a, b in itertools.pairwise(points))


@pytest.mark.slow
def test_a_worker_frozen_inside_its_claim_does_not_stop_the_other(tmp_path: Path, pg_url: str) -> None:
    workers.seed(pg_url, tmp_path, TOTAL)
    store = open_store(pg_url)
    watcher = engine_for(pg_url)
    running = workers.Workers(tmp_path)  # each with its own env
    procs = running.procs
    try:
        with SmtpServer(ScriptedHandler(delay=SERVER_DELAY)) as smtp:
            for name in ("frozen", "other"):
                running.start(name, env=worker_env(tmp_path, pg_url, smtp.url, name))
            smtp.wait_for(20, timeout=30)
            caught = time.time()
            stop_inside_claim(procs["frozen"], watcher, "frozen")
            stopped = time.time()
            held = leased_by(store, "frozen")  # letters it was sending when it froze
            time.sleep(FREEZE)
            thawed = time.time()
            procs["frozen"].send_signal(signal.SIGCONT)
            wait_until(
                lambda: all(status == "sent" for _, status, _, _ in delivery_rows(store)),
                60,
                "every letter to be sent",
                interval=0.2,
            )
            codes = running.stop()
            got = smtp.received()
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
        running.stop(signal.SIGKILL)
        watcher.dispose()
    try:
        log = list(store.attempt_log())
    finally:
        store.close()

    output = {name: running.log(name) for name in procs}
    assert codes == {"frozen": 0, "other": 0}, output
    # The other worker kept sending through the freeze: held up at most by the idle timeout that
    # ends the frozen transaction (and the claim's own lock wait), never for the whole freeze.
    during = [r.at for r in got if stopped + 1 < r.at < thawed]
    gap = longest_gap([r.at for r in got], stopped, thawed)
    assert gap < IDLE_IN_TRANSACTION + 3, (gap, len(during), output["other"][-3000:])
    assert len(during) > 3 * BATCH, "no more than it had in hand at the freeze"
    # And it took back the letters the frozen worker held; only those may have arrived twice.
    taken_back = {a.delivery_id for a in log if a.outcome == "interrupted" and "lease of frozen" in a.detail}
    assert held <= taken_back, (held, taken_back)
    twice = {mid for mid, n in Counter(r.message_id for r in got).items() if n > 1}
    assert len(twice) <= len(taken_back), (twice, taken_back)
    assert len({r.message_id for r in got}) == TOTAL
    print(
        f"\ncaught in a claim after {stopped - caught:.1f} s; longest gap {gap:.1f} s; "
        f"{len(during)} sent during the freeze; {len(held)} held by the frozen one; "
        f"{len(taken_back)} taken back"
    )


def assert_session_setting(engine: Engine, name: str, expected: str) -> None:
    with engine.connect() as conn:
        assert conn.scalar(text(f"show {name}")) == expected


def test_postgres_sessions_bound_idle_transactions_and_lock_waits(pg_url: str) -> None:
    engine = engine_for(pg_url)
    try:
        assert_session_setting(engine, "idle_in_transaction_session_timeout", f"{IDLE_IN_TRANSACTION:g}s")
        assert_session_setting(engine, "lock_timeout", "30s")
    finally:
        engine.dispose()
    # The database URL's own libpq options win over ours.
    own = {"options": "-c idle_in_transaction_session_timeout=2s"}
    engine = engine_for(make_url(pg_url).update_query_dict(own).render_as_string(hide_password=False))
    try:
        assert_session_setting(engine, "idle_in_transaction_session_timeout", "2s")
        assert_session_setting(engine, "lock_timeout", "30s")
    finally:
        engine.dispose()


def test_a_claim_sends_no_pipeline_a_frozen_worker_could_stop_inside(pg_url: str) -> None:
    """psycopg sends an executemany as a pipeline; a process frozen before its last message leaves
    a session PostgreSQL counts as busy, not idle in transaction, so the idle timeout never ends
    it and the bucket locks stay held. A claim (capped supporters included) is single statements."""
    store = open_store(pg_url)
    try:
        capped = [replace(p, terms=Terms(monthly_cap=2)) for p in claims_people(4)]
        store.import_supporters(capped, NOW)
        store.plan("act", [("t1", "email"), ("t2", "email")], NOW)
        assert isinstance(store, SqlStore)
        pipelined: list[str] = []

        def spy(_c: object, _cur: object, statement: str, _p: object, _x: object, many: bool) -> None:
            if many:
                pipelined.append(statement)

        event.listen(store.engine, "before_cursor_execute", spy)
        batch = claim(store, "A", [group("t1", "cc"), group("t2", "cc")], 8, DEFAULT)
        assert len(batch.claims) == 8
        assert pipelined == []
    finally:
        store.close()
