"""``dispatcher why``: one letter's state explained."""

from __future__ import annotations

import click

from dispatcher.cli.context import Context, pass_ctx
from dispatcher.display import when
from dispatcher.sanitize import terminal_text
from dispatcher.sending import why
from dispatcher.sending.runtime import utcnow


@click.command("why")
@click.argument("delivery_id", type=int, required=False)
@click.option("--action", "action_id", help="The letter's action (with --target and --email).")
@click.option("--target", "target_id", help="Its target.")
@click.option("--email", help="Its supporter's email.")
@pass_ctx
def why_command(
    ctx: Context, delivery_id: int | None, action_id: str | None, target_id: str | None, email: str | None
) -> None:
    """Why a letter went out, or has not, or never will: its state, consent and attempts."""
    ids = [delivery_id] if delivery_id is not None else _letters(ctx, action_id, target_id, email)
    for i, found in enumerate(ids):
        answer = why.explain(ctx.store, ctx.settings, found, utcnow)
        if answer is None:
            raise click.ClickException(f"no delivery {found}")
        click.echo("\n".join(terminal_text(line) for line in ["", *answer.lines()][0 if i else 1 :]))
        for row in answer.attempts:
            click.echo(terminal_text(f"  attempt at {when(row.finished_at)}: {row.outcome} {row.detail}"))


def _letters(ctx: Context, action_id: str | None, target_id: str | None, email: str | None) -> list[int]:
    if not (action_id and target_id and email):
        raise click.UsageError("give a DELIVERY_ID, or --action, --target and --email")
    found = ctx.store.reports.find_delivery(action_id, target_id, email)
    if not found:
        raise click.ClickException(f"no letter of {email} to {target_id} in {action_id}")
    return found
