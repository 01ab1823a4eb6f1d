"""What the overview shows per action: status, deadline, progress, pace, and a forecast.

The forecast walks each target's plan forward (``plans.forecast``): its caps, office hours and
holidays, pacing, spread, digest, and a fax line's one letter at a time, over every action at
once, since a domain's and an address's caps are the deployment's. An action is at risk when a
target's last letter would go after the deadline; ``advise`` adds why and what would fix it (the
action page and the CLI: a dashboard polling every few seconds shows the count). All of that
only if it sends at all: see ``dispatcher.sending.forecast``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from dispatcher.actions.model import Action
from dispatcher.actions.planner import effective
from dispatcher.display import deadline_text, time_left
from dispatcher.models import ActionState, ActionStatus, QueueCount
from dispatcher.plans.forecast import Outlook
from dispatcher.sending import forecast
from dispatcher.settings import Settings

BAR = ("sent", "pending", "sending", "submitted", "failed", "expired", "cancelled")


@dataclass(frozen=True)
class ActionRow:
    id: str
    title: str
    status: str
    deadline: str
    left: str
    counts: Mapping[str, int]
    per_hour: int
    outlooks: tuple[Outlook, ...]  # per target × channel with letters pending
    at_risk: bool
    stalled: str | None = None  # why nothing sends (paused, held, no dispatcher), or None
    zone: ZoneInfo = field(default=ZoneInfo("UTC"))
    targets: tuple[str, ...] = ()  # each target's forecast in words, with advice where it misses

    @property
    def last(self) -> dt.datetime | None:
        return max((o.last for o in self.outlooks if o.last is not None), default=None)

    @property
    def forecast(self) -> str:
        late = sum(not o.fits for o in self.outlooks)
        return forecast.text(bool(self.outlooks), late, self.last, self.zone, self.stalled)

    @property
    def lines(self) -> list[tuple[str, bool]]:
        """Each target's forecast in words, and whether it warns (the action page)."""
        if not self.targets:  # not advised
            return []
        return [(w, self.at_risk and not o.fits) for o, w in zip(self.outlooks, self.targets, strict=True)]

    @property
    def warns(self) -> bool:
        return bool(self.outlooks) and (self.at_risk or self.stalled is not None)

    @property
    def total(self) -> int:
        return sum(self.counts.get(s, 0) for s in BAR)

    def share(self, status: str) -> float:
        return 100.0 * self.counts.get(status, 0) / self.total if self.total else 0.0


# The last forecast per set of lanes and deadlines: a dashboard polls every 3 s per tab, and the
# walk over hundreds of targets takes a second; a few letters sent since move no last letter
# that matters. A new lane, a lane emptied or a deadline extended forecasts again at once.
KEEP = dt.timedelta(seconds=30)
_forecasts: dict[tuple[object, ...], tuple[dt.datetime, object, object, list[Outlook]]] = {}


def _kept(
    actions: Mapping[str, Action],
    deadlines: Mapping[str, dt.datetime],
    pending: forecast.Pending,
    settings: Settings,
    now: dt.datetime,
    counted: Mapping[str, int] | None,
) -> list[Outlook]:
    # The same action files and settings (the web context keeps both objects until a file
    # changes: kept here too, so their ids cannot be reused), the same lanes and deadlines.
    key = (id(actions), id(settings), frozenset(deadlines.items()), frozenset(pending))
    known = _forecasts.get(key)
    if known is not None and known[1] is actions and known[2] is settings and now - KEEP <= known[0] <= now:
        return known[3]
    found = forecast.outlooks(actions, deadlines, pending, settings, now, counted)
    _forecasts.clear()  # one deployment per process: only the latest is worth keeping
    _forecasts[key] = (now, actions, settings, found)
    return found


def action_rows(
    actions: Mapping[str, Action],
    states: Mapping[str, ActionState],
    progress: Mapping[str, Mapping[str, int]],
    per_hour: Mapping[str, int],
    queues: list[QueueCount],
    settings: Settings,
    now: dt.datetime,
    held: Collection[str],
    dispatching: bool,
    advise: Collection[str] = (),
    counted: Mapping[str, int] | None = None,
) -> list[ActionRow]:
    """``advise``: the actions whose targets' forecasts are put in words, with what would fix
    those that miss (it forecasts again per remedy: not for every action at every poll);
    ``counted``: what the caps' open windows have counted (``reports.cap_usage``)."""
    views = {a.id: effective(a, states.get(a.id), now) for a in actions.values()}
    deadlines = {a: v.deadline for a, v in views.items()}
    found = _kept(actions, deadlines, forecast.pending_of(queues), settings, now, counted)
    rows = []
    for action in actions.values():
        view, mine = views[action.id], tuple(o for o in found if o.lane.action_id == action.id)
        active = view.status is ActionStatus.ACTIVE
        words = tuple(
            forecast.described(o, found, action.zone, now, settings) for o in mine if action.id in advise
        )
        rows.append(
            ActionRow(
                action.id,
                action.title,
                view.label,
                deadline_text(view.deadline, action.zone),
                time_left(view.deadline, now),
                progress.get(action.id, {}),
                per_hour.get(action.id, 0),
                mine,
                active and any(not o.fits for o in mine),
                forecast.stalled(view.status, action.id in held, dispatching),
                action.zone,
                words,
            )
        )
    return rows
