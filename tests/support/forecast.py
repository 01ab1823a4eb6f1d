"""How long an action's pending letters take, as the plan's forecast walks them: the figure
the forecast tests compare with their own arithmetic."""

from __future__ import annotations

import datetime as dt

from dispatcher.actions.model import Action
from dispatcher.models import QueueCount
from dispatcher.sending import forecast
from dispatcher.settings import Settings


def needed_seconds(
    action: Action, queues: list[QueueCount], settings: Settings, now: dt.datetime
) -> float | None:
    """Seconds from ``now`` until the action's last pending letter goes; None: none pending or
    not within the forecast's reach."""
    found = forecast.outlooks(
        {action.id: action}, {action.id: action.deadline_at}, forecast.pending_of(queues), settings, now
    )
    lasts = [o.last for o in found]
    if not lasts or None in lasts:
        return None
    return max((t - now).total_seconds() for t in lasts if t is not None)
