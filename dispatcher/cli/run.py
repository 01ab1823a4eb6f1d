"""``dispatcher run``: plan and send, until stopped or once."""

from __future__ import annotations

import asyncio

import click
from sqlalchemy.exc import SQLAlchemyError

from dispatcher.channels import make_channels
from dispatcher.cli.context import Context, incurable, pass_ctx
from dispatcher.sending.runtime import Dispatcher
from dispatcher.store.faults import StoreUnavailable


@click.command()
@click.option("--once", is_flag=True, help="Plan and send what is due now, then exit (for cron and tests).")
@click.option(
    "--worker-id",
    help="Name of this worker; a restart under the same id resends its in-flight letters at once.",
)
@pass_ctx
def run(ctx: Context, once: bool, worker_id: str | None) -> None:
    """Plan deliveries and send them, until stopped with SIGTERM or Ctrl-C."""
    # A worker waits for its store; a cron job (--once) fails at once rather than pile up.
    settings, store = ctx.settings, ctx.store if once else ctx.store_when_up()
    try:
        channels = make_channels(settings, store)
    except ValueError as exc:  # names the missing settings, never a value
        raise click.ClickException(f"settings: {exc}") from None
    except SQLAlchemyError as exc:  # its message holds the SQL's parameters: the secret, say
        raise incurable(exc) from None
    dispatcher = Dispatcher(settings, store, channels, worker_id=worker_id, progress=2.0 if once else 60.0)
    where = str(settings.smtp_url) if settings.smtp_url else f"Maildir {settings.outbox}"  # no password
    click.echo(f"sending email via {where}", err=True)
    if settings.fax_provider == "file":  # say plainly that these faxes reach no fax machine
        click.echo(
            f"sending fax via the file provider: PDFs into {settings.fax_outbox}, nothing is dialled",
            err=True,
        )
    else:
        click.echo(f"sending fax via {settings.fax_provider}; webhooks to {settings.public_url}", err=True)
    try:
        tally = asyncio.run(dispatcher.run_once() if once else dispatcher.run_forever())
    except StoreUnavailable as exc:  # stopped (SIGTERM) while the store was down
        raise click.ClickException(f"stopped: {exc}") from None
    except SQLAlchemyError as exc:  # not curable by waiting (faults.curable): say so and end
        raise incurable(exc) from None
    # --once sends what is due now at the paced rate; retries due later wait for the next run.
    click.echo(f"{tally.line()}; {dispatcher.left.line()}" if once else tally.line(), err=True)
    store.close()
