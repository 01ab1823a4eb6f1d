"""Alembic environment: runs against the engine the store hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, Engine, text

from dispatcher.store.schema import metadata

engine: Engine = context.config.attributes["engine"]


def _foreign_keys(connection: Connection, on: bool) -> None:
    """SQLite rebuilds a table to alter it (batch mode): with foreign keys enforced, dropping the
    old table would cascade and delete, or null, every row that refers to it. Off while
    migrating, outside any transaction (the pragma is ignored inside one), checked after."""
    raw = connection.connection.driver_connection
    raw.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")  # type: ignore[union-attr]


with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        _foreign_keys(connection, on=False)
    with connection.begin():
        if connection.dialect.name == "postgresql":
            # Several workers may start at once; only one of them migrates, the others wait.
            connection.execute(text("SELECT pg_advisory_xact_lock(727274)"))
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=sqlite)
        with context.begin_transaction():
            context.run_migrations()
        if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").all()):
            raise RuntimeError(f"the migration left rows pointing nowhere: {broken[:5]}")
    if sqlite:
        _foreign_keys(connection, on=True)
