"""A PostgreSQL server that falls silent (a partition: no reset, no answer) must not hang the
worker: the outage logic starts within seconds, and SIGTERM still ends it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.silent_proxy import silent_proxy
from tests.test_kill import received, wait_until
from tests.test_outage import Workers, run_env, seed
from tests.test_outage import smtp as smtp  # a fixture


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


@pytest.mark.slow
@pytest.mark.postgres
def test_a_silent_database_starts_the_outage_logic_and_sigterm_ends_the_worker(
    tmp_path: Path, pg_url: str, smtp: int
) -> None:
    seed(pg_url, tmp_path, 200)
    with silent_proxy(server_socket(pg_url)) as proxy:
        database = make_url(pg_url).database
        proxied = f"postgresql+psycopg://root@127.0.0.1:{proxy.port}/{database}"
        workers = Workers(tmp_path, run_env(tmp_path, proxied, smtp, DISPATCHER_RATE_PER_TARGET="5"))
        try:
            workers.start("w1")
            wait_until(lambda: len(received(tmp_path / "received.txt")) >= 3, 30, "3 letters")
            proxy.silence()
            wait_until(lambda: "store unreachable" in workers.log("w1"), 20, "the outage to be logged")
            started = time.monotonic()
            workers.procs["w1"].send_signal(signal.SIGTERM)
            # The stop's grace, then each store call still waiting gives up after one connect timeout.
            workers.procs["w1"].wait(timeout=45)
            assert time.monotonic() - started < 35
        finally:
            workers.stop()
    assert "stopping without the store" in workers.log("w1"), workers.log("w1")
