"""Caps per recipient address and per email domain, held for the deployment at claim time.

Officials' filters quarantine volume, so a letter is leased only while every address it reaches
is under its hourly and daily cap and every email domain it reaches under its hourly cap
(``models.Caps``). The counts live in ``cap_counts``, one row per key and window, locked by the
claim after the pacing buckets (always in that order, and sorted, so no two claims deadlock).

To the claim's allocator a cap is one more token bucket: each window's places left appear as a
key of the group (``Held.paced``), spent with the others, so groups sharing an official or a
domain share its cap round-robin. Where groups sharing a key have different caps, the strictest
holds for all of them.

A letter counts when it is leased, every attempt: a letter that then fails may still have reached
the filter, so nothing is given back.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, delete, select, update

from dispatcher import pacing
from dispatcher.models import Caps, Claim, ClaimGroup, GroupId
from dispatcher.store import ClaimRequest
from dispatcher.store.engine import dialect_insert, keyed_values
from dispatcher.store.schema import cap_counts

KEEP = dt.timedelta(days=2)  # windows closed longer ago than this are dropped


class Window(NamedTuple):
    label: str  # "hour 2026-12-07T14Z", "day 2026-12-07 Europe/Brussels"
    ends: dt.datetime
    kind: str  # "hourly", "day's": as ``why`` names the cap


class Cap(NamedTuple):
    """One cap on one key in one window: the most letters it allows there."""

    key: str  # "email:x@parl.example", "fax:+32…", "domain:parl.example"
    window: Window
    limit: int

    @property
    def counter(self) -> str:
        """Its row in ``cap_counts``, and its token beside the pacing buckets in the claim."""
        return f"{self.window.label}|{self.key}"


# Cached: a claim asks for the same window once per key of hundreds of groups.
@functools.lru_cache(maxsize=64)
def hour(now: dt.datetime) -> Window:
    start = now.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    return Window(f"hour {start:%Y-%m-%dT%H}Z", start + dt.timedelta(hours=1), "hourly")


@functools.lru_cache(maxsize=64)
def day(now: dt.datetime, zone: str) -> Window:
    """Midnight to midnight in the recipient's zone (23 or 25 hours across a DST change)."""
    tz = ZoneInfo(zone)
    today = now.astimezone(tz).date()
    ends = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tzinfo=tz).astimezone(dt.UTC)
    return Window(f"day {today.isoformat()} {zone}", ends, "day's")


def domain(key: str) -> str | None:
    """``email:someone@parl.example`` → ``domain:parl.example``; other channels have none."""
    kind, _, address = key.partition(":")
    if kind != "email" or "@" not in address:
        return None
    return "domain:" + address.rpartition("@")[2].lower()


def counters(keys: Sequence[str], caps: Caps, now: dt.datetime) -> Iterator[Cap]:
    """The caps one letter reaching ``keys`` counts against. A letter with copies to several
    mailboxes of one domain is one message to its server: it counts once for the domain."""
    addresses = tuple(dict.fromkeys(keys))
    if caps.per_hour is not None:
        yield from (Cap(k, hour(now), caps.per_hour) for k in addresses)
    if caps.per_day is not None:
        yield from (Cap(k, day(now, caps.zone), caps.per_day) for k in addresses)
    if caps.domain_per_hour is not None:
        domains = dict.fromkeys(d for d in map(domain, addresses) if d)
        yield from (Cap(d, hour(now), caps.domain_per_hour) for d in domains)


@dataclass(frozen=True)
class Held:
    """The cap counts of a claim's groups, locked for its transaction."""

    paced: list[ClaimGroup]  # the groups, their caps' counters added to their keys (if due)
    left: dict[str, float]  # counter → places left in its window (the strictest cap's)
    mine: dict[GroupId, list[Cap]]  # each group's caps

    def capped(self, budget: Mapping[str, float]) -> dict[GroupId, dt.datetime]:
        """Groups that have reached a cap, and when all their reached caps' windows end."""
        out = {}
        for ident, caps in self.mine.items():
            full = [c.window.ends for c in caps if budget[c.counter] < 1]
            if full:
                out[ident] = max(full)
        return out


def allocate(
    conn: Connection,
    groups: Sequence[ClaimGroup],
    rows: Sequence[Sequence[int]],
    tokens: Mapping[str, float],
    request: ClaimRequest,
    now: dt.datetime,
) -> tuple[Held, dict[str, float], list[tuple[int, int]]]:
    """``pacing.allocate`` within the caps: the counts, the tokens and caps left, the rows chosen.

    Only the caps of the groups pacing alone would serve are locked and read, so a round costs
    what it claims, not every group with letters due; a capped group among them leaves its share
    unused this round, and is left out by the feeder until its window ends.
    """
    trial = pacing.allocate(groups, rows, dict(tokens), dict(request.room), request.start)
    served = {i for i, _ in trial}
    held = hold(conn, groups, [i in served for i in range(len(groups))], now)
    budget = {**tokens, **held.left}
    mine = [list(r) if i in served else [] for i, r in enumerate(rows)]
    return held, budget, pacing.allocate(held.paced, mine, budget, dict(request.room), request.start)


def hold(conn: Connection, groups: Sequence[ClaimGroup], due: Sequence[bool], now: dt.datetime) -> Held:
    """Lock and read the counts of every cap the letters of the groups ``due`` count against."""
    mine = {g.ident: list(counters(g.keys, g.caps, now)) for g, d in zip(groups, due, strict=True) if d}
    strictest: dict[str, int] = {}
    ends: dict[str, dt.datetime] = {}
    for caps in mine.values():
        for c in caps:
            strictest[c.counter] = min(strictest.get(c.counter, c.limit), c.limit)
            ends[c.counter] = c.window.ends
    if not ends:
        return Held(list(groups), {}, mine)
    used = _locked(conn, ends, now)
    left = {counter: float(limit - used[counter]) for counter, limit in strictest.items()}
    paced = [
        replace(g, keys=(*g.keys, *(c.counter for c in mine[g.ident]))) if g.ident in mine else g
        for g in groups
    ]
    return Held(paced, left, mine)


def _locked(conn: Connection, ends: Mapping[str, dt.datetime], now: dt.datetime) -> dict[str, int]:
    t = cap_counts
    names = sorted(ends)
    # The names as one JSON parameter, not one parameter each: the same text every round, which
    # PostgreSQL's driver prepares once rather than planning hundreds of parameters each time.
    asked = select(keyed_values(conn, "counters", dict.fromkeys(names, 0)).c.key)
    read = select(t.c.counter, t.c.used).where(t.c.counter.in_(asked)).order_by(t.c.counter).with_for_update()
    found = {r.counter: r.used for r in conn.execute(read)}
    missing = [{"counter": n, "used": 0, "ends": ends[n]} for n in names if n not in found]
    if not missing:
        return found
    # A new window opened: start its counts (another worker may have just done so: then its
    # rows are read and locked below) and drop the counts of windows long closed.
    conn.execute(dialect_insert(conn, t).values(missing).on_conflict_do_nothing())
    conn.execute(delete(t).where(t.c.ends < now - KEEP))
    return {r.counter: r.used for r in conn.execute(read)}


def charge(conn: Connection, held: Held, claims: Sequence[Claim]) -> None:
    """Count the leased letters against every cap they reach: one statement."""
    counts = Counter(c.counter for claim in claims for c in held.mine.get(_ident(claim), ()))
    if not counts:
        return
    t, more = cap_counts, keyed_values(conn, "charged", counts)
    conn.execute(update(t).where(t.c.counter == more.c.key).values(used=t.c.used + more.c.value))


def _ident(claim: Claim) -> GroupId:
    return (claim.action_id, claim.target_id, claim.channel)


def reached(conn: Connection, keys: Sequence[str], caps: Caps, now: dt.datetime) -> list[Cap]:
    """The caps a letter reaching ``keys`` waits for now, the one that ends last first."""
    mine = list(counters(keys, caps, now))
    if not mine:
        return []
    t = cap_counts
    query = select(t.c.counter, t.c.used).where(t.c.counter.in_([c.counter for c in mine]))
    used = {r.counter: r.used for r in conn.execute(query)}
    full = [c for c in mine if used.get(c.counter, 0) >= c.limit]
    return sorted(full, key=lambda c: c.window.ends, reverse=True)


def said(cap: Cap, now: dt.datetime) -> str:
    """ "the hourly cap of 30 for minister@parl.example is reached until 14:00 UTC"."""
    kind, _, name = cap.key.partition(":")
    who = f"the domain {name}" if kind == "domain" else name
    ends = cap.window.ends
    until = (
        f"{ends:%H:%M} UTC" if ends.date() == now.astimezone(dt.UTC).date() else f"{ends:%Y-%m-%d %H:%M} UTC"
    )
    zone = cap.window.label.rpartition(" ")[2] if cap.window.kind == "day's" else ""
    local = f" (midnight in {zone})" if zone and zone != "UTC" else ""
    return f"the {cap.window.kind} cap of {cap.limit} for {who} is reached until {until}{local}"
