"""A PostgreSQL cluster of the test's own to stop and restart, and the socket a server listens on.
The cluster needs root (as in CI: it runs as the ``postgres`` user); without it the test is
skipped with the reason, or fails under DISPATCHER_REQUIRE_PG=1.

The private cluster has its own data directory, port and socket folder, so stopping it never
touches the shared server other tests use.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support.processes import free_port


def _pg_bin() -> Path:
    """DISPATCHER_TEST_PG_BIN, or the newest Debian-packaged server's binaries."""
    if os.environ.get("DISPATCHER_TEST_PG_BIN"):
        return Path(os.environ["DISPATCHER_TEST_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()


def _unavailable(what: str) -> None:
    if os.environ.get("DISPATCHER_REQUIRE_PG") == "1":
        pytest.fail(f"{what} (DISPATCHER_REQUIRE_PG=1)")
    pytest.skip(what)


class Cluster:
    """A PostgreSQL cluster of our own, run as the ``postgres`` user, reached by a Unix socket."""

    def __init__(self, root: Path) -> None:
        self.root, self.data, self.run = root, root / "data", root / "run"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@/postgres?host={self.run}&port={self.port}"

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            check=True,
            timeout=60,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def ctl(self, *args: str) -> None:
        log = str(self.root / "server.log")
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", log, "-w", *args)

    def init(self) -> None:
        self.run.mkdir()
        shutil.chown(self.root, "postgres")
        shutil.chown(self.run, "postgres")
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.run} -c listen_addresses='' -c fsync=off"
        self.ctl("start", "-o", options)

    def stop(self) -> None:
        self.ctl("stop", "-m", "fast")


@contextlib.contextmanager
def private_cluster() -> Iterator[Cluster]:
    if os.geteuid() != 0:
        _unavailable("a private PostgreSQL cluster needs root (to run it as the postgres user)")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        _unavailable("no postgres user to run a private PostgreSQL cluster as")
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        _unavailable(f"no PostgreSQL server binaries in {PG_BIN} (DISPATCHER_TEST_PG_BIN) or no runuser")
    # Under /tmp, not pytest's tmp_path: the postgres user must be able to reach it.
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="dispatcher-pg-")))
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            cluster.ctl("stop", "-m", "immediate")
        shutil.rmtree(cluster.root, ignore_errors=True)


def server_socket(url: str) -> str:
    """The Unix socket the server at ``url`` listens on."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            folder = conn.execute(text("SHOW unix_socket_directories")).scalar_one().split(",")[0].strip()
            port = conn.execute(text("SHOW port")).scalar_one()
    finally:
        engine.dispose()
    return f"{folder}/.s.PGSQL.{port}"
