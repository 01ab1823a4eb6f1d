"""``dispatcher web`` as a real process on a loopback port: started, up once /healthz answers,
stopped by its pid at the end."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from tests.support.processes import dispatcher_executable, free_port


def wait_until_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("dispatcher web did not start")


@dataclass
class WebProcess:
    url: str
    port: int
    stderr: bytes = b""  # what it wrote there, once stopped (when asked to keep it)


@contextlib.contextmanager
def dispatcher_web(
    env: dict[str, str], *flags: str, port: int | None = None, keep_stderr: bool = False
) -> Iterator[WebProcess]:
    """``dispatcher web --port PORT *flags`` (PORT: a free one unless given) with ``env``."""
    port = port or free_port()
    command = [dispatcher_executable(), "web", "--port", str(port), *flags]
    err = subprocess.PIPE if keep_stderr else subprocess.DEVNULL
    proc = subprocess.Popen(command, env=env, stderr=err)
    web = WebProcess(f"http://127.0.0.1:{port}", port)
    try:
        wait_until_up(web.url, proc)
        yield web
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
        web.stderr = stderr or b""
