"""What every command shares: the settings and store opened on first use, tables, errors."""

from __future__ import annotations

import getpass
import time
from collections.abc import Iterable, Sequence
from typing import Any

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from dispatcher.actions.files import ActionSet, load_actions
from dispatcher.actions.model import Action
from dispatcher.models import Status
from dispatcher.sanitize import terminal_text
from dispatcher.sending.runtime import utcnow
from dispatcher.settings import Settings, load_settings
from dispatcher.store import Store, open_store
from dispatcher.store.accounts import AuditEntry
from dispatcher.store.faults import cause, curable
from dispatcher.store.thread import FIRST_WAIT, MAX_WAIT

STATUSES = [s.value for s in Status]


class Context:
    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._store: Store | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings()
            except (ValueError, OSError) as exc:
                # The message names the variable or file, never a value (a URL may hold a password).
                raise click.ClickException(f"settings: {exc}") from None
        return self._settings

    @property
    def store(self) -> Store:
        if self._store is None:
            url = self.settings.database_url
            try:
                self._store = open_store(url, migrate=self.settings.auto_migrate)
            except (SQLAlchemyError, ValueError, ImportError, OSError) as exc:
                raise click.ClickException(f"database: {database_problem(url, exc)}") from None
        return self._store

    def store_when_up(self) -> Store:
        """``store`` for a long-running worker: a store that is down for now (``faults.curable``)
        is waited for, 1 s doubling to 30 s, as the running worker waits it out."""
        wait, url = FIRST_WAIT, self.settings.database_url
        while self._store is None:
            try:
                self._store = open_store(url, migrate=self.settings.auto_migrate)
            except SQLAlchemyError as exc:
                if not curable(exc):
                    raise click.ClickException(f"database: {database_problem(url, exc)}") from None
                if wait == FIRST_WAIT:
                    click.echo(f"database: {database_problem(url, exc)}; waiting for it", err=True)
                time.sleep(wait)
                wait = min(wait * 2, MAX_WAIT)
        return self._store

    def actions(self) -> ActionSet:
        loaded = load_actions(self.settings.actions_dir)
        for error in loaded.errors:
            click.echo(f"error: {error}", err=True)
        return loaded

    def action(self, action_id: str) -> Action:
        loaded = self.actions()
        if action_id not in loaded.actions:
            known = ", ".join(sorted(loaded.actions)) or "none"
            raise click.ClickException(
                f"no action {action_id!r} in {self.settings.actions_dir} (known: {known})"
            )
        return loaded.actions[action_id]


pass_ctx = click.make_pass_decorator(Context, ensure=True)


def database_problem(url: str, exc: Exception) -> str:
    """Why the database would not open, in one line, never with its password."""
    if isinstance(exc, ArgumentError):
        return "DISPATCHER_DATABASE_URL is not a database URL (sqlite:///path or postgresql://user@host/db)"
    try:
        parsed = make_url(url)
        where, password = parsed.render_as_string(hide_password=True), parsed.password
    except (ArgumentError, ValueError):
        # What failed to parse may be part of the password: say nothing of it.
        return "DISPATCHER_DATABASE_URL does not parse (percent-encode special characters in a password)"
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if password:
        first = first.replace(str(password), "***")
    return f"cannot open {where}: {first}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Rows of values, aligned; stored text may hold escape sequences, shown here escaped."""
    data = [[("" if v is None else terminal_text(str(v))) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in data)]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in data:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def incurable(exc: SQLAlchemyError) -> click.ClickException:
    """One line for a store error that waiting cannot cure; never the SQL or its parameters."""
    return click.ClickException(f"stopped: the store failed with an error retrying cannot cure: {cause(exc)}")


def audit(ctx: Context, action: str, subject: str, detail: str = "") -> None:
    ctx.store.accounts.audit(AuditEntry(utcnow(), getpass.getuser(), "cli", action, subject, detail))
