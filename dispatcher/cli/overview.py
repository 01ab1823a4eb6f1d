"""``dispatcher actions`` and ``dispatcher queue``: where the actions and their letters stand."""

from __future__ import annotations

import click

from dispatcher.actions.planner import effective
from dispatcher.cli.context import STATUSES, Context, pass_ctx, table
from dispatcher.display import deadline_text, time_left, when
from dispatcher.sending import forecast
from dispatcher.sending.runtime import utcnow
from dispatcher.web.staff.summary import ActionRow, action_rows


@click.command()
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
    outlook = action_rows(
        loaded.actions,
        states,
        {},
        {},
        queues,
        ctx.settings,
        now,
        held,
        dispatching,
        loaded.actions,
        store.reports.cap_usage(now),
    )
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
    _last_letters(outlook)
    if not dispatching:
        silent = forecast.SILENT.seconds
        click.echo(f"no dispatcher running: none has reported in the last {silent} s", err=True)


def _last_letters(rows: list[ActionRow]) -> None:
    """Per target, when its last letter goes; a warning (stderr) where an active action's would
    miss the deadline, with what would fix it."""
    for row in rows:
        for outlook, words in zip(row.outlooks, row.targets, strict=True):
            if row.at_risk and not outlook.fits:
                click.echo(f"warning: {row.id} × {words}", err=True)
            else:
                click.echo(f"forecast: {row.id} × {words}")


@click.command()
@pass_ctx
def queue(ctx: Context) -> None:
    """Deliveries by action × target × channel × status, with the oldest due time."""
    rows = [
        [r.action_id, r.target_id, r.channel, r.status, r.count, when(r.oldest_due)]
        for r in ctx.store.queue_counts()
    ]
    table(["action", "target", "channel", "status", "count", "oldest due"], rows)
