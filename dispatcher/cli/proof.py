"""``dispatcher proof``: every letter of an action, sent to a staff address before launch."""

from __future__ import annotations

import asyncio
import getpass

import click

from dispatcher.cli.context import Context, pass_ctx
from dispatcher.sending import proof as proofs
from dispatcher.sending.runtime import utcnow


@click.command()
@click.argument("action_id")
@click.option("--to", "to", required=True, help="The staff address the proof goes to.")
@pass_ctx
def proof(ctx: Context, action_id: str, to: str) -> None:
    """Send every letter ACTION_ID would send (each target, channel, language and variant, faxes as PDF
    attachments), signed by a sample supporter, to the address --to instead, marked [PROOF].
    Nothing goes to a target, nothing is recorded as sent; drafts too."""
    action = ctx.action(action_id)
    now = utcnow()
    try:
        address = proofs.recipient(to, [action, *ctx.actions().actions.values()])
        sent = asyncio.run(
            proofs.send(ctx.settings, ctx.store, action, address, getpass.getuser(), "cli", now)
        )
    except proofs.ProofError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{action_id}: proof of {proofs.counted(sent)} sent to {address}")
