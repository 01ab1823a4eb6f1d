"""``dispatcher supporters``: import, revoke, export, forget, scrub."""

from __future__ import annotations

from pathlib import Path

import click

from dispatcher.cli.context import Context, audit, pass_ctx, table
from dispatcher.display import when
from dispatcher.people import retention
from dispatcher.people.csv_import import KnownScopes, SupporterFileError, import_file, import_valid
from dispatcher.sanitize import json_text
from dispatcher.sending.runtime import utcnow


@click.group()
def supporters() -> None:
    """Supporters who opted in to letters in their name."""


@supporters.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--skip-invalid", is_flag=True, help="Import the good rows; write the bad ones to --rejects.")
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where --skip-invalid writes the bad rows with their problems (default: PATH.rejected.csv).",
)
@pass_ctx
def supporters_import(ctx: Context, path: Path, skip_invalid: bool, rejects: Path | None) -> None:
    """Import supporters from a CSV file; a file with any bad row imports nothing, unless
    --skip-invalid."""
    known = KnownScopes.of(ctx.actions().actions.values())
    progress = lambda n: click.echo(f"… {n} rows", err=True)  # noqa: E731
    try:
        if skip_invalid:
            rejects = rejects or path.with_suffix(".rejected.csv")
            written, bad = import_valid(ctx.store, path, known, utcnow(), rejects, progress)
            click.echo(f"{bad} rows rejected: see {rejects}", err=True)
        else:
            written = import_file(ctx.store, path, known, utcnow(), progress=progress)
    except SupporterFileError as exc:
        for problem in exc.problems:
            click.echo(f"{path}: {problem}", err=True)
        raise click.ClickException(str(exc)) from exc
    click.echo(f"imported {written} supporters from {path} ({ctx.store.supporter_count()} in the store)")


@supporters.command("revoke")
@click.argument("email")
@pass_ctx
def supporters_revoke(ctx: Context, email: str) -> None:
    """Withdraw EMAIL's consent: nothing more is sent in their name, running dispatchers too."""
    cancelled = ctx.store.people.revoke(email, utcnow(), "cli")
    if cancelled is None:
        raise click.ClickException("no supporter with that email")
    # The audit log names the person by nothing: "forget" must leave no trace of them.
    audit(ctx, "consent revoked", "a supporter", f"{cancelled} unsent letters cancelled")
    click.echo(f"consent withdrawn; {cancelled} unsent letters cancelled")


@supporters.command("export")
@click.argument("email")
@pass_ctx
def supporters_export(ctx: Context, email: str) -> None:
    """Print everything held about EMAIL as JSON, with the letters sent in their name."""
    held = ctx.store.people.export(email)
    if held is None:
        raise click.ClickException("no supporter with that email")
    click.echo(json_text(held))


@supporters.command("forget")
@click.argument("email")
@pass_ctx
def supporters_forget(ctx: Context, email: str) -> None:
    """Erase EMAIL: their details, consents and unsent letters; the letters already sent stay
    as anonymous counts for their targets."""
    if not ctx.store.people.forget(email, utcnow()):
        raise click.ClickException("no supporter with that email")
    audit(ctx, "supporter forgotten", "a supporter")
    click.echo("forgotten: details, consents and unsent letters erased")


@supporters.command("scrub")
@click.option("--dry-run", is_flag=True, help="Only count the letters that would be scrubbed.")
@pass_ctx
def supporters_scrub(ctx: Context, dry_run: bool) -> None:
    """Apply DISPATCHER_RETENTION_DAYS now: the letters of actions closed longer ago stop naming
    their supporter (the counts per target stay); their supporters' own words are deleted."""
    days = ctx.settings.retention_days
    if days is None:
        raise click.ClickException("DISPATCHER_RETENTION_DAYS is not set: supporters' details are kept")
    done = retention.scrub(ctx.store, days, ctx.actions().actions, utcnow(), dry_run=dry_run)
    rows = [[s.action_id, when(s.closed_at), s.letters] for s in done if s.letters]
    if not rows:
        click.echo("nothing to scrub")
        return
    table(["action", "closed", "would scrub" if dry_run else "letters scrubbed"], rows)
    if not dry_run:
        audit(ctx, "retention scrub", "", f"{sum(s.letters for s in done)} letters")
