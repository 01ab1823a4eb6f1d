"""When a target's office is open: its weekly schedule in its time zone, less its public
holidays. Pure: every question takes the time asked about (the caller's clock), so a test can
play a campaign of weeks in a second.

Windows are wall-clock times: ``08:00-18:00`` opens at 08:00 local on the day of a DST change
too, and ``00:00-24:00`` on that day lasts 23 or 25 hours. A window starting in the hour a
spring change skips opens at the instant the clocks jump (the wall time read with the offset
before the change); in the hour a fall change repeats, at its first occurrence. A holiday closes
the windows that open on it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import NamedTuple
from zoneinfo import ZoneInfo

from dispatcher.plans.hours import Schedule
from dispatcher.plans.public_holidays import Closed

Span = tuple[dt.datetime, dt.datetime]
_LOOK = dt.timedelta(days=14)  # how far each step of a search for the next opening reads
HORIZON = dt.timedelta(days=400)  # beyond a year of holidays: a schedule that never opens


def _never(_day: dt.date) -> bool:
    return False


class _State(NamedTuple):
    since: dt.datetime
    until: dt.datetime  # open or shut from since until then, at least
    open: bool
    opens: bool  # shut, and until is when it opens


class Calendar:
    def __init__(self, schedule: Schedule, zone: ZoneInfo, closed: Closed = _never) -> None:
        self.schedule = schedule
        self.zone = zone
        self.closed = closed
        self._known: _State | None = None

    @property
    def always(self) -> bool:
        return self.schedule.always

    def spans(self, a: dt.datetime, b: dt.datetime) -> list[Span]:
        """The open spans (UTC, merged where they touch) that meet [a, b)."""
        if self.always:
            return [(a, b)] if a < b else []
        first = a.astimezone(self.zone).date() - dt.timedelta(days=2)  # overnight from before
        last = b.astimezone(self.zone).date()
        raw = sorted(s for s in self._windows(first, last) if s[1] > a and s[0] < b)
        merged: list[Span] = []
        for start, end in raw:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def _windows(self, first: dt.date, last: dt.date) -> Iterator[Span]:
        day = first
        while day <= last:
            if not self.closed(day):
                midnight = dt.datetime.combine(day, dt.time())
                for w in self.schedule.windows:
                    if w.day == day.weekday():
                        start, end = self._instant(midnight, w.start), self._instant(midnight, w.end)
                        if end > start:  # a span wholly in a skipped hour never opens
                            yield start, end
            day += dt.timedelta(days=1)

    def _instant(self, midnight: dt.datetime, minutes: int) -> dt.datetime:
        wall = midnight + dt.timedelta(minutes=minutes)
        return wall.replace(tzinfo=self.zone).astimezone(dt.UTC)

    def is_open(self, t: dt.datetime) -> bool:
        return self._state(t).open

    def _state(self, t: dt.datetime) -> _State:
        """Open or not at ``t``, and until when: kept, so that a worker asking every round for
        hundreds of groups does the arithmetic once per opening and closing."""
        known = self._known
        if known is not None and known.since <= t < known.until:
            return known
        around = self.spans(t, t + _LOOK)
        inside = next((s for s in around if s[0] <= t < s[1]), None)
        if inside is not None:
            state = _State(t, inside[1], True, False)
        else:
            later = next((s[0] for s in around if s[0] > t), None)
            state = _State(t, later or t + _LOOK, False, later is not None)
        self._known = state
        return state

    def next_open(self, t: dt.datetime, within: dt.timedelta = HORIZON) -> dt.datetime | None:
        """``t`` if open then, else when it next opens; None if not before ``t + within``."""
        state = self._state(t)
        if state.open:
            return t
        if state.opens:
            return state.until if state.until < t + within else None
        start = t
        while start < t + within:
            end = min(start + _LOOK, t + within)
            for span_start, span_end in self.spans(start, end):
                if span_end > t:
                    return max(span_start, t)
            start = end
        return None

    def next_close(self, t: dt.datetime) -> dt.datetime | None:
        """When the span open at ``t`` closes; None if closed at ``t`` or never closes."""
        if self.always or not self.is_open(t):
            return None
        close = t
        while close < t + HORIZON:  # windows that touch (Mon 18:00-24:00, Tue 00:00-08:00) join
            spans = self.spans(close, close + _LOOK)
            if not spans or spans[0][0] > close:
                return close
            if spans[0][1] < close + _LOOK:
                return spans[0][1]
            close = spans[0][1]
        return None

    def open_seconds(self, a: dt.datetime, b: dt.datetime) -> float:
        """Seconds open between ``a`` and ``b``."""
        return sum((min(e, b) - max(s, a)).total_seconds() for s, e in self.spans(a, b))
