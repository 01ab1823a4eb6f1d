"""Staff controls from the command line: pause, resume, close, release, reopen, extend."""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
from collections.abc import Iterator

import click

from dispatcher.actions import controls
from dispatcher.actions.model import Action
from dispatcher.cli.context import Context, pass_ctx
from dispatcher.display import when
from dispatcher.sending.runtime import utcnow


def _control(ctx: Context, action_id: str) -> tuple[Action, str, dt.datetime]:
    return ctx.action(action_id), getpass.getuser(), utcnow()


@contextlib.contextmanager
def _refused() -> Iterator[None]:
    """A control the action's state does not allow ends the command with its reason."""
    try:
        yield
    except controls.ControlError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.argument("action_id")
@pass_ctx
def pause(ctx: Context, action_id: str) -> None:
    """Stop sending ACTION_ID (running dispatchers stop within seconds); resume continues."""
    action, by, now = _control(ctx, action_id)
    with _refused():
        controls.pause(ctx.store, action, by, now)
    click.echo(f"{action_id} paused")


@click.command()
@click.argument("action_id")
@pass_ctx
def resume(ctx: Context, action_id: str) -> None:
    """Continue sending a paused action."""
    action, by, now = _control(ctx, action_id)
    with _refused():
        controls.resume(ctx.store, action, by, now)
    click.echo(f"{action_id} resumed")


@click.command()
@click.argument("action_id")
@pass_ctx
def close(ctx: Context, action_id: str) -> None:
    """Close ACTION_ID: its pending letters are cancelled (reopen takes it back within 24 hours)."""
    action, by, now = _control(ctx, action_id)
    with _refused():
        cancelled = controls.close(ctx.store, action, by, now)
    click.echo(f"{action_id} closed; {cancelled} pending deliveries cancelled")
    until = controls.reopen_until(action, ctx.store.action_states().get(action.id), now)
    if until is not None:
        click.echo(f"`dispatcher reopen {action_id}` takes it back until {when(until)}; then it is final")


@click.command()
@click.argument("action_id")
@pass_ctx
def release(ctx: Context, action_id: str) -> None:
    """Release ACTION_ID held after a letter failed to render while sending: running dispatchers
    check it again at their next plan and send unless it still fails."""
    action, by, now = _control(ctx, action_id)
    with _refused():
        controls.release(ctx.store, action, by, now)
    click.echo(f"{action_id}: hold released; dispatchers check it again at their next plan")


@click.command()
@click.argument("action_id")
@pass_ctx
def reopen(ctx: Context, action_id: str) -> None:
    """Take back a close of ACTION_ID made within the last 24 hours: its cancelled letters go out
    (once resumed, if it was paused before the close)."""
    action, by, now = _control(ctx, action_id)
    with _refused():
        revived = controls.reopen(ctx.store, action, by, now)
    click.echo(f"{action_id} reopened; {revived} cancelled deliveries back in the queue")
    if ctx.store.action_states()[action.id].status == "paused":
        click.echo(f"it stays paused, as it was before the close: `dispatcher resume {action_id}` sends them")


@click.command()
@click.argument("action_id")
@click.argument("deadline")
@pass_ctx
def extend(ctx: Context, action_id: str, deadline: str) -> None:
    """Move ACTION_ID's deadline to DEADLINE (a date = end of that day, or an ISO date-time)."""
    action, by, now = _control(ctx, action_id)
    try:
        until: dt.date | dt.datetime = (
            dt.datetime.fromisoformat(deadline)
            if "T" in deadline or " " in deadline
            else dt.date.fromisoformat(deadline)
        )
    except ValueError as exc:
        raise click.ClickException(f"{deadline!r} is not a date (2026-12-31) or date-time") from exc
    with _refused():
        revived = controls.extend(ctx.store, action, until, by, now)
    click.echo(f"{action_id} extended to {until}; {revived} expired deliveries back in the queue")


COMMANDS = (pause, resume, close, release, reopen, extend)
