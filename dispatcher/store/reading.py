"""Read-only transactions: on SQLite they take no write lock (see ``engine.engine_for``), so a long
export or a dashboard page never stalls the senders."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import Connection, Engine

READ_OPTION = "dispatcher_read"  # an execution option the SQLite ``begin`` hook reads


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        conn.execution_options(**{READ_OPTION: True})
        with conn.begin():
            yield conn
