"""Times as people read them: in the action's zone, a midnight deadline as 24:00 of its day."""

from __future__ import annotations

import datetime as dt
from typing import Any


def when(value: dt.datetime | None, zone: Any = dt.UTC) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if value else ""


def deadline_text(deadline: dt.datetime, zone: Any) -> str:
    """A deadline at midnight is the end of the day before: show it as 24:00 of that day."""
    local = deadline.astimezone(zone)
    if local.time() == dt.time(0, 0):
        return f"{local - dt.timedelta(days=1):%Y-%m-%d} 24:00 {local:%Z}"
    return when(deadline, zone)


def time_left(deadline: dt.datetime, now: dt.datetime) -> str:
    left = deadline - now
    if left.total_seconds() <= 0:
        return "-"
    if left.days:
        return f"{left.days}d {left.seconds // 3600}h"
    return f"{left.seconds // 3600}h {left.seconds % 3600 // 60}m"
