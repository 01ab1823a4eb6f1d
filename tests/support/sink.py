"""An SMTP server in a process of its own (``python -m tests.support.smtp_server``), for tests that kill
or starve the dispatcher: it logs each accepted letter's Message-ID to a file before it answers,
so what reached it survives whatever happens to the client."""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.conftest import ROOT
from tests.support.processes import stop

SERVER_DELAY = 0.05  # seconds the server holds each 250 after logging the message


def start_smtp_server(
    out: Path, log: IO[bytes], delay: float = SERVER_DELAY
) -> tuple[subprocess.Popen[str], int]:
    """The server on a free loopback port, appending to ``out``; the process and its port."""
    command = [sys.executable, "-m", "tests.support.smtp_server", "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(
        [*command, "--out", str(out), "--delay", str(delay)],
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


@contextlib.contextmanager
def smtp_sink(tmp_path: Path, delay: float = SERVER_DELAY) -> Iterator[str]:
    """The server logging to ``tmp_path/received.txt`` (its own errors to ``smtp.log``); its URL."""
    with (tmp_path / "smtp.log").open("wb") as log:
        proc, port = start_smtp_server(tmp_path / "received.txt", log, delay)
        try:
            yield f"smtp://127.0.0.1:{port}"
        finally:
            stop(proc)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[str]:
    """A test's ``smtp_sink`` (import it as a fixture: ``from tests.support.sink import smtp as smtp``)."""
    with smtp_sink(tmp_path) as url:
        yield url


def received(out: Path) -> list[tuple[str, str]]:
    """(Message-ID, Reply-To) per accepted message; only complete lines."""
    if not out.exists():
        return []
    text = out.read_text(encoding="utf-8")
    lines = text.split("\n")[:-1]  # a last line without its newline is still being written
    return [(mid, reply_to) for mid, reply_to in (line.split("\t") for line in lines)]


def letters(tmp_path: Path) -> int:
    """How many messages the sink writing under ``tmp_path`` accepted so far, repeats counted."""
    return len(received(tmp_path / "received.txt"))


def all_received(tmp_path: Path, total: int) -> bool:
    return len({mid for mid, _ in received(tmp_path / "received.txt")}) >= total


def once_each(tmp_path: Path, total: int) -> None:
    counts = Counter(mid for mid, _ in received(tmp_path / "received.txt"))
    assert len(counts) == total
    assert {mid: n for mid, n in counts.items() if n > 1} == {}, "received twice"
