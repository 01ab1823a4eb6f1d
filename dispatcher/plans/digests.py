"""When a target's daily digest goes: at ``digest_at`` in its zone on its office days, or at the
first moment its office opens after that on the same day (a day whose office never opens after
``digest_at`` has no digest: its letters go in the next day's). Pure: times and calendars."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from dispatcher.plans.calendar import Calendar

# Channels whose letters can go as a digest: every channel there is.
DIGEST_CHANNELS = frozenset({"email", "fax"})
LOOKAHEAD_DAYS = 14  # how far ahead the next digest is looked for (a fortnight of closed days)


class Moment(NamedTuple):
    day: dt.date  # the target's local date: one digest a day
    at: dt.datetime  # when it goes (aware, in the target's zone)


def moment(calendar: Calendar, at: dt.time, day: dt.date) -> Moment | None:
    """The digest of ``day``: the first open moment from ``at`` that day, if the office opens."""
    start = dt.datetime.combine(day, at, tzinfo=calendar.zone)
    # A time the clocks skip (02:30 on a spring-forward day) is read as the hour after.
    start = start.astimezone(dt.UTC).astimezone(calendar.zone)
    opens = calendar.next_open(start, dt.timedelta(days=1))
    if opens is None:
        return None
    opens = opens.astimezone(calendar.zone)
    return Moment(day, opens) if opens.date() == day else None


def due(calendar: Calendar, at: dt.time, now: dt.datetime) -> Moment | None:
    """Today's digest (the target's today) if its moment has come, else None."""
    today = now.astimezone(calendar.zone).date()
    found = moment(calendar, at, today)
    return found if found is not None and found.at <= now else None


def upcoming(calendar: Calendar, at: dt.time, now: dt.datetime) -> Moment | None:
    """The first digest moment after ``now``, within LOOKAHEAD_DAYS."""
    today = now.astimezone(calendar.zone).date()
    for n in range(LOOKAHEAD_DAYS + 1):
        found = moment(calendar, at, today + dt.timedelta(days=n))
        if found is not None and found.at > now:
            return found
    return None


def latest(calendar: Calendar, at: dt.time, now: dt.datetime) -> Moment | None:
    """The last digest moment at or before ``now`` (today's once it has come), within
    LOOKAHEAD_DAYS: an unfinished digest of an earlier day is found by it too."""
    today = now.astimezone(calendar.zone).date()
    for n in range(LOOKAHEAD_DAYS + 1):
        found = moment(calendar, at, today - dt.timedelta(days=n))
        if found is not None and found.at <= now:
            return found
    return None
