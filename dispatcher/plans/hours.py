"""Office hours as staff write them, ``Mon-Fri 08:00-18:00``, and the weekly schedule they mean.

The text: ``always``, or windows separated by ``;``, each the days (``Mon-Fri``, ``Sat``,
``Mon,Wed,Fri``, ``Sun-Thu``, ``daily``) then one or more spans of hours (``08:00-12:00,
13:00-17:00``). A span that ends before it starts runs overnight: ``Mon-Fri 18:00-08:00`` opens
each evening and closes the next morning. ``24:00`` ends a span at midnight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NAMES = dict(zip(DAYS, range(7), strict=True)) | {
    name: i
    for i, name in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))
}
DAY = 24 * 60
_SPAN = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")


@dataclass(frozen=True)
class Window:
    """Open from ``start`` to ``end`` minutes after local midnight of a ``day`` (0 = Monday);
    ``end`` past ``DAY`` closes on the next day."""

    day: int
    start: int
    end: int


@dataclass(frozen=True)
class Schedule:
    """A week of office hours; no windows: always open."""

    windows: tuple[Window, ...] = ()
    text: str = "always"

    @property
    def always(self) -> bool:
        return not self.windows

    def __str__(self) -> str:
        return self.text


ALWAYS = Schedule()


def parse_hours(text: str) -> Schedule:
    """The schedule ``text`` says; ValueError saying what is wrong with it."""
    cleaned = " ".join(text.split())
    if cleaned.lower() == "always":
        return ALWAYS
    windows: list[Window] = []
    for part in cleaned.split(";"):
        if not part.strip():
            raise ValueError(f"office hours {text!r}: an empty window between ';'")
        windows += _window(part.strip(), text)
    return Schedule(tuple(windows), cleaned)


def _window(part: str, text: str) -> list[Window]:
    days_text, _, hours_text = part.partition(" ")
    days = _days(days_text, text)
    spans = [_span(s.strip(), text) for s in hours_text.split(",")]
    return [Window(day, start, end) for day in days for start, end in spans]


def _days(days_text: str, text: str) -> list[int]:
    if days_text.lower() == "daily":
        return list(range(7))
    out: list[int] = []
    for item in days_text.split(","):
        first, _, last = item.partition("-")
        a, b = _day(first, text), _day(last or first, text)
        out += [(a + i) % 7 for i in range((b - a) % 7 + 1)]  # Sun-Thu wraps the week
    return sorted(set(out))


def _day(name: str, text: str) -> int:
    day = _NAMES.get(name.strip().lower())
    if day is None:
        raise ValueError(
            f"office hours {text!r}: {name!r} is not a day (Mon, Tue, … Sun, a range Mon-Fri, or daily)"
        )
    return day


def _span(span: str, text: str) -> tuple[int, int]:
    match = _SPAN.fullmatch(span)
    if not match:
        raise ValueError(f"office hours {text!r}: {span!r} is not hours such as 08:00-18:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if m1 > 59 or m2 > 59 or start >= DAY or end > DAY:
        raise ValueError(f"office hours {text!r}: {span!r} is not a time of day (00:00 to 24:00)")
    if start == end:
        raise ValueError(f"office hours {text!r}: {span!r} never opens (00:00-24:00 is the whole day)")
    return (start, end) if end > start else (start, end + DAY)  # overnight: closes the next day
