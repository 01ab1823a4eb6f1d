"""A PostgreSQL server that falls silent (a partition: no reset, no answer) must not hang the
worker: the outage logic starts within seconds, and SIGTERM still ends it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.support.postgres import server_socket
from tests.support.processes import wait_until
from tests.support.silent_proxy import silent_proxy
from tests.support.sink import letters
from tests.support.sink import smtp as smtp  # a fixture
from tests.support.workers import Workers, seed, worker_env


@pytest.mark.slow
@pytest.mark.postgres
def test_a_silent_database_starts_the_outage_logic_and_sigterm_ends_the_worker(
    tmp_path: Path, pg_url: str, smtp: str
) -> None:
    seed(pg_url, tmp_path, 200)
    with silent_proxy(server_socket(pg_url)) as proxy:
        database = make_url(pg_url).database
        proxied = f"postgresql+psycopg://root@127.0.0.1:{proxy.port}/{database}"
        workers = Workers(tmp_path, worker_env(tmp_path, proxied, smtp, DISPATCHER_RATE_PER_TARGET="5"))
        try:
            workers.start("w1")
            wait_until(lambda: letters(tmp_path) >= 3, 30, "3 letters")
            proxy.silence()
            workers.wait_for_outage("w1", 20)
            # The stop's grace, then each store call still waiting gives up after one connect timeout.
            assert workers.terminate("w1", 45) < 35
        finally:
            workers.stop()
    assert "stopping without the store" in workers.log("w1"), workers.log("w1")
