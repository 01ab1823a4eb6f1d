"""``dispatcher db``: the database schema."""

from __future__ import annotations

import click

from dispatcher.cli.context import Context, pass_ctx


@click.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Context) -> None:
    """Apply migrations (also done automatically unless DISPATCHER_AUTO_MIGRATE=0)."""
    from dispatcher.store.migrate import current, upgrade
    from dispatcher.store.sql import engine_for

    engine = engine_for(ctx.settings.database_url)
    upgrade(engine)
    click.echo(f"database at revision {current(engine)}")
