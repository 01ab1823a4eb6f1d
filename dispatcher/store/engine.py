"""Engines for the two databases the store runs on, and what every part of ``SqlStore`` shares."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url

from dispatcher.store.reading import READ_OPTION, reading

# PostgreSQL sessions: a transaction left idle this long (its process frozen: SIGSTOP, a VM
# pause) is ended by the server, and its row locks with it; no transaction of ours idles for more
# than milliseconds. No lock is waited for longer than LOCK_WAIT: a stuck holder becomes an error
# in the log instead of a silent hang. The database URL's own ``options`` win over these.
IDLE_IN_TRANSACTION = 5.0  # seconds
LOCK_WAIT = 30.0  # seconds
# A server that stops answering (a partition drops packets, no reset) is an error within seconds,
# so the outage logic starts and SIGTERM can end the worker: connecting gives up after
# connect_timeout; an idle connection is probed after 5 s and dropped after 3 unanswered probes;
# data unacknowledged for 15 s drops the connection. The URL's own parameters win over these.
SILENT_SERVER = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 15000,  # milliseconds
}


def _owner_only(database: str) -> None:
    """Create the SQLite file (and its folder) readable by its owner alone, or tighten it.

    It holds supporters' names and addresses and the Message-ID secret. SQLite gives its -wal and
    -shm files the database file's permissions.
    """
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)


def engine_for(url: str) -> Engine:
    # hide_parameters: errors are logged and printed, and their parameters hold supporters'
    # addresses and the Message-ID secret.
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        # psycopg 3 is the driver we ship; SQLAlchemy would otherwise look for psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() != "sqlite":
        return _postgres_engine(parsed)
    if parsed.database and parsed.database != ":memory:":
        _owner_only(parsed.database)
    engine = create_engine(
        parsed, hide_parameters=True, connect_args={"timeout": 30, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" below decide transactions, not the sqlite3 module.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed attempt survives power loss, not only a killed process.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A write takes the lock up front (IMMEDIATE), so two processes claiming from one file
        # serialise instead of both reading the same pending rows. A read takes no lock: under
        # WAL it sees a snapshot, and a long export never stalls the senders.
        read = conn.get_execution_options().get(READ_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")

    return engine


def _postgres_engine(url: URL) -> Engine:
    ours = f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION:g}s -c lock_timeout={LOCK_WAIT:g}s"
    own = url.query.get("options")
    own = " ".join(own) if isinstance(own, tuple) else own
    # Later settings win: the operator's options come after ours.
    options = f"{ours} {own}" if own else ours
    url = url.difference_update_query(["options"])
    # The URL's own values win over ours (SQLAlchemy lets connect_args win, so leave them out).
    silence = {k: v for k, v in SILENT_SERVER.items() if k not in url.query}
    connect_args = {"options": options, **silence}
    return create_engine(url, pool_pre_ping=True, hide_parameters=True, connect_args=connect_args)


class SqlPart:
    """What every part of ``SqlStore`` works with: the engine and its dialect's name."""

    engine: Engine
    dialect: str

    def _read(self) -> contextlib.AbstractContextManager[Connection]:
        return reading(self.engine)

    def _insert(self, table: Any) -> Any:
        module = postgresql if self.dialect == "postgresql" else sqlite
        return module.insert(table)
