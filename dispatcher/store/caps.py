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
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, case, delete, select, tuple_, update

from dispatcher.models import Caps, Claim, ClaimGroup, GroupId
from dispatcher.store.engine import dialect_insert
from dispatcher.store.schema import cap_counts

KEEP = dt.timedelta(days=2)  # windows closed longer ago than this are dropped


class Window(NamedTuple):
    label: str  # the ``period`` column
    ends: dt.datetime
    kind: str  # "hourly", "day's": as ``why`` names the cap


class Cap(NamedTuple):
    """One cap on one key in one window: the most letters it allows there."""

    key: str  # "email:x@parl.example", "fax:+32…", "domain:parl.example"
    window: Window
    limit: int

    @property
    def token(self) -> str:
        return f"cap|{self.window.label}|{self.key}"


def hour(now: dt.datetime) -> Window:
    start = now.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    return Window(f"hour {start:%Y-%m-%dT%H}Z", start + dt.timedelta(hours=1), "hourly")


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

    paced: list[ClaimGroup]  # the groups, their caps' tokens added to their keys
    left: dict[str, float]  # token → places left in its window (the strictest cap's)
    mine: dict[GroupId, list[Cap]]  # each group's caps

    def capped(self, budget: Mapping[str, float]) -> dict[GroupId, dt.datetime]:
        """Groups that have reached a cap, and when all their reached caps' windows end."""
        out = {}
        for ident, caps in self.mine.items():
            full = [c.window.ends for c in caps if budget[c.token] < 1]
            if full:
                out[ident] = max(full)
        return out


def hold(conn: Connection, groups: Sequence[ClaimGroup], now: dt.datetime) -> Held:
    """Lock and read the counts of every cap these groups' letters count against."""
    mine = {g.ident: list(counters(g.keys, g.caps, now)) for g in groups}
    strictest: dict[str, int] = {}
    where: dict[str, Cap] = {}
    for caps in mine.values():
        for c in caps:
            strictest[c.token] = min(strictest.get(c.token, c.limit), c.limit)
            where[c.token] = c
    if not where:
        return Held(list(groups), {}, mine)
    used = _locked(conn, where.values(), now)
    left = {token: float(strictest[token] - used[c.key, c.window.label]) for token, c in where.items()}
    paced = [replace(g, keys=(*g.keys, *(c.token for c in mine[g.ident]))) for g in groups]
    return Held(paced, left, mine)


def _locked(conn: Connection, caps: Iterable[Cap], now: dt.datetime) -> dict[tuple[str, str], int]:
    t = cap_counts
    wanted = sorted({(c.key, c.window.label): c.window.ends for c in caps}.items())
    rows = tuple_(t.c.key, t.c.period).in_([pair for pair, _ in wanted])
    read = select(t.c.key, t.c.period, t.c.used).where(rows).order_by(t.c.key, t.c.period).with_for_update()
    found = {(r.key, r.period): r.used for r in conn.execute(read)}
    missing = [
        {"key": k, "period": p, "used": 0, "ends": ends} for (k, p), ends in wanted if (k, p) not in found
    ]
    if not missing:
        return found
    # A new window opened: start its counts (another worker may have just done so: then its
    # rows are read and locked below) and drop the counts of windows long closed.
    conn.execute(dialect_insert(conn, t).values(missing).on_conflict_do_nothing())
    conn.execute(delete(t).where(t.c.ends < now - KEEP))
    return {(r.key, r.period): r.used for r in conn.execute(read)}


def charge(conn: Connection, held: Held, claims: Sequence[Claim]) -> None:
    """Count the leased letters against every cap they reach: one statement."""
    counts = Counter((c.key, c.window.label) for claim in claims for c in held.mine.get(_ident(claim), ()))
    if not counts:
        return
    t = cap_counts
    whens = [(and_(t.c.key == k, t.c.period == p), n) for (k, p), n in sorted(counts.items())]
    rows = tuple_(t.c.key, t.c.period).in_(sorted(counts))
    conn.execute(update(t).where(rows).values(used=t.c.used + case(*whens, else_=0)))


def _ident(claim: Claim) -> GroupId:
    return (claim.action_id, claim.target_id, claim.channel)


def reached(conn: Connection, keys: Sequence[str], caps: Caps, now: dt.datetime) -> list[Cap]:
    """The caps a letter reaching ``keys`` waits for now, the one that ends last first."""
    mine = list(counters(keys, caps, now))
    if not mine:
        return []
    t = cap_counts
    rows = tuple_(t.c.key, t.c.period).in_([(c.key, c.window.label) for c in mine])
    used = {
        (r.key, r.period): r.used for r in conn.execute(select(t.c.key, t.c.period, t.c.used).where(rows))
    }
    full = [c for c in mine if used.get((c.key, c.window.label), 0) >= c.limit]
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
