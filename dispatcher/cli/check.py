"""``dispatcher check``: every action file validated and rendered, nothing sent."""

from __future__ import annotations

from pathlib import Path

import click

from dispatcher.actions.files import load_actions
from dispatcher.actions.model import Action
from dispatcher.channels import IMPLEMENTED
from dispatcher.cli.context import Context, pass_ctx
from dispatcher.letters import faxpdf
from dispatcher.letters.render import Renderer
from dispatcher.plans import resolve
from dispatcher.plans.hours import Schedule
from dispatcher.plans.zones import country_zone
from dispatcher.sending.catalogue import faxes, plan_problems
from dispatcher.sending.runtime import utcnow


@click.command()
@pass_ctx
def check(ctx: Context) -> None:
    """Validate every action file and render every action × target × language, sending nothing."""
    loaded = load_actions(ctx.settings.actions_dir)
    renderer = Renderer(ctx.settings.templates_dir)
    problems = [str(e) for e in loaded.errors]
    font = _font_problem(ctx.settings.fax_font)
    for action in loaded.actions.values():
        _channel_notes(action)
        _zone_notes(action, resolve.default_hours(ctx.settings.fax_office_hours))
        found = [
            f"{loaded.sources[action.id]}: {e}" for e in renderer.check(action, IMPLEMENTED, utcnow().date())
        ]
        if font and faxes(action, IMPLEMENTED):
            found.append(f"{action.id}: {font}")
        now = utcnow()
        found += [
            f"{loaded.sources[action.id]}: {p}" for p in plan_problems(action, IMPLEMENTED, now, ctx.settings)
        ]
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


def _zone_notes(action: Action, hours: dict[str, Schedule]) -> None:
    """A target whose office hours matter, in the action's zone for want of its own."""
    if action.deadline_at <= utcnow():
        return
    for target in action.targets:
        if target.timezone or not target.country or country_zone(target.country) is not None:
            continue
        if any(not resolve.hours_for(action, target, via, hours)[0].always for via in target.channels):
            click.echo(
                f"note: {action.id} × {target.id}: no timezone, and {target.country} has several: "
                f"its office hours are in the action's, {action.timezone}"
            )


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
