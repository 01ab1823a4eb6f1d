"""``dispatcher run`` workers as real processes: their settings, their letters, and a group of
them started and stopped together, each logging to its own file."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from dispatcher.sending.runtime import utcnow
from dispatcher.store import open_store
from tests.campaigns.test_email_smtp import people, write_action
from tests.conftest import ROOT
from tests.support.caps import NO_CAPS_ENV
from tests.support.processes import clean_env, dispatcher_executable, stop, wait_until


def worker_env(
    tmp_path: Path, db_url: str, smtp_url: str, smtp_timeout: str | None = "5", **extra: str
) -> dict[str, str]:
    """A worker's settings: this database, the demo action in ``tmp_path/actions``, this SMTP
    server (each command bounded by ``smtp_timeout``; None: the setting's default), ``extra``."""
    settings = {
        "DISPATCHER_SETTINGS": str(tmp_path / "no-settings.toml"),
        "DISPATCHER_DATABASE_URL": db_url,
        "DISPATCHER_ACTIONS_DIR": str(tmp_path / "actions"),
        "DISPATCHER_TEMPLATES_DIR": str(ROOT / "templates"),
        "DISPATCHER_OUTBOX": str(tmp_path / "outbox"),
        "DISPATCHER_SMTP_URL": smtp_url,
        # Every caller is about workers, leases and outages, most with pacing raised: caps lifted.
        **NO_CAPS_ENV,
    }
    if smtp_timeout is not None:
        settings["DISPATCHER_SMTP_TIMEOUT"] = smtp_timeout
    return clean_env(**(settings | extra))


def seed(db_url: str, tmp_path: Path, total: int) -> None:
    """The demo action written for ``worker_env``, and ``total`` supporters to send it for."""
    write_action(tmp_path / "actions")
    store = open_store(db_url)
    try:
        store.import_supporters(people(total), utcnow())
    finally:
        store.close()


def outcomes(db_url: str) -> Counter[str]:
    """How many attempts the store logged of each outcome (read once the workers are done)."""
    store = open_store(db_url, migrate=False)
    try:
        return Counter(a.outcome for a in store.attempt_log())
    finally:
        store.close()


async def run_once(env: dict[str, str]) -> str:
    """``dispatcher run --once`` with these settings (on top of this process's environment),
    awaited in a thread so that the test's own servers keep answering; what it logged."""
    command = [dispatcher_executable(), "run", "--once"]
    run = await asyncio.to_thread(
        subprocess.run, command, env={**os.environ, **env}, capture_output=True, timeout=60
    )
    return run.stderr.decode()


class Workers:
    """Real ``dispatcher run`` processes, each logging to ``tmp_path/<name>.log``; stopped at the end."""

    def __init__(self, tmp_path: Path, env: dict[str, str] | None = None) -> None:
        self.tmp_path, self.env = tmp_path, env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self, name: str, *args: str, worker_id: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """``dispatcher run --worker-id ID *args`` (ID: ``name`` unless given)."""
        env = env or self.env
        assert env is not None, "a worker needs its settings"
        command = [dispatcher_executable(), "run", "--worker-id", worker_id or name, *args]
        with (self.tmp_path / f"{name}.log").open("wb") as out:  # the child keeps its own copy
            proc = subprocess.Popen(command, cwd=self.tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text(encoding="utf-8")

    def logs(self) -> str:
        return "".join(self.log(name) for name in self.procs)

    def wait_for_outage(self, name: str, timeout: float) -> None:
        """Until the worker logged that it lost the store."""
        wait_until(lambda: "store unreachable" in self.log(name), timeout, "the outage to be logged")

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs.values())

    def terminate(self, name: str, within: float) -> float:
        """SIGTERM to one worker; the seconds it took to end (it must within ``within``)."""
        started = time.monotonic()
        self.procs[name].send_signal(signal.SIGTERM)
        self.procs[name].wait(timeout=within)
        return time.monotonic() - started

    def stop(self, sig: int = signal.SIGTERM) -> dict[str, int | None]:
        """Each still running stopped by ``sig``; every one's exit code."""
        return {name: stop(p, sig) for name, p in self.procs.items()}
