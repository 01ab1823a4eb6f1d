"""How a run ends and what it costs when idle: ``--once`` always ends, an idle dispatcher
sleeps, and reading the log never stalls the senders."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from dispatcher.actions.files import load_actions
from dispatcher.actions.planner import plan_action
from dispatcher.channels import make_channels
from dispatcher.sending.feeder import IDLE_RECHECK
from dispatcher.sending.runtime import Dispatcher, utcnow
from dispatcher.settings import Settings
from dispatcher.store import Store, open_store
from tests.campaigns.test_campaign_shapes import LIFTED, run_once, settings, supporters, write_actions
from tests.conftest import cli_env
from tests.contract.world import until
from tests.support.processes import stop
from tests.support.smtp_server import ScriptedHandler, SmtpServer

CLI = [str(Path(sys.executable).with_name("dispatcher"))]


def env_for(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, **cli_env(tmp_path, tmp_path)}


async def test_once_ends_when_what_is_left_waits_for_a_retry(tmp_path: Path) -> None:
    write_actions(tmp_path, {"a": ["pres", "minister"], "b": ["judge"]})
    handler = ScriptedHandler()
    handler.fail(at="data", reply="451")
    with SmtpServer(handler) as smtp:
        config = settings(tmp_path, smtp.url, retry_initial=600.0)
        store = open_store(config.database_url)
        store.import_supporters(supporters(5), utcnow())
        dispatcher = await run_once(config, store, limit=30)
        store.close()
    assert dispatcher.tally.counts["retry"] == 15 and smtp.received() == []
    assert dispatcher.left.later == 15 and dispatcher.left.due_now == 0
    assert "15 wait for a retry" in dispatcher.left.line()


def counted(store: Store, calls: Counter[str], names: tuple[str, ...]) -> None:
    """Count the worker's calls of these store methods (patched on this store object only)."""
    for name in names:
        method = getattr(store, name)

        def call(*args: object, _name: str = name, _method: Any = method) -> object:
            calls[_name] += 1
            return _method(*args)

        setattr(store, name, call)


async def calls_when_idle(
    config: Settings, store: Store, names: tuple[str, ...], settled: Callable[[], Awaitable[object]]
) -> Counter[str]:
    """A worker running on ``store``: its calls of these store methods over IDLE_RECHECK + 1 s,
    counted once ``settled`` returns (start-up and what it sends are not idle)."""
    calls: Counter[str] = Counter()
    counted(store, calls, names)
    worker = Dispatcher(config, store, make_channels(config, store), worker_id="idle")
    running = asyncio.create_task(worker.run_forever())
    await settled()
    calls.clear()
    await asyncio.sleep(IDLE_RECHECK + 1)
    worker.stop()
    await asyncio.wait_for(running, 30)
    return calls


async def test_an_idle_worker_neither_claims_nor_polls_every_second(tmp_path: Path) -> None:
    write_actions(tmp_path, {"a": ["pres", "minister"], "b": ["judge"]})
    with SmtpServer() as smtp:
        config = settings(tmp_path, smtp.url, fax_outbox=tmp_path / "fax", **LIFTED)
        store = open_store(config.database_url)
        store.import_supporters(supporters(3), utcnow())
        await run_once(config, store)
        # Start-up: the first claim finds nothing.
        names = ("claim", "next_due", "submitted", "recover")
        calls = await calls_when_idle(config, store, names, lambda: asyncio.sleep(3))
        store.close()
    assert len(smtp.received()) == 9
    # One look at when the next letter is due per IDLE_RECHECK, instead of a claim every second.
    assert calls["claim"] <= 2 and calls["next_due"] <= 2, calls
    assert calls["submitted"] == 0 and calls["recover"] <= 2, calls


async def test_a_worker_whose_every_group_is_capped_sleeps_until_the_window_ends(tmp_path: Path) -> None:
    write_actions(tmp_path, {"a": ["pres", "minister"], "b": ["judge"]})
    with SmtpServer() as smtp:
        capped = {**LIFTED, "max_per_hour": 1}  # pacing lifted: only the hourly cap holds them
        config = settings(tmp_path, smtp.url, **capped)
        store = open_store(config.database_url)
        store.import_supporters(supporters(3), utcnow())

        async def sent_each_one() -> None:
            await until(lambda: len(smtp.received()) == 3, "one letter to each official")
            await asyncio.sleep(1)  # the claim that finds every group at its cap

        calls = await calls_when_idle(config, store, ("claim", "next_due"), sent_each_one)
        store.close()
    assert len(smtp.received()) == 3
    # The six letters left wait for the next hour: not a claim, not a look at the queue, until then.
    assert calls["claim"] == 0 and calls["next_due"] == 0, calls


async def test_letters_another_worker_planned_reach_an_idle_one(tmp_path: Path) -> None:
    write_actions(tmp_path, {"a": ["pres", "minister"]})
    with SmtpServer() as smtp:
        config = settings(tmp_path, smtp.url, **LIFTED)
        store = open_store(config.database_url)
        store.import_supporters(supporters(2), utcnow())
        worker = Dispatcher(config, store, make_channels(config, store), worker_id="idle")
        running = asyncio.create_task(worker.run_forever())
        await until(lambda: len(smtp.received()) == 4, "the first letters sent")
        await asyncio.sleep(2)  # idle now, and quiet
        other = open_store(config.database_url)
        other.import_supporters(supporters(3, start=2), utcnow())
        action = load_actions(config.actions_dir).actions["a"]
        assert await asyncio.to_thread(plan_action, other, action, ("email",), utcnow()) == 6
        sent = lambda: len(smtp.received()) == 10  # noqa: E731
        await until(sent, "the letters planned elsewhere sent", within=IDLE_RECHECK + 5)
        worker.stop()
        await asyncio.wait_for(running, 30)
        other.close()
        store.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_idle_dispatcher_uses_no_measurable_cpu(tmp_path: Path) -> None:
    write_actions(tmp_path, {"a": ["pres", "minister"], "b": ["judge", "amb:cc"]})
    (tmp_path / "s.csv").write_text(
        "email,name,language,city,country,scope,channels,consent_version,opted_in_at\n"
        "x@example.net,X,en,,,all,email;fax,v1,2025-01-01T00:00:00+00:00\n"
    )
    env = env_for(tmp_path)
    subprocess.run([*CLI, "supporters", "import", str(tmp_path / "s.csv")], env=env, check=True)
    subprocess.run([*CLI, "run", "--once"], env=env, check=True, capture_output=True)
    daemon = subprocess.Popen([*CLI, "run"], env=env, stderr=subprocess.DEVNULL)
    try:
        settled(daemon.pid)
        before = cpu_seconds(daemon.pid)
        time.sleep(5)
        used = cpu_seconds(daemon.pid) - before
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    assert used < 0.1, f"an idle dispatcher used {used:.2f} s of CPU in 5 s"


def settled(pid: int) -> None:
    """Wait out start-up and the first plan, which are not idle: on a loaded machine they take
    longer than any fixed sleep, so wait for a quiet second instead (a busy loop never has one)."""
    deadline = time.monotonic() + 60
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(1)
        now = cpu_seconds(pid)
        if now - last < 0.02 and now > 0.2:  # quiet, and past the interpreter's start
            return
        last = now
    raise AssertionError("the dispatcher never settled: it is busy without letters to send")


async def test_a_long_log_export_never_stalls_the_senders(tmp_path: Path) -> None:
    write_actions(tmp_path, {"a": ["pres"]})
    with SmtpServer() as smtp:
        config = settings(tmp_path, smtp.url, **LIFTED)
        store = open_store(config.database_url)
        store.import_supporters(supporters(1500), utcnow())
        await run_once(config, store)
        # A reader that stops reading: the export blocks on a full pipe half-way through.
        reader = subprocess.Popen(  # noqa: ASYNC220 - started and left alone, never waited on here
            [*CLI, "log", "--format", "csv"], env=env_for(tmp_path), stdout=subprocess.PIPE
        )
        try:
            await asyncio.sleep(2)
            assert reader.poll() is None, "the export should still be writing"
            store.import_supporters(supporters(200, start=1500), utcnow())
            started = time.monotonic()
            await run_once(config, store, limit=60)
            took = time.monotonic() - started
        finally:
            stop(reader, signal.SIGKILL)  # its pipe closed too
        store.close()
    assert len(smtp.received()) == 1700
    assert took < 15, f"sending waited {took:.0f} s on the export"


async def test_letters_handed_back_for_waiting_too_long_still_go_out_in_the_same_run(tmp_path: Path) -> None:
    # A slow server and one connection: letters in hand wait past START_WITHIN, go back
    # unattempted, and are claimed again; --once must not end while they are due.
    write_actions(tmp_path, {"a": ["pres", "minister"]})
    with SmtpServer(ScriptedHandler(delay=0.4)) as smtp:
        config = settings(tmp_path, smtp.url, smtp_pool=1, **LIFTED)
        store = open_store(config.database_url)
        store.import_supporters(supporters(5), utcnow())
        dispatcher = await run_once(config, store, limit=90)
        attempts = list(store.attempt_log())
        store.close()
        received = smtp.received()
    assert len(received) == 10 and len({r.message_id for r in received}) == 10
    assert [a.outcome for a in attempts] == ["sent"] * 10
    assert dispatcher.left.due_now == 0 and dispatcher.tally.counts["handed back"] > 0
