"""``dispatcher users``: the web app's accounts."""

from __future__ import annotations

import sys

import click

from dispatcher.accounts import Role, check_name, hash_password
from dispatcher.cli.context import Context, audit, pass_ctx, table
from dispatcher.sending.runtime import utcnow


@click.group()
def users() -> None:
    """Accounts of the web app (viewer, operator, staff, admin)."""


def _password() -> str:
    # Never an argument: it would sit in the shell history and in ps for every user to read.
    if sys.stdin.isatty():
        return str(click.prompt("password", hide_input=True, confirmation_prompt=True))
    return sys.stdin.readline().rstrip("\r\n")


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice([r.label for r in Role]), required=True)
@pass_ctx
def users_add(ctx: Context, name: str, role: str) -> None:
    """Add a user; the password is read from standard input, or prompted for."""
    try:
        hashed = hash_password(_password())
        check_name(name)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if ctx.store.accounts.credentials(name):
        raise click.ClickException(f"there is already a user {name!r}")
    ctx.store.accounts.add(name, Role.named(role), hashed, utcnow())
    audit(ctx, "user added", name, role)
    click.echo(f"added {name} ({role})")


@users.command("list")
@pass_ctx
def users_list(ctx: Context) -> None:
    """Every user and their role."""
    table(["user", "role"], [[u.name, u.role.label] for u in ctx.store.accounts.all_users()])


@users.command("remove")
@click.argument("name")
@pass_ctx
def users_remove(ctx: Context, name: str) -> None:
    """Remove a user; their sessions end at once."""
    if not ctx.store.accounts.remove(name):
        raise click.ClickException(f"no user {name!r}")
    audit(ctx, "user removed", name)
    click.echo(f"removed {name}")


@users.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice([r.label for r in Role]))
@pass_ctx
def users_role(ctx: Context, name: str, role: str) -> None:
    """Change a user's role."""
    if not ctx.store.accounts.set_role(name, Role.named(role), utcnow()):
        raise click.ClickException(f"no user {name!r}")
    audit(ctx, "role changed", name, role)
    click.echo(f"{name} is now {role}")
