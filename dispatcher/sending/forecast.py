"""Whether an action's letters are going out at all, before how long they take.

The pacing arithmetic (``web.staff.summary.needed_seconds``) says "on time" only if something sends:
a paused action, a held one (its letters cannot all render, as ``Catalogue`` decides) or no
dispatcher alive (no heartbeat for ``SILENT``) sends nothing, and the forecast says so instead.
Shared by the dashboard and ``dispatcher actions``.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from babel.dates import format_timedelta

from dispatcher.channels import IMPLEMENTED
from dispatcher.models import WORKERS_KEPT, ActionHold, ActionStatus, WorkerBeat
from dispatcher.sending.catalogue import Catalogue, stamp
from dispatcher.settings import Settings

SILENT = dt.timedelta(seconds=20)  # four missed heartbeats: the worker is gone or cut off
FORGET = WORKERS_KEPT  # silent longer: forgotten (each heartbeat also deletes such rows)


def running(workers: Iterable[WorkerBeat], now: dt.datetime) -> list[WorkerBeat]:
    """Workers that have not said they stopped and were heard from within ``SILENT``."""
    return [w for w in workers if w.stopped_at is None and now - w.last_seen <= SILENT]


def silent(workers: Iterable[WorkerBeat], now: dt.datetime) -> list[WorkerBeat]:
    """Workers that never said they stopped but have not been heard from for ``SILENT``: killed,
    frozen, or unable to reach the store; for ``FORGET`` at most, then they are forgotten."""
    return [w for w in workers if w.stopped_at is None and SILENT < now - w.last_seen <= FORGET]


# One catalogue per action and template folder, so a held action is logged when it becomes held,
# not at every refresh of every open dashboard; checked again only when a file in either folder
# changes (or the date: letters carry it), not at every poll (live.js polls every 3 s per tab).
_catalogues: dict[tuple[Path, Path], tuple[tuple[str, str, dt.date], Catalogue]] = {}
_checking = threading.Lock()


def _checked(settings: Settings, clock: Callable[[], dt.datetime]) -> Catalogue:
    """The ``Catalogue``'s own check of the templates, not a copy of it. The fax font is left
    to the workers: it is their host's that matters, and they store what they hold."""
    folders = (settings.actions_dir, settings.templates_dir)
    now = (stamp(settings.actions_dir), stamp(settings.templates_dir), clock().date())
    with _checking:
        before = _catalogues.get(folders)
        if before is not None and before[0] == now:
            return before[1]
        # Every worker sends on these channels (``make_channels``); only the font differs by host.
        catalogue = before[1] if before else Catalogue(settings, IMPLEMENTED, clock, fonts=False)
        catalogue.reload()
        _catalogues[folders] = (now, catalogue)
        return catalogue


def fresh_holds(
    settings: Settings, clock: Callable[[], dt.datetime], stored: Iterable[ActionHold]
) -> dict[str, ActionHold]:
    """The holds workers not forgotten stored (the union: each stores its own), but for actions
    whose templates changed since (the workers check those again and release them at their next
    plan); per action the first taken."""
    return _fresh(settings, _checked(settings, clock), stored)


def _fresh(settings: Settings, catalogue: Catalogue, stored: Iterable[ActionHold]) -> dict[str, ActionHold]:
    actions, out = catalogue.loaded.actions, {}
    stamps: dict[str, str] = {}  # every worker may hold the same action: read its folder once
    for h in sorted(stored, key=lambda h: h.held_at):
        a = h.action_id
        if a not in actions or a in out:
            continue
        folder = actions[a].templates
        if folder not in stamps:
            stamps[folder] = stamp(settings.templates_dir / folder)
        if h.templates == stamps[folder]:
            out[a] = h
    return out


def held(settings: Settings, clock: Callable[[], dt.datetime], stored: Iterable[ActionHold]) -> set[str]:
    """Actions a dispatcher holds or would hold now: the check here, and what workers stored
    (a letter that failed to render for a real signer, a font missing on their host)."""
    catalogue = _checked(settings, clock)
    return set(catalogue.held) | set(_fresh(settings, catalogue, stored))


def hold_reasons(
    settings: Settings, clock: Callable[[], dt.datetime], stored: Iterable[ActionHold]
) -> dict[str, str]:
    """Why each action ``held`` names is held: what a worker stored, else the check here."""
    catalogue = _checked(settings, clock)
    checked = {a: h.reason for a, h in catalogue.holds("", clock()).items()}
    return checked | {a: h.reason for a, h in _fresh(settings, catalogue, stored).items()}


def stalled(status: ActionStatus, is_held: bool, dispatching: bool) -> str | None:
    """Why an active or paused action sends nothing now, or None: it sends."""
    if status is ActionStatus.PAUSED:
        return "paused: nothing is sent"
    if status is not ActionStatus.ACTIVE:
        return None
    if is_held:
        return "held: nothing is sent (see dispatcher check)"
    if not dispatching:
        return "not sending: no dispatcher running"
    return None


def span(seconds: float) -> str:
    return format_timedelta(dt.timedelta(seconds=seconds), threshold=1.5, locale="en")


def text(needs: float | None, at_risk: bool, why_not: str | None) -> str:
    """The forecast in words: "-" with nothing pending, else why nothing sends, or the pace."""
    if needs is None:
        return "-"
    if why_not:
        return why_not
    return f"at risk: needs {span(needs)}" if at_risk else f"on time ({span(needs)})"
