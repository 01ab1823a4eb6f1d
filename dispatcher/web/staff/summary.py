"""What the overview shows per action: status, deadline, progress, pace, and a forecast.

The forecast is the pacing's arithmetic, not a guess from history: each official takes at most
``rate_per_target`` letters a second, a fax number one fax at a time (about two minutes each),
and the whole deployment ``rate_global``. If the pending letters need longer than the time left,
the action is at risk. All of that only if it sends at all: see ``dispatcher.sending.forecast``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from dispatcher import capabilities
from dispatcher.actions.model import Action
from dispatcher.actions.planner import effective
from dispatcher.display import deadline_text, time_left
from dispatcher.models import ActionState, QueueCount
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
    needs: float | None  # seconds the pending letters need at the paced rate
    at_risk: bool
    stalled: str | None = None  # why nothing sends (paused, held, no dispatcher), or None

    @property
    def forecast(self) -> str:
        return forecast.text(self.needs, self.at_risk, self.stalled)

    @property
    def warns(self) -> bool:
        return self.needs is not None and (self.at_risk or self.stalled is not None)

    @property
    def total(self) -> int:
        return sum(self.counts.get(s, 0) for s in BAR)

    def share(self, status: str) -> float:
        return 100.0 * self.counts.get(status, 0) / self.total if self.total else 0.0


def needed_seconds(queues: list[QueueCount], settings: Settings) -> float | None:
    """How long the pending letters of one action take at the pacing limits; None: none pending."""
    pending = [q for q in queues if q.status == "pending" and q.count]
    if not pending:
        return None
    per_group = (
        max(q.count * _seconds_each(q.channel, settings), _capped(q.count, settings)) for q in pending
    )
    overall = sum(q.count for q in pending) / settings.rate_global
    return max(max(per_group), overall)


def _capped(letters: int, settings: Settings) -> float:
    """The windows a recipient's hourly and daily caps make this many letters wait out."""
    hours = (letters - 1) // settings.max_per_hour * 3600.0 if settings.max_per_hour else 0.0
    days = (letters - 1) // settings.max_per_day * 86400.0 if settings.max_per_day else 0.0
    return max(hours, days)


def _seconds_each(channel: str, settings: Settings) -> float:
    """How long one letter to one target takes: its line's time, else the pacing's."""
    line = capabilities.of(channel).line_seconds
    return line if line is not None else 1.0 / settings.rate_per_target


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
) -> list[ActionRow]:
    rows = []
    for action in actions.values():
        view = effective(action, states.get(action.id), now)
        needs = needed_seconds([q for q in queues if q.action_id == action.id], settings)
        left = (view.deadline - now).total_seconds()
        rows.append(
            ActionRow(
                action.id,
                action.title,
                view.label,
                deadline_text(view.deadline, action.zone),
                time_left(view.deadline, now),
                progress.get(action.id, {}),
                per_hour.get(action.id, 0),
                needs,
                needs is not None and view.status.value == "active" and needs > left,
                forecast.stalled(view.status, action.id in held, dispatching),
            )
        )
    return rows
