"""``dispatcher check``: every action file validated and rendered, nothing sent."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from dispatcher.actions.files import load_actions
from dispatcher.actions.model import Action
from dispatcher.actions.planner import effective
from dispatcher.channels import IMPLEMENTED
from dispatcher.cli.context import Context, pass_ctx
from dispatcher.letters import faxpdf, similarity, variants
from dispatcher.letters.render import WORDS_SIGNER, Renderer
from dispatcher.models import ActionStatus
from dispatcher.plans import resolve
from dispatcher.plans.hours import Schedule
from dispatcher.plans.zones import country_zone
from dispatcher.sending import forecast
from dispatcher.sending.catalogue import faxes, plan_problems
from dispatcher.sending.runtime import utcnow
from dispatcher.store import Store


@click.command()
@pass_ctx
def check(ctx: Context) -> None:
    """Validate every action file and render every action × target × language × variant, sending
    nothing; warn of variants too alike."""
    loaded = load_actions(ctx.settings.actions_dir)
    renderer = Renderer(ctx.settings.templates_dir)
    problems = [str(e) for e in loaded.errors]
    font = _font_problem(ctx.settings.fax_font)
    held: set[str] = set()
    for action in loaded.actions.values():
        _channel_notes(action)
        _unused_notes(action, ctx.settings.templates_dir)
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
            held.add(action.id)
            problems += found
            continue
        for target_id, via in action.delivery_pairs(IMPLEMENTED):
            language = renderer.language_for(action, action.target(target_id))
            named = renderer.variants(action.templates, language or "")
            several = f" (variants {', '.join(named)})" if len(named) > 1 else ""
            digest = _digest_note(action, target_id, ctx.settings.digest_at)
            click.echo(f"ok: {action.id} × {target_id} × {via} × {language}{several}{digest}")
        _similarity(renderer, action)
    _forecasts(ctx, {a: loaded.actions[a] for a in loaded.actions if a not in held}, renderer)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        raise click.ClickException(f"{len(problems)} problem(s); affected actions will not send")
    click.echo(f"{len(loaded.actions)} actions checked, no problems")


def _digest_note(action: Action, target_id: str, default: dt.time) -> str:
    """ ", one digest a day at 10:00 Europe/Brussels" for a target whose plan says so."""
    target = action.target(target_id)
    if resolve.delivery_for(action, target) != "digest":
        return ""
    at = resolve.digest_at_for(action, target, default)
    return f", one digest a day at {at:%H:%M} {resolve.zone_of(action, target)}"


def _forecasts(ctx: Context, actions: dict[str, Action], renderer: Renderer) -> None:
    """When each target's last letter would go, counting its pending letters and the supporters
    whose consent today would be planned one (known before launch; later sign-ups add to them);
    a warning, not an error, where they would miss the deadline, with what would fix it."""
    try:
        store = ctx.store
    except click.ClickException as exc:
        click.echo(f"note: no forecast: {exc.message}", err=True)
        return
    now, states = utcnow(), store.action_states()
    views = {a.id: effective(a, states.get(a.id), now) for a in actions.values()}
    # A closed action sends nothing more; a draft is forecast as it would go if launched now.
    actions = {a: action for a, action in actions.items() if views[a].status is not ActionStatus.CLOSED}
    pending = forecast.pending_of(store.queue_counts())
    for action in actions.values():
        planned = sum(n for (a, *_), n in pending.items() if a == action.id)
        unplanned = _unplanned(store, action, renderer, now)
        for (target_id, channel), count in unplanned.items():
            key = (action.id, target_id, channel)
            pending[key] = pending.get(key, 0) + count
        click.echo(
            f"forecast: {action.id}: {planned} letters pending, {sum(unplanned.values())} more "
            "for the supporters who consent today"
        )
    deadlines = {a: views[a].deadline for a in actions}
    found = forecast.outlooks(actions, deadlines, pending, ctx.settings, now, store.reports.cap_usage(now))
    for o in found:
        action = actions[o.lane.action_id]
        said = f"{action.id} × {forecast.described(o, found, action.zone, now, ctx.settings)}"
        click.echo(f"forecast: {said}" if o.fits else f"warning: {said}", err=not o.fits)


def _unplanned(
    store: Store, action: Action, renderer: Renderer, now: dt.datetime
) -> dict[tuple[str, str], int]:
    """Per target × channel, the supporters consenting today who have no letter yet."""
    pairs = action.delivery_pairs(IMPLEMENTED)
    languages = {t: lang for t, _ in pairs if (lang := renderer.language_for(action, action.target(t)))}
    return store.reports.unplanned(action.id, pairs, now, action.tags, languages)


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


def _unused_notes(action: Action, templates_dir: Path) -> None:
    for name in variants.unused(templates_dir / action.templates):
        click.echo(
            f"note: {action.id}: {action.templates}/{name} is not used: a letter is <language>.j2, "
            "its variants <language>.b.j2, <language>.c.j2 …"
        )


def _similarity(renderer: Renderer, action: Action) -> None:
    """Each target's variants' pairwise similarity; a warning (not a hold) for those too alike."""
    today = utcnow().date()
    for target_id in dict.fromkeys(t for t, _ in action.delivery_pairs(IMPLEMENTED)):
        target = action.target(target_id)
        language = renderer.language_for(action, target)
        named = renderer.variants(action.templates, language or "")
        if language is None or len(named) < 2:
            continue
        # The signer check() has just rendered every variant with: none of these can fail.
        letters = {
            v: renderer.render(action, target, language, WORDS_SIGNER, today, variant=v) for v in named
        }
        _report(
            f"{action.id} × {target_id} × {language}", language, similarity.resemblances(letters, language)
        )


def _report(where: str, language: str, pairs: list[similarity.Resemblance]) -> None:
    click.echo(f"similarity: {where}: " + ", ".join(f"{r.first}~{r.second} {r.score:.2f}" for r in pairs))
    runs = f"{similarity.SHINGLE}-{similarity.unit(language)} runs"
    for r in pairs:
        if r.too_close:
            click.echo(
                f"warning: {where}: variants {r.first} and {r.second} share {r.score:.0%} of their "
                f"{runs} (over {similarity.WARN_ABOVE:.0%}): officials' filters may take them for "
                "one copied message; rewrite one in other words",
                err=True,
            )


def _font_problem(font: Path | None) -> str | None:
    try:
        faxpdf.find_font(font)
    except faxpdf.FontMissing as exc:
        return str(exc)
    return None
