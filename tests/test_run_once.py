"""How a run ends and what it costs when idle: ``--once`` always ends, an idle dispatcher
sleeps, and reading the log never stalls the senders."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from dispatcher.sending.runtime import utcnow
from dispatcher.store import open_store
from tests.conftest import cli_env
from tests.smtp_server import ScriptedHandler, SmtpServer
from tests.test_campaign_shapes import LIFTED, run_once, settings, supporters, write_actions

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
        time.sleep(4)  # start-up and the first plan are not idle
        before = cpu_seconds(daemon.pid)
        time.sleep(5)
        used = cpu_seconds(daemon.pid) - before
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    assert used < 0.1, f"an idle dispatcher used {used:.2f} s of CPU in 5 s"


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
            reader.kill()
            reader.wait()
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
