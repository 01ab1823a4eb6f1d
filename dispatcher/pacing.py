"""Pacing: token buckets per recipient and one for the deployment, shared through the store.

A recipient's bucket (its email address or fax number, whichever action names it) limits how
fast letters reach that official; the global bucket limits what the whole deployment puts on the
wire. The buckets live in the store and every worker's claim refills and spends them inside its
own transaction, so the limits hold however many workers share the store.

This module is the arithmetic: refilling, asking each claim group for its share, handing rows
out round-robin so that no group waits on another's backlog, and how long until the next token.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

GLOBAL = "*"  # the deployment's bucket; recipient keys look like "email:someone@example.org"

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    rate: float  # letters per second to one recipient
    burst: float  # letters one recipient may receive at once after a quiet spell
    global_rate: float  # letters per second from the whole deployment

    def of(self, key: str) -> tuple[float, float]:
        """(rate, burst) of a bucket."""
        if key == GLOBAL:
            return self.global_rate, max(self.global_rate, 1.0)
        return self.rate, self.burst


def refilled(tokens: float, updated: dt.datetime, now: dt.datetime, rate: float, burst: float) -> float:
    # A worker whose clock lags another's sees a negative interval: it refills nothing.
    elapsed = max(0.0, (now - updated).total_seconds())
    return min(burst, tokens + elapsed * rate)


class Group(Protocol):
    @property
    def channel(self) -> str: ...

    @property
    def keys(self) -> tuple[str, ...]: ...

    @property
    def line(self) -> str | None: ...


def _keys(group: Group) -> tuple[str, ...]:
    # A line is a bucket of one token, or none while a letter on it is in flight.
    line = (group.line,) if group.line else ()
    return (GLOBAL, *dict.fromkeys(group.keys), *line)


def allowance(group: Group, tokens: Mapping[str, float]) -> int:
    """Letters this group could start now if it were alone."""
    return math.floor(min(tokens[k] for k in _keys(group)))


def asks(groups: Sequence[Group], tokens: Mapping[str, float], room: Mapping[str, int]) -> list[int]:
    """Rows to fetch per group: its allowance, at most twice its fair share of its channel's room.

    Asking for twice the share lets groups with a backlog use what groups with nothing due leave,
    without fetching every group's whole allowance each round.
    """
    allowed = [allowance(g, tokens) if room.get(g.channel, 0) > 0 else 0 for g in groups]
    eligible: dict[str, int] = {}
    for group, n in zip(groups, allowed, strict=True):
        if n > 0:
            eligible[group.channel] = eligible.get(group.channel, 0) + 1
    out = []
    for group, n in zip(groups, allowed, strict=True):
        share = math.ceil(2 * room.get(group.channel, 0) / max(1, eligible.get(group.channel, 0)))
        out.append(max(0, min(n, share, room.get(group.channel, 0))))
    return out


def allocate(
    groups: Sequence[Group],
    rows: Sequence[Sequence[T]],
    tokens: dict[str, float],
    room: dict[str, int],
    start: int,
) -> list[tuple[int, T]]:
    """Hand rows out one per group in turn, spending tokens and room; returns (group index, row).

    Round-robin from a rotating start: groups sharing a bucket (the global one, an official
    copied on several targets' letters) share it evenly instead of the first in file order
    taking it all.
    """
    order = [(start + i) % len(groups) for i in range(len(groups))] if groups else []
    cursor = [0] * len(groups)
    taken: list[tuple[int, T]] = []
    moved = True
    while moved:
        moved = False
        for i in order:
            group = groups[i]
            keys = _keys(group)
            if cursor[i] >= len(rows[i]) or room.get(group.channel, 0) <= 0:
                continue
            if any(tokens[k] < 1 for k in keys):
                continue
            for k in keys:
                tokens[k] -= 1
            room[group.channel] -= 1
            taken.append((i, rows[i][cursor[i]]))
            cursor[i] += 1
            moved = True
    return taken


def wait(groups: Sequence[Group], tokens: Mapping[str, float], limits: Limits) -> float | None:
    """Seconds until the first of ``groups`` has a token in every bucket; None without groups."""
    waits = [max(max(0.0, 1 - tokens[k]) / limits.of(k)[0] for k in _keys(g)) for g in groups]
    return min(waits, default=None)
