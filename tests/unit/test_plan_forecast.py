"""The plan's forecast against a simulation of the same plan, letter by letter: seeded random
campaigns (caps per address, per day in the target's zone and per shared domain, office hours
with lunch breaks, holidays, zones with DST changes and half-hour offsets, fax lines) must agree
on whether every letter goes before the deadline, and on when the last one goes. Where a lane
misses, each remedy the forecast names must make the simulated letters fit."""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dispatcher.models import Caps
from dispatcher.plans.calendar import Calendar
from dispatcher.plans.forecast import Lane, forecast, raise_cap, remedies, with_changes
from dispatcher.plans.hours import parse_hours
from dispatcher.sending.forecast import described
from tests.support.web_client import web_settings

ZONES = ("Europe/Brussels", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "UTC")
HOURS = ("always", "Mon-Fri 08:00-18:00", "Mon-Fri 09:00-12:30, 13:30-17:00", "daily 22:00-06:00")
# Around the spring and autumn changes of both hemispheres.
STARTS = (dt.datetime(2030, 3, 29, tzinfo=dt.UTC), dt.datetime(2030, 10, 24, tzinfo=dt.UTC))
RATE_GLOBAL = 100.0


def simulate(lanes: Sequence[Lane], now: dt.datetime, until: dt.datetime) -> dict[str, dt.datetime | None]:
    """Each letter at the first moment its lane's pacing, office and caps allow, lanes taking
    turns at equal times (as the claim's round-robin does); the last letter's time per lane."""
    left = {lane.target_id: lane.letters for lane in lanes}
    last: dict[str, dt.datetime | None] = {lane.target_id: None for lane in lanes}
    used: Counter[tuple[str, str]] = Counter()
    queue = [(now, i) for i, lane in enumerate(lanes) if lane.letters]
    while queue:
        t, i = heapq.heappop(queue)
        lane = lanes[i]
        if t >= until:
            continue
        wait = _wait(lane, t, used)
        if wait is not None:
            heapq.heappush(queue, (wait, i))
            continue
        for counter in _counters(lane, t):
            used[counter] += 1
        last[lane.target_id], left[lane.target_id] = t, left[lane.target_id] - 1
        if left[lane.target_id]:
            heapq.heappush(queue, (t + dt.timedelta(seconds=lane.seconds_each), i))
    return {k: (v if not left[k] else None) for k, v in last.items()}


def _counters(lane: Lane, t: dt.datetime) -> list[tuple[str, str]]:
    hour, day = f"{t:%Y%m%d%H}", str(t.astimezone(lane.calendar.zone).date())
    return [("h", hour + lane.keys[0]), ("d", day + lane.keys[0])] + [("h", hour + d) for d in lane.domains]


def _wait(lane: Lane, t: dt.datetime, used: Counter[tuple[str, str]]) -> dt.datetime | None:
    """None: the letter may go at ``t``; else when to try again."""
    if not lane.calendar.is_open(t):
        return lane.calendar.next_open(t) or t + dt.timedelta(days=400)
    hour_end = t.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    hourly, daily, domain = _counters(lane, t)[0], _counters(lane, t)[1], _counters(lane, t)[2:]
    caps = lane.caps
    if caps.per_hour is not None and used[hourly] >= caps.per_hour:
        return hour_end
    if any(caps.domain_per_hour is not None and used[d] >= caps.domain_per_hour for d in domain):
        return hour_end
    if caps.per_day is not None and used[daily] >= caps.per_day:
        zone = lane.calendar.zone
        tomorrow = t.astimezone(zone).date() + dt.timedelta(days=1)
        return dt.datetime.combine(tomorrow, dt.time(), zone).astimezone(dt.UTC)
    return None


def scenario(seed: int) -> tuple[list[Lane], dt.datetime]:
    rng = random.Random(seed)
    now = rng.choice(STARTS) + dt.timedelta(minutes=rng.randrange(4 * 24 * 60))
    deadline = now + dt.timedelta(hours=rng.randrange(6, 12 * 24))
    lanes, shared = [], rng.choice(("parl.example", None))
    for n in range(rng.randrange(1, 5)):
        fax, hours, zone = rng.random() < 0.3, rng.choice(HOURS), rng.choice(ZONES)
        closed = {(now + dt.timedelta(days=rng.randrange(14))).date() for _ in range(rng.randrange(3))}
        caps = Caps(
            rng.choice((None, 5, 30, 100)),
            rng.choice((None, 40, 300)),
            rng.choice((None, 20, 120)),
            zone,
        )
        address = f"fax:+3222{n}" if fax else f"email:t{n}@{shared or f'd{n}.example'}"
        lanes.append(
            Lane(
                "a",
                f"t{n}",
                "fax" if fax else "email",
                rng.randrange(1, 1500),
                (address,),
                caps,
                Calendar(parse_hours(hours), ZoneInfo(zone), closed.__contains__),
                120.0 if fax else 0.5,
                deadline,
                line=f"line:{address}" if fax else None,
            )
        )
    # The strictest domain cap holds for every lane reaching the domain (README: Caps).
    strictest = min(x.caps.domain_per_hour or 10**9 for x in lanes if x.domains == lanes[0].domains)
    return [_domain_cap(x, strictest if shared else None) for x in lanes], now


def _domain_cap(lane: Lane, cap: int | None) -> Lane:
    if cap is None or lane.channel == "fax" or cap >= 10**9:
        return lane
    return dataclasses.replace(lane, caps=dataclasses.replace(lane.caps, domain_per_hour=cap))


def until(lanes: Sequence[Lane]) -> dt.datetime:
    return max(x.deadline for x in lanes) + dt.timedelta(days=60)


@pytest.mark.parametrize("seed", range(40))
def test_the_forecast_agrees_with_a_simulation_of_the_plan(seed: int) -> None:
    lanes, now = scenario(seed)
    simulated = simulate(lanes, now, until(lanes))
    for outlook in forecast(lanes, now, RATE_GLOBAL):
        lane, sim = outlook.lane, simulated[outlook.lane.target_id]
        assert outlook.fits == (sim is not None and sim < lane.deadline), (seed, lane.target_id)
        if sim is not None and outlook.last is not None:
            assert abs((outlook.last - sim).total_seconds()) < 1, (seed, lane.target_id, outlook.last, sim)


@pytest.mark.parametrize("seed", range(40))
def test_every_remedy_named_makes_the_simulated_letters_fit(seed: int) -> None:
    lanes, now = scenario(seed)
    for outlook in forecast(lanes, now, RATE_GLOBAL):
        if outlook.fits:
            continue
        lane = outlook.lane
        fixes = remedies(lanes, lane, now, RATE_GLOBAL, dt.time(10))
        for name, value in fixes.caps:
            sim = simulate(raise_cap(lanes, lane, name, value), now, until(lanes))[lane.target_id]
            assert sim is not None and sim < lane.deadline, (seed, lane.target_id, name, value)
        if fixes.extend_to is not None:
            later = with_changes(lanes, lane, deadline=fixes.extend_to)
            sim = simulate(later, now, until(later))[lane.target_id]
            assert sim is not None and sim < fixes.extend_to, (seed, lane.target_id)


BRUSSELS = ZoneInfo("Europe/Brussels")
MONDAY = dt.datetime(2030, 1, 7, 10, tzinfo=dt.UTC)  # 11:00 in Brussels, past its 10:00 digest


def office_lane(letters: int, **changes: object) -> Lane:
    """An email target in Brussels open Mon-Fri 08:00-18:00, due Friday 2030-01-18's end."""
    lane = Lane(
        "a",
        "minister",
        "email",
        letters,
        ("email:minister@gov.example",),
        Caps(None, None, None, "Europe/Brussels"),
        Calendar(parse_hours("Mon-Fri 08:00-18:00"), BRUSSELS, {dt.date(2030, 1, 8)}.__contains__),
        0.5,
        dt.datetime(2030, 1, 18, 23, tzinfo=dt.UTC),
    )
    return dataclasses.replace(lane, **changes)  # type: ignore[arg-type]


def test_an_email_digest_goes_at_the_next_digest_time_of_an_office_day() -> None:
    [outlook] = forecast([office_lane(5000, digest_at=dt.time(10))], MONDAY, RATE_GLOBAL)
    # Today's went at 10:00; Tuesday is a holiday: Wednesday 10:00 CET.
    assert outlook.last == dt.datetime(2030, 1, 9, 9, tzinfo=dt.UTC) and outlook.fits


def test_a_fax_digest_takes_its_line_a_page_at_a_time() -> None:
    fax = office_lane(1000, channel="fax", seconds_each=120.0, line="line:fax:+322", digest_at=dt.time(10))
    [outlook] = forecast([fax], MONDAY, RATE_GLOBAL)
    # Wednesday 10:00 CET (Tuesday is a holiday), 1000 letters and 53 covers (a fax of 20 pages
    # carries 19 letters): the last page 1052 × 2 minutes later.
    wednesday = dt.datetime(2030, 1, 9, 9, tzinfo=dt.UTC)
    assert outlook.last == wednesday + dt.timedelta(minutes=1052 * 2) and outlook.fits


def test_an_even_spread_aims_at_the_deadline_less_the_margin() -> None:
    margin = dt.timedelta(hours=24)
    [even] = forecast([office_lane(100, spread="even", margin=margin)], MONDAY, RATE_GLOBAL)
    # Friday 18:00 is past the aim (Friday 23:00 UTC less a day): Thursday's close, 17:00 UTC.
    assert even.last == dt.datetime(2030, 1, 17, 17, tzinfo=dt.UTC) and even.fits and not even.rushed
    capped = office_lane(3000, spread="even", margin=margin, caps=Caps(None, 340, None, "Europe/Brussels"))
    [rushed] = forecast([capped], MONDAY, RATE_GLOBAL)
    # Nine office days (Tuesday is a holiday) at 340: the last 280 go on Friday, inside the
    # margin, in time.
    assert rushed.fits and rushed.rushed and rushed.last is not None
    assert rushed.last.date() == dt.date(2030, 1, 18)


def test_two_actions_faxing_one_number_share_its_line() -> None:
    """One fax at a time per number: 30 each at 2 minutes take the line two hours, not one."""
    fax = office_lane(30, channel="fax", seconds_each=120.0, line="line:fax:+322", keys=("fax:+322",))
    other = dataclasses.replace(fax, action_id="b")
    first, second = forecast([fax, other], MONDAY, RATE_GLOBAL)
    assert first.last is not None and second.last is not None
    assert max(first.last, second.last) == MONDAY + dt.timedelta(minutes=59 * 2)


def test_a_fax_line_too_busy_is_named_with_what_would_fix_it() -> None:
    """No cap holds it: a digest would (its faxes handed over at once, the line busy through
    the nights too), or an extension."""
    fax = office_lane(3000, channel="fax", seconds_each=120.0, line="line:fax:+322", keys=("fax:+322",))
    found = forecast([fax], MONDAY, RATE_GLOBAL)
    said = described(found[0], found, BRUSSELS, MONDAY, web_settings(Path("/nonexistent")))
    # Monday from 11:00, Wednesday to Friday, the next week: 87 office hours, 30 faxes each.
    assert said == (
        "minister (fax): 3000 letters need 100 hours of line time at 2 min each; 87 left before the "
        "deadline 2030-01-18 24:00 CET → use delivery: digest, or extend to 2030-01-22"
    )
