"""When each target's last letter goes, from its plan: a walk forward through the clock hours.

Not today's rate divided into the backlog: every lane (one action × target × channel with
letters pending) sends, hour by hour, as much as all of these allow at once: its pacing (or its
fax line's time per letter), its office hours and holidays (``Calendar``), its address's hourly
cap (per UTC clock hour, as the store counts it) and daily cap (midnight to midnight in its
zone), the hourly cap of its email domain, shared by every lane reaching that domain (and a cap
on an address shared by every lane reaching it), and the deployment's overall rate. Where lanes
share a limit they share it evenly, as the claim's round-robin does. A ``digest`` lane sends one
message per office day at its digest time: its letters go in the next one (a fax digest's
faxes are handed over together then, and take the number's line a page at a time).

``spread: even`` aims the last letter at the deadline less the margin by design; the forecast
then only asks whether the caps and hours allow that. Pure: ``now`` is given, so a test plays a
campaign of weeks in a second.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dispatcher.models import Caps
from dispatcher.plans import digests
from dispatcher.plans.calendar import Calendar, Span

HOUR = dt.timedelta(hours=1)
BEYOND = dt.timedelta(days=120)  # how far past the deadline the walk looks for the last letter


@dataclass(frozen=True)
class Lane:
    """One action × target × channel's pending letters and what its plan lets them do."""

    action_id: str
    target_id: str
    channel: str
    letters: int
    keys: tuple[str, ...]  # the addresses it reaches ("email:x@parl.example"): their caps
    caps: Caps  # per_hour, per_day in caps.zone, domain_per_hour
    calendar: Calendar
    seconds_each: float  # the pacing's interval, or a line's time per letter (a fax page)
    deadline: dt.datetime
    line: str | None = None  # takes one letter at a time
    spread: str = "asap"
    margin: dt.timedelta = dt.timedelta(0)
    digest_at: dt.time | None = None  # delivery: digest, at this time in the lane's zone
    digest_pages: int = 20  # a fax digest's faxes: at most this many pages each, a cover in them
    # Letters already counted against its caps (the store's): per address or domain key, in
    # the clock hour of ``now``, and per address in the day of ``now`` in its zone.
    spent_hour: Mapping[str, int] = field(default_factory=dict)
    spent_today: Mapping[str, int] = field(default_factory=dict)

    @functools.cached_property
    def domains(self) -> tuple[str, ...]:
        return tuple(sorted({"domain:" + k.rpartition("@")[2].lower() for k in self.keys if "@" in k}))


@dataclass(frozen=True)
class Outlook:
    lane: Lane
    last: dt.datetime | None  # when its last letter goes; None: not within BEYOND the deadline
    rushed: bool = False  # the caps and hours leave no room for the spread's margin

    @property
    def fits(self) -> bool:
        return self.last is not None and self.last < self.lane.deadline


def forecast(
    lanes: Sequence[Lane], now: dt.datetime, rate_global: float, until: dt.datetime | None = None
) -> list[Outlook]:
    """Each lane's outlook, in the order given. Lanes sharing an address, a domain or a line
    must be forecast together: pass every lane of the deployment. ``until``: walk no further
    (a lane not done by then has no last letter), for a question about whether one fits."""
    each = [lane for lane in lanes if lane.digest_at is None and lane.letters > 0]
    walked = _Walk(each, now, rate_global, until).run()
    out = []
    for lane in lanes:
        if lane.letters <= 0:
            out.append(Outlook(lane, now))
        elif lane.digest_at is not None:
            out.append(Outlook(lane, _digest_last(lane, now)))
        else:
            out.append(_spread(lane, walked.get(id(lane)), now))
    return out


def _spread(lane: Lane, last: dt.datetime | None, now: dt.datetime) -> Outlook:
    """``even`` stretches what the caps allow sooner to the last open moment before its aim."""
    aim = lane.deadline - lane.margin
    if lane.spread != "even" or last is None or aim <= now:
        return Outlook(lane, last, rushed=lane.spread == "even" and last is not None and last >= aim)
    if last >= aim:
        return Outlook(lane, last, rushed=True)
    spans = lane.calendar.spans(last, aim)
    return Outlook(lane, min(spans[-1][1], aim) if spans else last)


# -- digests ------------------------------------------------------------------------------------


def digest_times(lane: Lane, now: dt.datetime, until: dt.datetime) -> Iterable[dt.datetime]:
    """When the lane's digests go (``plans.digests``): from now on, until ``until``."""
    assert lane.digest_at is not None
    day = now.astimezone(lane.calendar.zone).date()
    while dt.datetime.combine(day, dt.time(), lane.calendar.zone) <= until:
        found = digests.moment(lane.calendar, lane.digest_at, day)
        if found is not None and found.at >= now:
            yield found.at.astimezone(dt.UTC)
        day += dt.timedelta(days=1)


def _digest_last(lane: Lane, now: dt.datetime) -> dt.datetime | None:
    """The last letter of the next digest, which carries them all: an email at its moment; by
    fax its faxes handed over together at that moment (``sending.digest``), each a cover and at
    most ``digest_pages`` pages, the number's line taking them a page at a time."""
    start = next(iter(digest_times(lane, now, lane.deadline + BEYOND)), None)
    if start is None or lane.line is None:
        return start
    covers = math.ceil(lane.letters / (lane.digest_pages - 1))
    return start + dt.timedelta(seconds=(lane.letters + covers - 1) * lane.seconds_each)


# -- the walk -------------------------------------------------------------------------------------


@dataclass
class _Track:
    """A lane's state during the walk."""

    lane: Lane
    left: int
    spans: list[Span]
    free: dt.datetime  # when its pacing lets the next letter go
    last: dt.datetime | None = None
    at: int = 0  # the first of its spans not yet behind the walk


class _Walk:
    def __init__(
        self, lanes: Sequence[Lane], now: dt.datetime, rate_global: float, until: dt.datetime | None
    ) -> None:
        self.now, self.rate_global = now, rate_global
        self.until = until or max((lane.deadline for lane in lanes), default=now) + BEYOND
        self.tracks = [
            _Track(lane, lane.letters, lane.calendar.spans(now, self.until), now) for lane in lanes
        ]
        self.day_used: defaultdict[tuple[str, dt.date], int] = defaultdict(int)
        self.hour_used: Counter[str] = Counter()  # in the clock hour of now, before it
        self.line_free: dict[str | None, dt.datetime] = {}  # when each line is free again
        for lane in lanes:
            today = now.astimezone(lane.calendar.zone).date()
            for key, n in lane.spent_today.items():
                self.day_used[key, today] = max(self.day_used[key, today], n)
            for key, n in lane.spent_hour.items():
                self.hour_used[key] = max(self.hour_used[key], n)

    def run(self) -> dict[int, dt.datetime | None]:
        hour = self.now.replace(minute=0, second=0, microsecond=0)
        while hour < self.until:
            active = [t for t in self.tracks if t.left > 0]
            if not active:
                break
            opens = min((o for t in active if (o := self._next_open(t, hour)) is not None), default=None)
            if opens is None:
                break
            hour = max(hour, opens.replace(minute=0, second=0, microsecond=0))
            self._hour(active, hour)
            hour += HOUR
        return {id(t.lane): (t.last if t.left == 0 else None) for t in self.tracks}

    def _next_open(self, track: _Track, hour: dt.datetime) -> dt.datetime | None:
        while track.at < len(track.spans) and track.spans[track.at][1] <= hour:
            track.at += 1
        return max(track.spans[track.at][0], hour) if track.at < len(track.spans) else None

    def _hour(self, active: list[_Track], hour: dt.datetime) -> None:
        """One clock hour (the hourly caps' window), in steps between every opening, closing and
        local midnight in it: the letters of a step go before those of the next, as they would."""
        start, end = max(hour, self.now), hour + HOUR
        found = [(t, p) for t in active if (p := self._pieces(t, start, end))]
        cuts = sorted({edge for _, pieces in found for (a, b), _ in pieces for edge in (a, b)})
        # This hour's letters per address and domain; in the first, those counted before now.
        used: Counter[str] = Counter(self.hour_used) if hour <= self.now else Counter()
        for a, b in itertools.pairwise(cuts):
            step = [
                (t, [((max(s, a), min(e, b)), d) for (s, e), d in p if s < b and e > a]) for t, p in found
            ]
            live = [(t, p) for t, p in step if p]
            if live:
                self._step(
                    [t for t, _ in live], dict(enumerate(p for _, p in live)), used, (b - a).total_seconds()
                )

    def _step(
        self,
        active: list[_Track],
        pieces: dict[int, list[tuple[Span, dt.date]]],
        used: Counter[str],
        seconds: float,
    ) -> None:
        """What each track open in this step sends in it, the caps shared as the claim shares them."""
        room = {i: self._own(track, pieces[i]) for i, track in enumerate(active)}
        wants = {i: min(room[i], track.left) for i, track in enumerate(active)}
        shared: defaultdict[str, list[int]] = defaultdict(list)
        limits: dict[str, int] = {"*": math.floor(self.rate_global * seconds) or 1}
        for i, track in enumerate(active):
            lane = track.lane
            for key in lane.keys:
                shared[key].append(i)
                limits[key] = min(limits.get(key, _NO), _left_today(lane, key, pieces[i], self.day_used))
                if lane.caps.per_hour is not None:
                    limits[key] = min(limits[key], max(0, lane.caps.per_hour - used[key]))
            for domain in lane.domains if lane.caps.domain_per_hour is not None else ():
                shared[domain].append(i)
                cap = max(0, (lane.caps.domain_per_hour or _NO) - used[domain])
                limits[domain] = min(limits.get(domain, _NO), cap)
            if lane.line is not None:
                shared[lane.line].append(i)
                limits[lane.line] = max(limits.get(lane.line, 0), room[i])
        shared["*"] = list(range(len(active)))
        # The addresses' caps first: a lane its own cap holds back leaves its share of the
        # domain, the line and the deployment to the others.
        for name in sorted(shared, key=_order):
            _share(wants, shared[name], limits[name])
        for i, track in enumerate(active):
            if wants[i]:
                before = track.left
                self._send(track, pieces[i], wants[i])
                for name in (*track.lane.keys, *track.lane.domains):
                    used[name] += before - track.left

    def _pieces(self, track: _Track, a: dt.datetime, b: dt.datetime) -> list[tuple[Span, dt.date]]:
        """Its open spans within [a, b), cut at its local midnight (the day's cap changes there)."""
        zone, out = track.lane.calendar.zone, []
        for s, e in itertools.islice(track.spans, track.at, None):
            if s >= b:
                break
            s, e = max(s, a), min(e, b)
            while s < e:
                day = s.astimezone(zone).date()
                midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
                out.append(((s, min(e, midnight)), day))
                s = min(e, midnight)
        return out

    def _free(self, track: _Track) -> dt.datetime:
        line = track.lane.line
        return max(track.free, self.line_free[line]) if line in self.line_free else track.free

    def _own(self, track: _Track, pieces: list[tuple[Span, dt.date]]) -> int:
        """What its own pacing (or line) lets it send in these pieces."""
        n, free = 0, self._free(track)
        for (s, e), _day in pieces:
            start = max(s, free)
            if start < e:
                fit = math.ceil((e - start).total_seconds() / track.lane.seconds_each)
                n += fit
                free = start + dt.timedelta(seconds=fit * track.lane.seconds_each)
        return n

    def _send(self, track: _Track, pieces: list[tuple[Span, dt.date]], n: int) -> None:
        """The next ``n`` letters, at its pace through the pieces, each day's cap kept."""
        each = track.lane.seconds_each
        for (s, e), day in pieces:
            start = max(s, self._free(track))
            if start >= e or n == 0:
                continue
            room = min(_left_today(track.lane, k, [((s, e), day)], self.day_used) for k in track.lane.keys)
            k = min(n, math.ceil((e - start).total_seconds() / each), room)
            if k <= 0:
                continue
            for key in track.lane.keys:
                self.day_used[key, day] += k
            track.last = start + dt.timedelta(seconds=(k - 1) * each)
            track.free = track.last + dt.timedelta(seconds=each)
            if track.lane.line is not None:  # one letter at a time, whichever lane it is for
                self.line_free[track.lane.line] = track.free
            track.left -= k
            n -= k


_NO = 10**12  # no cap


def _order(name: str) -> int:
    return 3 if name == "*" else 2 if name.startswith("line:") else 1 if name.startswith("domain:") else 0


def _left_today(
    lane: Lane, key: str, pieces: list[tuple[Span, dt.date]], used: dict[tuple[str, dt.date], int]
) -> int:
    """The most the day's cap on ``key`` still allows over the days these pieces fall on."""
    if lane.caps.per_day is None:
        return _NO
    return sum(max(0, lane.caps.per_day - used.get((key, day), 0)) for day in {d for _, d in pieces})


def _share(wants: dict[int, int], members: list[int], limit: int) -> None:
    """Cut the members' wants to ``limit`` in all, evenly (water-filling: the small ones whole),
    the remainder of the division one each in the claim's turn (its order)."""
    if sum(wants[i] for i in members) <= limit:
        return
    rest, left = sorted(members), limit
    while True:
        fair = left // len(rest)
        small = [i for i in rest if wants[i] <= fair]
        if not small:
            break
        left -= sum(wants[i] for i in small)
        rest = [i for i in rest if i not in small]
    for n, i in enumerate(rest):
        wants[i] = fair + (1 if n < left - fair * len(rest) else 0)


def with_changes(lanes: Sequence[Lane], lane: Lane, **changes: object) -> list[Lane]:
    """The lanes with one of them changed (``caps=…``, ``digest_at=…``): to test a remedy."""
    return [dataclasses.replace(x, **changes) if x is lane else x for x in lanes]  # type: ignore[arg-type]


# -- what would fix a lane that misses its deadline ------------------------------------------------

CAPS = {"max_per_day": "per_day", "max_per_hour": "per_hour", "domain_max_per_hour": "domain_per_hour"}


@dataclass(frozen=True)
class Shortfall:
    """The first-order reason: so many letters need ``need`` units at ``rate``; ``left`` remain."""

    unit: str  # "office days", "office hours", "hours of line time"
    need: float
    left: float
    rate: str  # "100/day", "30/hour", "2 min each"


@dataclass(frozen=True)
class Remedies:
    caps: tuple[tuple[str, int], ...]  # (field, value) each of which alone would make it fit
    digest: bool  # delivery: digest would
    extend_to: dt.datetime | None  # a deadline this late would (None: not within BEYOND)


def office(lane: Lane, now: dt.datetime) -> tuple[int, float]:
    """Office days (local dates with an opening) and open seconds from now to the deadline."""
    spans = lane.calendar.spans(now, lane.deadline)
    zone, days = lane.calendar.zone, set()
    for s, e in spans:  # an email's office is one span of many days
        day, last = s.astimezone(zone).date(), (e - dt.timedelta(microseconds=1)).astimezone(zone).date()
        while day <= last:
            days.add(day)
            day += dt.timedelta(days=1)
    return len(days), lane.calendar.open_seconds(now, lane.deadline)


def shortfall(lane: Lane, lanes: Sequence[Lane], now: dt.datetime) -> Shortfall:
    """Of the lane's limits, the one its letters most exceed before the deadline."""
    days, seconds = office(lane, now)
    hours, caps = seconds / 3600, lane.caps
    line = "hours of line time" if lane.line else "office hours"
    options = [Shortfall(line, lane.letters * lane.seconds_each / 3600, hours, _each(lane.seconds_each))]
    if caps.per_day is not None:
        options.append(
            Shortfall("office days", math.ceil(lane.letters / caps.per_day), days, f"{caps.per_day}/day")
        )
    if caps.per_hour is not None:
        options.append(
            Shortfall("office hours", math.ceil(lane.letters / caps.per_hour), hours, f"{caps.per_hour}/hour")
        )
    if caps.domain_per_hour is not None and lane.domains:
        mates = [x for x in lanes if set(x.domains) & set(lane.domains)]
        letters = sum(x.letters for x in mates)
        rate = f"{caps.domain_per_hour}/hour for its domain's {len(mates)} lanes"
        options.append(Shortfall("office hours", math.ceil(letters / caps.domain_per_hour), hours, rate))
    return max(options, key=lambda o: o.need / o.left if o.left else math.inf)


def _each(seconds: float) -> str:
    return f"{seconds / 60:g} min each" if seconds >= 60 else f"{1 / seconds:g}/s"


def remedies(
    lanes: Sequence[Lane], lane: Lane, now: dt.datetime, rate_global: float, digest_at: dt.time
) -> Remedies:
    """What would make ``lane`` fit, each change tried on a forecast of the lanes it shares an
    address, a domain or a line with (the others cannot change its outcome)."""
    lanes = [x for x in lanes if x is lane or _shares(x, lane)]
    fits = [(name, v) for name in CAPS if (v := _raised(lanes, lane, name, now, rate_global)) is not None]
    digest = lane.digest_at is None and _fits(
        with_changes(lanes, lane, digest_at=digest_at), lane, now, rate_global
    )
    return Remedies(tuple(fits), digest, _extend(lanes, lane, now, rate_global))


def _shares(a: Lane, b: Lane) -> bool:
    return bool({*a.keys, *a.domains, a.line} & {*b.keys, *b.domains, b.line} - {None})


def _fits(lanes: Sequence[Lane], like: Lane, now: dt.datetime, rate_global: float) -> bool:
    index = next(i for i, x in enumerate(lanes) if (x.action_id, x.target_id, x.channel) == _ident(like))
    return forecast(lanes, now, rate_global, until=like.deadline)[index].fits


def _ident(lane: Lane) -> tuple[str, str, str]:
    return lane.action_id, lane.target_id, lane.channel


def _raised(lanes: Sequence[Lane], lane: Lane, name: str, now: dt.datetime, rate_global: float) -> int | None:
    """The cap ``name`` raised to where the lane fits (an estimate from the office time left,
    checked and raised by a quarter up to four times); None: that cap is not what holds it."""
    attr = CAPS[name]
    current: int | None = getattr(lane.caps, attr)
    if current is None or (attr == "domain_per_hour" and not lane.domains):
        return None
    days, seconds = office(lane, now)
    mates = [x for x in lanes if set(x.domains) & set(lane.domains)]
    letters = sum(x.letters for x in mates) if attr == "domain_per_hour" else lane.letters
    span = days if attr == "per_day" else math.floor(seconds / 3600)
    value = max(current + 1, math.ceil(letters / max(span, 1)))
    for _ in range(4):
        if _fits(raise_cap(lanes, lane, name, value), lane, now, rate_global):
            return value
        value = math.ceil(value * 1.25)
    return None


def raise_cap(lanes: Sequence[Lane], lane: Lane, name: str, value: int) -> list[Lane]:
    """The lanes with the cap ``name`` (a plan's field) at ``value`` for ``lane``, and for a
    domain's cap for every lane reaching its domain (the strictest holds for all)."""
    attr = CAPS[name]
    raised: dict[str, Any] = {attr: value}
    domain = attr == "domain_per_hour"
    return [
        dataclasses.replace(x, caps=dataclasses.replace(x.caps, **raised))
        if x is lane or (domain and set(x.domains) & set(lane.domains))
        else x
        for x in lanes
    ]


def _extend(lanes: Sequence[Lane], lane: Lane, now: dt.datetime, rate_global: float) -> dt.datetime | None:
    """The deadline the lane's letters would meet: its last letter as the caps allow, plus the
    spread's margin (an even spread aims that long before the deadline)."""
    later = with_changes(lanes, lane, spread="asap")
    last = forecast(later, now, rate_global)[
        later.index(next(x for x in later if _ident(x) == _ident(lane)))
    ].last
    margin = lane.margin if lane.spread == "even" else dt.timedelta(0)
    return None if last is None else last + margin + dt.timedelta(seconds=1)
