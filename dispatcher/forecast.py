"""Whether an action's letters are going out at all, before how long they take.

The pacing arithmetic (``web.summary.needed_seconds``) says "on time" only if something sends:
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

from dispatcher.catalogue import Catalogue
from dispatcher.channels import IMPLEMENTED
from dispatcher.config import ActionStatus, Settings
from dispatcher.store import WorkerBeat

SILENT = dt.timedelta(seconds=20)  # four missed heartbeats: the worker is gone or cut off


def running(workers: Iterable[WorkerBeat], now: dt.datetime) -> list[WorkerBeat]:
    """Workers that have not said they stopped and were heard from within ``SILENT``."""
    return [w for w in workers if w.stopped_at is None and now - w.last_seen <= SILENT]


def silent(workers: Iterable[WorkerBeat], now: dt.datetime) -> list[WorkerBeat]:
    """Workers that never said they stopped but have not been heard from for ``SILENT``: killed,
    frozen, or unable to reach the store."""
    return [w for w in workers if w.stopped_at is None and now - w.last_seen > SILENT]


# One catalogue per action and template folder, so a held action is logged when it becomes held,
# not at every refresh of every open dashboard.
_catalogues: dict[tuple[Path, Path], Catalogue] = {}
_checking = threading.Lock()


def held(settings: Settings, clock: Callable[[], dt.datetime]) -> set[str]:
    """Actions a dispatcher would hold now: the ``Catalogue``'s own check, not a copy of it."""
    key = (settings.actions_dir, settings.templates_dir)
    with _checking:
        catalogue = _catalogues.setdefault(key, Catalogue(settings, IMPLEMENTED, clock))
        catalogue.reload()
        return set(catalogue.held)


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
