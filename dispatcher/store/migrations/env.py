"""Alembic environment: runs against the engine the store hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, text

from dispatcher.store.schema import metadata

engine: Engine = context.config.attributes["engine"]

with engine.begin() as connection:
    if connection.dialect.name == "postgresql":
        # Several workers may start at once; only one of them migrates, the others wait.
        connection.execute(text("SELECT pg_advisory_xact_lock(727274)"))
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
