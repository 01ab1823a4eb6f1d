"""``dispatcher log``: the per-target send log."""

from __future__ import annotations

import sys

import click

from dispatcher.cli.context import Context, pass_ctx, table
from dispatcher.display import when
from dispatcher.sanitize import json_text
from dispatcher.sending.sendlog import LOG_FIELDS, csv_chunks, log_values


@click.command("log")
@click.option("--action", "action_id", help="Only this action.")
@click.option("--target", "target_id", help="Only this target.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@click.option(
    "--summary", is_flag=True, help="Print the count to report to officials instead of every attempt."
)
@pass_ctx
def send_log(ctx: Context, action_id: str | None, target_id: str | None, fmt: str, summary: bool) -> None:
    """The per-target send log: every attempt, its outcome and the server's reply."""
    if summary:
        # Letters, not attempts: a letter resent after a crash is counted once.
        counts = ctx.store.sent_counts(action_id)
        table(
            ["action", "target", "channel", "letters sent"],
            [
                [c.action_id, c.target_id, c.channel, c.letters]
                for c in counts
                if target_id in (None, c.target_id)
            ],
        )
        pages = [row for row in ctx.store.fax_pages() if action_id in (None, row[0])]
        if pages:
            click.echo()
            table(["action", "fax provider", "pages sent"], pages)
        return
    rows = ctx.store.attempt_log(action_id, target_id)
    if fmt == "csv":
        for chunk in csv_chunks(LOG_FIELDS, (log_values(r) for r in rows)):
            sys.stdout.write(chunk)
    elif fmt == "json":
        click.echo("[", nl=False)
        for i, r in enumerate(rows):
            record = dict(zip(LOG_FIELDS, log_values(r), strict=True))
            click.echo(("," if i else "") + "\n" + json_text(record), nl=False)
        click.echo("\n]")
    else:
        table(
            ["attempt", "delivery", "action", "target", "channel", "finished", "outcome", "code", "detail"],
            (
                [
                    r.id,
                    r.delivery_id,
                    r.action_id,
                    r.target_id,
                    r.channel,
                    when(r.finished_at),
                    r.outcome,
                    r.code,
                    r.detail[:80],
                ]
                for r in rows
            ),
        )
