"""Real processes a test starts and must stop: free loopback ports, the ``dispatcher`` console
script, waiting for a condition, and stopping a process by its pid (never by name)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the moment of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def dispatcher_executable() -> str:
    """The installed ``dispatcher`` command (beside this Python first); skips the test without it."""
    beside = Path(sys.executable).with_name("dispatcher")
    found = str(beside) if beside.exists() else shutil.which("dispatcher")
    if not found:
        pytest.skip("the dispatcher console script is not installed")
    return found


# The suite runs at any hour of any day and sees its letters within seconds: faxes go whenever a
# test runs, and letters go as the caps allow rather than spread to deadlines years away, unless
# the test is about office hours or the spread and says its own (these settings, or its action
# file's plan). tests/conftest.py makes them the defaults of the settings tests build and of the
# commands they start.
CLOCK_FREE = {"DISPATCHER_FAX_OFFICE_HOURS": "always", "DISPATCHER_SPREAD": "asap"}


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any ``DISPATCHER_`` setting of its own, plus ``settings``:
    a child sees only what the test gives it (and ``CLOCK_FREE`` unless it says otherwise)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    return inherited | CLOCK_FREE | settings


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


async def until(predicate: Callable[[], bool], within: float, what: str) -> None:
    """``wait_until`` for a test whose own event loop must keep running meanwhile."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


def stop(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None, sig: int = signal.SIGTERM
) -> int | None:
    """Stop a process we started (this one only, by its pid): ``sig``, then SIGKILL if it lingers;
    its pipes closed; its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    return proc.returncode
