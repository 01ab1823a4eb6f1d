"""The two databases the store runs on: their engines, and every place their SQL differs.

Queries elsewhere in the store do not ask which database they talk to; only the column types
(schema.py), erasure (``privacy.wiping``: SQLite's secure_delete, PostgreSQL's VACUUM) and
Alembic's env.py still do. Where the two differ:
- writers: PostgreSQL locks rows (``FOR UPDATE``, ``SKIP LOCKED`` for claims, which SQLAlchemy
  leaves out on SQLite); SQLite has one writer at a time, each write transaction taking the
  file's lock up front (``BEGIN IMMEDIATE``, see ``engine_for``), so those clauses need no
  counterpart there, and neither do ``wait_for_locks``, ``exclude_writers`` or ``one_writer``.
- ``dialect_insert``: each dialect has its own ``INSERT … ON CONFLICT``.
- clocks and durations: ``clock_before``, ``seconds_between``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Float,
    Interval,
    Table,
    Text,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql import ColumnElement

from dispatcher.store.reading import READ_OPTION, reading
from dispatcher.store.schema import UTCDateTime

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


Bind = Connection | Engine
_LOCK_NOT_AVAILABLE = "55P03"


def is_postgres(bind: Bind) -> bool:
    return bind.dialect.name == "postgresql"


def dialect_insert(bind: Bind, table: Table) -> Any:
    """``INSERT`` with the dialect's ``on_conflict_do_nothing`` / ``on_conflict_do_update``.

    Typed Any: the two dialects' statements differ in type but not in the calls made on them."""
    return (postgresql if is_postgres(bind) else sqlite).insert(table)


def keyed_values(bind: Bind, name: str, values: Mapping[str, float]) -> Any:
    """``values`` as rows (key, value) from one JSON parameter, to join an ``UPDATE … FROM`` on:
    one statement of the same text for any number of keys (a CASE of one branch per key cost
    more to build and run than the update; SQLite ran a correlated json_each per row)."""
    param = bindparam(name, json.dumps(values), type_=Text)
    if is_postgres(bind):
        rows = func.jsonb_each_text(cast(param, postgresql.JSONB)).table_valued("key", "value")
        return select(rows.c.key, cast(rows.c.value, Float).label("value")).subquery(name)
    return func.json_each(param).table_valued("key", "value").alias(name)


def wait_for_locks(conn: Connection, wait: str) -> None:
    """Wait at most ``wait`` (``"1s"``) for a row or table lock in this transaction, instead of
    LOCK_WAIT. SQLite takes its one lock at BEGIN, waiting busy_timeout for it."""
    if is_postgres(conn):
        conn.execute(select(func.set_config("lock_timeout", wait, True)))


def exclude_writers(conn: Connection, table: Table, wait: str) -> bool:
    """Wait (at most ``wait``) until every transaction writing ``table`` has ended, and keep new
    ones out until this one ends; False if that took too long. SQLite: its write transactions
    already exclude each other."""
    if not is_postgres(conn):
        return True
    wait_for_locks(conn, wait)
    try:
        conn.exec_driver_sql(f"LOCK TABLE {table.name} IN SHARE MODE")
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
            raise
        return False
    return True


def one_writer(conn: Connection, key: str) -> None:
    """Until this transaction ends, no other takes ``key`` (PostgreSQL: an advisory lock on its
    hash; SQLite has one writer anyway)."""
    if is_postgres(conn):
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))


def clock_before(bind: Bind, now: dt.datetime, span: dt.timedelta) -> ColumnElement[dt.datetime]:
    """``span`` before ``now``, or before the store's clock if that is behind: a worker whose
    clock runs ahead neither forgets nor gives up on the others early (times written are each
    writer's clock)."""
    if not is_postgres(bind):  # a file on this host: the store's clock is this host's
        return literal(min(now, dt.datetime.now(dt.UTC)) - span, UTCDateTime())
    return func.least(literal(now, UTCDateTime()), func.now()) - literal(span, Interval())


def seconds_between(
    bind: Bind, start: ColumnElement[dt.datetime], end: ColumnElement[dt.datetime]
) -> ColumnElement[float]:
    """``end - start`` in seconds, computed by the database."""
    if not is_postgres(bind):  # naive UTC text; julianday keeps milliseconds
        days = func.julianday(end) - func.julianday(start)
        return cast(func.round(days * 86400.0, 3), Float)
    # date_part gives a float8; extract() a numeric, slower to compare and sum.
    return cast(func.date_part("epoch", end - start), Float)


class SqlPart:
    """What every part of ``SqlStore`` works with: the engine. The parts reached as attributes
    (accounts, people, privacy, reports) are built around the store's; ``SqlStore`` opens its own."""

    engine: Engine

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _read(self) -> contextlib.AbstractContextManager[Connection]:
        return reading(self.engine)
