"""``dispatcher``: the command line for operators and staff."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import getpass
import logging
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from dispatcher import capabilities, controls, faxpdf, forecast, retention, why
from dispatcher.accounts import Role, check_name, hash_password
from dispatcher.catalogue import faxes
from dispatcher.channels import IMPLEMENTED, make_channels
from dispatcher.config import Action, ActionSet, Settings, Target, load_actions, load_settings
from dispatcher.display import deadline_text, time_left, when
from dispatcher.planner import effective
from dispatcher.render import SAMPLE_SIGNER, Letter, Renderer, RenderError
from dispatcher.sanitize import json_text, terminal_text
from dispatcher.scheduler import Dispatcher, utcnow
from dispatcher.sendlog import LOG_FIELDS, csv_chunks, log_values
from dispatcher.store import Signer, Status, Store, open_store
from dispatcher.store.accounts import AuditEntry
from dispatcher.store.faults import StoreUnavailable, cause, curable
from dispatcher.store.thread import FIRST_WAIT, MAX_WAIT
from dispatcher.supporters import KnownScopes, SupporterFileError, import_file, import_valid
from dispatcher.web.summary import action_rows

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


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail to stderr.")
def main(verbose: bool) -> None:
    """Send supporters' letters to the targets of urgent actions, by email (and fax)."""
    # Libraries stay at WARNING unless -v: fontTools alone logs thousands of INFO lines a fax run.
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("dispatcher").setLevel(logging.DEBUG if verbose else logging.INFO)


@main.command()
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


def incurable(exc: SQLAlchemyError) -> click.ClickException:
    """One line for a store error that waiting cannot cure; never the SQL or its parameters."""
    return click.ClickException(f"stopped: the store failed with an error retrying cannot cure: {cause(exc)}")


@main.command()
@pass_ctx
def check(ctx: Context) -> None:
    """Validate every action file and render every action × target × language, sending nothing."""
    loaded = load_actions(ctx.settings.actions_dir)
    renderer = Renderer(ctx.settings.templates_dir)
    problems = [str(e) for e in loaded.errors]
    font = _font_problem(ctx.settings.fax_font)
    for action in loaded.actions.values():
        _channel_notes(action)
        found = [
            f"{loaded.sources[action.id]}: {e}" for e in renderer.check(action, IMPLEMENTED, utcnow().date())
        ]
        if font and faxes(action, IMPLEMENTED):
            found.append(f"{action.id}: {font}")
        if found:  # no "ok" line for an action that will not send at all
            click.echo(f"held: {action.id}: {len(found)} problem(s), none of its letters will be sent")
            problems += found
            continue
        for target_id, via in action.delivery_pairs(IMPLEMENTED):
            language = renderer.language_for(action, action.target(target_id))
            click.echo(f"ok: {action.id} × {target_id} × {via} × {language}")
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        raise click.ClickException(f"{len(problems)} problem(s); affected actions will not send")
    click.echo(f"{len(loaded.actions)} actions checked, no problems")


def _channel_notes(action: Action) -> None:
    for target in action.targets:
        if not target.channels:
            click.echo(f"note: {action.id} × {target.id}: no channel, nothing will be sent to this target")
        for channel in target.channels:
            if channel not in IMPLEMENTED:
                click.echo(f"note: {action.id} × {target.id}: channel {channel} is not available yet")


def _font_problem(font: Path | None) -> str | None:
    try:
        faxpdf.find_font(font)
    except faxpdf.FontMissing as exc:
        return str(exc)
    return None


@main.command()
@pass_ctx
def actions(ctx: Context) -> None:
    """Every action: status, deadline in its time zone, time left, deliveries by status, and the
    fax pages submitted per provider (what providers bill)."""
    loaded = ctx.actions()
    store, now = ctx.store, utcnow()
    states, counts = store.action_states(), store.action_counts()
    pages: dict[str, list[str]] = {}
    for action_id, provider, total in store.fax_pages():
        pages.setdefault(action_id, []).append(f"{provider}:{total}")
    held = forecast.held(ctx.settings, utcnow, store.action_holds(now))
    dispatching = bool(forecast.running(store.workers(), now))
    queues = store.queue_counts()
    outlook = action_rows(loaded.actions, states, {}, {}, queues, ctx.settings, now, held, dispatching)
    rows = []
    for action, row in zip(loaded.actions.values(), outlook, strict=True):
        view = effective(action, states.get(action.id), now)
        label = view.label + (" [held: run dispatcher check]" if action.id in held else "")
        rows.append(
            [action.id, label, deadline_text(view.deadline, action.zone), time_left(view.deadline, now)]
            + [row.forecast]
            + [counts.get(action.id, {}).get(s, 0) for s in STATUSES]
            + [", ".join(pages.get(action.id, [])) or "-"]
        )
    table(["action", "status", "deadline", "left", "forecast", *STATUSES, "fax-pages"], rows)
    if not dispatching:
        silent = forecast.SILENT.seconds
        click.echo(f"no dispatcher running: none has reported in the last {silent} s", err=True)


@main.command()
@pass_ctx
def queue(ctx: Context) -> None:
    """Deliveries by action × target × channel × status, with the oldest due time."""
    rows = [
        [r.action_id, r.target_id, r.channel, r.status, r.count, when(r.oldest_due)]
        for r in ctx.store.queue_counts()
    ]
    table(["action", "target", "channel", "status", "count", "oldest due"], rows)


@main.command("why")
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


@main.command("log")
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


@main.command()
@click.argument("action_id")
@click.option("--target", "target_id", required=True, help="Target id.")
@click.option("--lang", "language", help="Language (default: as the dispatcher would choose).")
@click.option("--as", "signer_email", help="Render as this imported supporter (default: a sample signer).")
@click.option("--channel", type=click.Choice(list(capabilities.KINDS)), default="email", show_default=True)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --channel fax: the PDF file.",
)
@pass_ctx
def preview(
    ctx: Context,
    action_id: str,
    target_id: str,
    language: str | None,
    signer_email: str | None,
    channel: str,
    output: Path | None,
) -> None:
    """Print the letter ACTION_ID would send to one target (or write it as a fax PDF)."""
    action = ctx.action(action_id)
    try:
        target = action.target(target_id)
    except KeyError:
        raise click.ClickException(
            f"{action_id} has no target {target_id!r} (targets: {', '.join(t.id for t in action.targets)})"
        ) from None
    renderer = Renderer(ctx.settings.templates_dir)
    language = language or renderer.language_for(action, target)
    if language is None:
        raise click.ClickException(f"no template for {target_id} in any of its or the action's languages")
    signer: Signer = SAMPLE_SIGNER
    if signer_email:
        found = ctx.store.find_signer(signer_email)
        if found is None:
            raise click.ClickException(f"no supporter {signer_email}")
        signer = found
    now = utcnow()
    in_force = effective(action, ctx.store.action_states().get(action.id), now).deadline
    try:
        letter = renderer.render(action, target, language, signer, now.date(), in_force)
    except RenderError as exc:
        raise click.ClickException(str(exc)) from exc
    kind = capabilities.of(channel)
    if kind.pdf:
        _write_fax(action, target, letter, signer, output, ctx.settings.fax_font)
        return
    click.echo(f"To: {target.name} <{getattr(target, kind.address) or '-'}>")
    copies = [f"{c.name} <{getattr(c, kind.address)}>" for c in action.copies(channel)] if kind.copies else []
    if copies:
        click.echo(f"Cc: {', '.join(copies)}")
    click.echo(f"Subject: {letter.subject}\nLanguage: {letter.language}\n")
    click.echo(letter.body)


def _write_fax(
    action: Action, target: Target, letter: Letter, signer: Signer, output: Path | None, font: Path | None
) -> None:
    if output is None:
        raise click.ClickException("--channel fax writes a PDF: give --output FILE.pdf")
    if target.fax is None:
        raise click.ClickException(f"{target.id} has no fax number")
    try:
        found = faxpdf.find_font(font)
    except faxpdf.FontMissing as exc:
        raise click.ClickException(str(exc)) from None
    head = faxpdf.letterhead(action, target, signer, letter.language, utcnow().date())
    document = faxpdf.letter_pdf(letter, head, found)
    output.write_bytes(document.data)
    click.echo(f"{output}: fax to {head.to_fax}, {document.pages} page(s), {head.paper}, {letter.language}")


def _control(ctx: Context, action_id: str) -> tuple[Action, str, dt.datetime]:
    return ctx.action(action_id), getpass.getuser(), utcnow()


@contextlib.contextmanager
def _refused() -> Iterator[None]:
    """A control the action's state does not allow ends the command with its reason."""
    try:
        yield
    except controls.ControlError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.argument("action_id")
@pass_ctx
def pause(ctx: Context, action_id: str) -> None:
    """Stop sending ACTION_ID (running dispatchers stop within seconds); resume continues."""
    action, by, now = _control(ctx, action_id)
    with _refused():
        controls.pause(ctx.store, action, by, now)
    click.echo(f"{action_id} paused")


@main.command()
@click.argument("action_id")
@pass_ctx
def resume(ctx: Context, action_id: str) -> None:
    """Continue sending a paused action."""
    action, by, now = _control(ctx, action_id)
    with _refused():
        controls.resume(ctx.store, action, by, now)
    click.echo(f"{action_id} resumed")


@main.command()
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


@main.command()
@click.argument("action_id")
@pass_ctx
def release(ctx: Context, action_id: str) -> None:
    """Release ACTION_ID held after a letter failed to render while sending: running dispatchers
    check it again at their next plan and send unless it still fails."""
    action, by, now = _control(ctx, action_id)
    with _refused():
        controls.release(ctx.store, action, by, now)
    click.echo(f"{action_id}: hold released; dispatchers check it again at their next plan")


@main.command()
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


@main.command()
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


@main.group()
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
    _audit(ctx, "consent revoked", "a supporter", f"{cancelled} unsent letters cancelled")
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
    _audit(ctx, "supporter forgotten", "a supporter")
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
        _audit(ctx, "retention scrub", "", f"{sum(s.letters for s in done)} letters")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--header-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1, 300),
    help="Seconds a client has to send a request's headers before its connection is closed.",
)
@click.option(
    "--limit-concurrency",
    default=200,
    show_default=True,
    type=click.IntRange(1),
    help="Connections and requests at once; more are answered 503.",
)
@pass_ctx
def web(ctx: Context, host: str, port: int, header_timeout: float, limit_concurrency: int) -> None:
    """Serve the web app: the staff dashboard, supporters' opt-in and revoke pages, the CRM API,
    and fax providers' webhooks and the fax PDFs they fetch.

    Put it behind a TLS-terminating proxy at DISPATCHER_PUBLIC_URL: supporters' links and
    providers' webhooks use that URL. Accounts for the dashboard: dispatcher users add.
    """
    from dispatcher.web import app_for, server

    try:
        app = app_for(ctx.settings, ctx.store)
    except ValueError as exc:
        raise click.ClickException(f"settings: {exc}") from None
    if not ctx.settings.public_url:
        click.echo(
            "note: DISPATCHER_PUBLIC_URL is not set; providers cannot reach this app, and the "
            "opt-in pages take no sign-ups (their emailed links need the public URL)",
            err=True,
        )
    # Forwarded headers only from the proxies named in DISPATCHER_TRUSTED_PROXIES (client
    # addresses for rate limits and the audit log); webhook signatures always cover
    # DISPATCHER_PUBLIC_URL.
    proxies = ctx.settings.trusted_proxies.strip()
    server.run(app, host, port, proxies, header_timeout, limit_concurrency)
    ctx.store.close()


@main.group()
def users() -> None:
    """Accounts of the web app (viewer, operator, staff, admin)."""


def _password() -> str:
    # Never an argument: it would sit in the shell history and in ps for every user to read.
    if sys.stdin.isatty():
        return str(click.prompt("password", hide_input=True, confirmation_prompt=True))
    return sys.stdin.readline().rstrip("\r\n")


def _audit(ctx: Context, action: str, subject: str, detail: str = "") -> None:
    ctx.store.accounts.audit(AuditEntry(utcnow(), getpass.getuser(), "cli", action, subject, detail))


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
    _audit(ctx, "user added", name, role)
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
    _audit(ctx, "user removed", name)
    click.echo(f"removed {name}")


@users.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice([r.label for r in Role]))
@pass_ctx
def users_role(ctx: Context, name: str, role: str) -> None:
    """Change a user's role."""
    if not ctx.store.accounts.set_role(name, Role.named(role), utcnow()):
        raise click.ClickException(f"no user {name!r}")
    _audit(ctx, "role changed", name, role)
    click.echo(f"{name} is now {role}")


@main.group()
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
