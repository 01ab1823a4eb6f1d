"""Spread to the deadline: the pace of one target × channel, pure (the caller's clock).

A target's letters arrive steadily through the campaign rather than all at once on its first
day (officials' filters quarantine bursts of identical mail): its pace is its pending letters
over the open seconds of its calendar (office hours, holidays) left before the deadline less a
margin, so late joiners raise it and an extended deadline lowers it. The claim holds the pace in
a store bucket of burst 1 (``pacing``); each letter costs a jittered token there so arrivals are
not a metronome.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from dispatcher.plans.calendar import Calendar

JITTER = 0.25  # each letter costs 1 ± this many tokens of its spread bucket (Proca: ±25%)
# A pace kept while a new reading is within this fraction of it: the claim groups carry the
# pace, and a group that changes is asked again at once, so a pace drifting by a hair at every
# refresh would have an idle worker claim for nothing.
STEADY = 0.1
EXACT = dt.timedelta(weeks=8)  # open time counted day by day this far ahead, estimated beyond


def pace(pending: int, calendar: Calendar, now: dt.datetime, aim: dt.datetime) -> float | None:
    """Letters per second to reach ``aim`` with ``pending`` letters, sending only while the
    calendar is open; None when no open time is left before ``aim``: as fast as the caps allow."""
    if aim <= now:
        return None
    seconds = open_seconds(calendar, now, aim)
    if seconds <= 0:
        return None
    # One more than pending: the last letter is due about one interval before the aim, so
    # neither the jitter (a quarter interval) nor a pace kept within ``STEADY`` pushes it past;
    # and a letter planned after this reading still goes at a sensible pace.
    return (pending + 1) / seconds


def open_seconds(calendar: Calendar, now: dt.datetime, aim: dt.datetime) -> float:
    """The calendar's open seconds until ``aim``: counted for the next ``EXACT``, and beyond at
    the same share of the time (a worker paces every group every half minute: counting each day
    of a campaign years long took 20 ms a group; a far deadline's pace is tiny either way)."""
    if aim - now <= EXACT:
        return calendar.open_seconds(now, aim)
    return calendar.open_seconds(now, now + EXACT) * ((aim - now) / EXACT)


def steady(kept: float | None, new: float | None) -> float | None:
    """``kept`` while ``new`` is within ``STEADY`` of it, else ``new``."""
    if kept is not None and new is not None and abs(new - kept) <= STEADY * kept:
        return kept
    return new


def cost(rng: random.Random | None = None) -> float:
    """What one letter costs of its spread bucket: 1 ± ``JITTER``, uniformly."""
    return (rng or random).uniform(1 - JITTER, 1 + JITTER)


@dataclass(frozen=True)
class Aim:
    """A target's spread as ``dispatcher why`` tells it: its pace and what it aims at."""

    key: str  # its bucket: "spread:<action>/<target>/<channel>"
    pace: float  # letters per second
    deadline: dt.datetime
    margin: dt.timedelta

    def said(self, next_at: dt.datetime) -> str:
        """ "spread to the deadline: this target's next letter about 14:20 UTC (12 a day to reach
        2030-01-30 09:00 UTC with a day's margin)"."""
        return (
            f"spread to the deadline: this target's next letter about {_clock(next_at)} "
            f"({rate(self.pace)} to reach {self.deadline:%Y-%m-%d %H:%M} UTC {margin(self.margin)})"
        )


def _clock(t: dt.datetime) -> str:
    return f"{t.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def rate(per_second: float) -> str:
    """A pace as people say it: "one every 3 days", "12 a day", "3 an hour", "4 a minute"."""
    if per_second * 86400 < 1:
        return f"one every {1 / (per_second * 86400):.3g} days"
    for unit, seconds, article in (("day", 86400, "a"), ("hour", 3600, "an"), ("minute", 60, "a")):
        n = per_second * seconds
        if n < 60 or unit == "minute":
            return f"{n:.3g} {article} {unit}"
    raise AssertionError("unreachable")


def margin(span: dt.timedelta) -> str:
    hours = span.total_seconds() / 3600
    if hours == 0:
        return "with no margin"
    if hours == 24:
        return "with a day's margin"
    return f"with a margin of {hours:g} h"
