"""Pacing: token buckets per recipient and one for the deployment, shared through the store.

A recipient's bucket (its email address or fax number, whichever action names it) limits how
fast letters reach that official; the global bucket limits what the whole deployment puts on the
wire. The buckets live in the store and every worker's claim refills and spends them inside its
own transaction, so the limits hold however many workers share the store.

This module is the arithmetic: refilling, asking each claim group for its share, handing rows
out round-robin so that no group waits on another's backlog, and how long until the next token.

A group spread to its deadline (``ClaimGroup.pace``) spends one more bucket, its own, of burst
1 refilled at its pace: held in the store like the others, so two workers together keep the
pace, not each of them. Its letters cost a jittered token there (``jitter``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from dispatcher.models import GroupId

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

    @property
    def ident(self) -> GroupId: ...

    @property
    def pace(self) -> float | None: ...

    @property
    def spread(self) -> str | None: ...


def _keys(group: Group) -> tuple[str, ...]:
    # A line is a bucket of one token, or none while a letter on it is in flight.
    line = (group.line,) if group.line else ()
    spread = (group.spread,) if group.spread else ()
    return (GLOBAL, *dict.fromkeys(group.keys), *line, *spread)


def bucket_keys(groups: Sequence[Group]) -> list[str]:
    """The store buckets these groups' letters spend, sorted (the order claims lock them in)."""
    return sorted({GLOBAL, *(k for g in groups for k in g.keys), *(g.spread for g in groups if g.spread)})


def rates(groups: Sequence[Group], limits: Limits) -> dict[str, tuple[float, float]]:
    """(rate, burst) of every bucket these groups spend: a spread bucket's is its group's pace,
    with a burst of 1 (its letters come one at a time)."""
    out = {k: limits.of(k) for k in bucket_keys(groups)}
    out |= {g.spread: (g.pace, 1.0) for g in groups if g.spread and g.pace is not None}
    return out


def jitter(tokens: dict[str, float], refilled: Mapping[str, float], cost: Callable[[], float]) -> None:
    """Charge each letter a spread bucket gave ``cost()`` tokens instead of 1, so that the gaps
    between a target's letters vary (0.75 to 1.25 of the pace) and arrivals are no metronome."""
    for key, level in tokens.items():
        if key.startswith("spread:") and key in refilled:
            spent = round(refilled[key] - level)
            if spent > 0:
                tokens[key] = refilled[key] - sum(cost() for _ in range(spent))


def spread_waits(
    groups: Sequence[Group], tokens: Mapping[str, float], now: dt.datetime
) -> dict[GroupId, dt.datetime]:
    """The groups whose spread bucket has no token, and when it has one again."""
    out = {}
    for g in groups:
        if g.spread and g.pace and tokens[g.spread] < 1:
            out[g.ident] = now + dt.timedelta(seconds=(1 - tokens[g.spread]) / g.pace)
    return out


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
    waits = [max(max(0.0, 1 - tokens[k]) / _rate(g, k, limits) for k in _keys(g)) for g in groups]
    return min(waits, default=None)


def _rate(group: Group, key: str, limits: Limits) -> float:
    return group.pace if key == group.spread and group.pace else limits.of(key)[0]
