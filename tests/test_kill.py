"""``kill -9`` mid-batch, then a restart under the same worker id: nothing lost, no new Message-IDs.

Both the dispatcher and the SMTP server are real processes talking over 127.0.0.1. The server
logs each accepted message's Message-ID before it answers, and waits a little before answering,
so at the kill some letters have reached the server while the dispatcher never heard the 250:
those are the ones a restart sends again, and they must carry the same Message-ID.
"""

from __future__ import annotations

import math
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import select as sql_select

from dispatcher.channels.email import message_id
from dispatcher.sending.results import FLUSH_EVERY
from dispatcher.sending.runtime import utcnow
from dispatcher.store import Store, open_store
from dispatcher.store.schema import deliveries, supporters
from dispatcher.store.sql import SqlStore
from tests.test_email_smtp import ACTION_ID, ROOT, people, write_action

TOTAL = 200
RATE = 60.0  # letters a second to the one target: a run needs several seconds for all of them
BURST = 5
POOL = 2
CONCURRENCY = max(4, 2 * POOL)  # Dispatcher._concurrency()
SERVER_DELAY = 0.05  # the server holds each 250 this long after logging the message
KILL_AFTER = 50  # messages received before the SIGKILL
WORKER = "w1"


def dispatcher_executable() -> str:
    beside = Path(sys.executable).with_name("dispatcher")
    found = str(beside) if beside.exists() else shutil.which("dispatcher")
    if not found:
        pytest.skip("the dispatcher console script is not installed")
    return found


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def stop(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None, sig: int = signal.SIGTERM
) -> int | None:
    """Stop a process we started (this one only, by its pid); its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    return proc.returncode


def start_smtp_server(
    out: Path, log: IO[bytes], delay: float = SERVER_DELAY
) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.smtp_server",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--out",
            str(out),
            "--delay",
            str(delay),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("PORT "):
        stop(proc)
        raise AssertionError(f"the SMTP server did not start: {line!r}")
    return proc, int(line.split()[1])


def received(out: Path) -> list[tuple[str, str]]:
    """(Message-ID, Reply-To) per accepted message; only complete lines."""
    if not out.exists():
        return []
    text = out.read_text(encoding="utf-8")
    lines = text.split("\n")[:-1]  # a last line without its newline is still being written
    return [(mid, reply_to) for mid, reply_to in (line.split("\t") for line in lines)]


def delivery_rows(store: Store) -> list[tuple[int, str, int, str]]:
    """(id, status, attempts, supporter email) of every delivery."""
    assert isinstance(store, SqlStore)
    d, s = deliveries, supporters
    with store.engine.begin() as conn:
        rows = conn.execute(
            sql_select(d.c.id, d.c.status, d.c.attempts, s.c.email).join(s, s.c.id == d.c.supporter_id)
        ).all()
    return [(r.id, r.status, r.attempts, r.email) for r in rows]


@pytest.mark.slow
def test_sigkill_mid_batch_then_restart_sends_everything_once_with_stable_message_ids(tmp_path: Path) -> None:
    executable = dispatcher_executable()
    db_url = f"sqlite:///{tmp_path / 'dispatcher.db'}"
    write_action(tmp_path / "actions")
    seed = open_store(db_url)
    try:
        seed.import_supporters(people(TOTAL), utcnow())
    finally:
        seed.close()

    out = tmp_path / "received.txt"
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in ("smtp", "first", "second")}
    smtp: subprocess.Popen[str] | None = None
    first: subprocess.Popen[bytes] | None = None
    second: subprocess.Popen[bytes] | None = None
    store: Store | None = None
    try:
        smtp, port = start_smtp_server(out, logs["smtp"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
        env.update(
            {
                "DISPATCHER_SETTINGS": str(tmp_path / "no-settings.toml"),
                "DISPATCHER_DATABASE_URL": db_url,
                "DISPATCHER_ACTIONS_DIR": str(tmp_path / "actions"),
                "DISPATCHER_TEMPLATES_DIR": str(ROOT / "templates"),
                "DISPATCHER_OUTBOX": str(tmp_path / "outbox"),
                "DISPATCHER_SMTP_URL": f"smtp://127.0.0.1:{port}",
                "DISPATCHER_SMTP_POOL": str(POOL),
                "DISPATCHER_SMTP_TIMEOUT": "5",
                "DISPATCHER_RATE_PER_TARGET": str(RATE),
                "DISPATCHER_BURST_PER_TARGET": str(BURST),
                "DISPATCHER_LEASE_SECONDS": "2",
            }
        )
        command = [executable, "run", "--worker-id", WORKER]

        # 1. Run, and kill -9 in the middle of the batch.
        first = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=logs["first"], stderr=subprocess.STDOUT
        )
        wait_until(
            lambda: len(received(out)) >= KILL_AFTER or first.poll() is not None, 30, f"{KILL_AFTER} letters"
        )
        assert first.poll() is None, (tmp_path / "first.log").read_text()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        time.sleep(SERVER_DELAY * 4)  # let the server finish logging what was already on the wire
        at_kill = received(out)
        assert 0 < len(at_kill) < TOTAL, "the kill did not land mid-batch"

        store = open_store(db_url, migrate=False)
        rows = delivery_rows(store)
        assert len(rows) == TOTAL
        in_flight = {delivery_id for delivery_id, status, _, _ in rows if status == "sending"}
        assert in_flight, "nothing was in flight at the kill"

        # 2. Restart under the same worker id; wait until every delivery is sent; stop cleanly.
        second = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=logs["second"], stderr=subprocess.STDOUT
        )
        wait_until(
            lambda: (
                second.poll() is not None or all(status == "sent" for _, status, _, _ in delivery_rows(store))
            ),
            40,
            "every delivery to be sent",
            interval=0.1,
        )
        assert second.poll() is None, (tmp_path / "second.log").read_text()
        time.sleep(SERVER_DELAY * 4)
        assert stop(second) == 0, (tmp_path / "second.log").read_text()
    except BaseException:
        if store is not None:
            store.close()
        raise
    finally:
        for proc in (first, second, smtp):
            stop(proc, signal.SIGKILL if proc is first else signal.SIGTERM)
        for fh in logs.values():
            fh.close()

    assert store is not None
    try:
        rows = delivery_rows(store)
        secret = store.instance_secret()
        log = list(store.attempt_log())
    finally:
        store.close()

    expected = {delivery_id: message_id(secret, delivery_id, "example.org") for delivery_id, *_ in rows}
    by_message_id = {mid: delivery_id for delivery_id, mid in expected.items()}
    supporter_of = {delivery_id: email for delivery_id, _, _, email in rows}
    got = received(out)

    # Every delivery's Message-ID arrived, and no other: as many distinct IDs as deliveries.
    assert {mid for mid, _ in got} == set(expected.values())
    assert len({mid for mid, _ in got}) == len(rows) == TOTAL
    # A Message-ID always names the same letter (same supporter), so a second reception is the
    # same letter with the same Message-ID, never a new one.
    for mid, reply_to in got:
        assert reply_to == supporter_of[by_message_id[mid]], (mid, reply_to)

    # Duplicates: only letters in flight at the kill, and no more than the in-flight window.
    counts = Counter(mid for mid, _ in got)
    duplicated = {by_message_id[mid]: n - 1 for mid, n in counts.items() if n > 1}
    more = {delivery_id: n + 1 for delivery_id, n in duplicated.items() if n > 1}
    assert not more, f"received three times or more (delivery: receptions): {more}"
    outside = sorted(set(duplicated) - in_flight)
    assert not outside, f"received twice without being in flight at the kill: {outside}"
    flush_group = BURST + math.ceil(RATE * 2 * FLUSH_EVERY)
    assert sum(duplicated.values()) <= CONCURRENCY + flush_group, (duplicated, CONCURRENCY, flush_group)
    # Letters already received before the kill were not sent again, unless they were in flight.
    for mid, _ in at_kill:
        assert counts[mid] == 1 or by_message_id[mid] in in_flight

    # The attempt log: one interrupted row per delivery in flight at the kill, one sent row each.
    per_delivery: dict[int, list[str]] = defaultdict(list)
    for row in log:
        per_delivery[row.delivery_id].append(row.outcome)
    interrupted = [row for row in log if row.outcome == "interrupted"]
    assert Counter(row.delivery_id for row in interrupted) == Counter(in_flight)
    assert all(row.worker == WORKER and f"lease of {WORKER}" in row.detail for row in interrupted)
    assert all(status == "sent" for _, status, _, _ in rows)
    for delivery_id, _, attempts, _ in rows:
        outcomes = per_delivery[delivery_id]
        assert outcomes.count("sent") == 1, (delivery_id, outcomes)
        assert outcomes == (["interrupted", "sent"] if delivery_id in in_flight else ["sent"]), outcomes
        assert attempts == len(outcomes)  # the lost attempt counts, and is in the log

    restart_log = (tmp_path / "second.log").read_text()
    assert f"{len(in_flight)} deliveries were in flight when {WORKER} last stopped" in restart_log
    print(  # for -s: what this run actually exercised
        f"\nkilled after {len(at_kill)} received; {len(in_flight)} in flight; "
        f"{sum(duplicated.values())} received twice; action {ACTION_ID}"
    )
