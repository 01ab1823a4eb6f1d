"""The office-hours calendar against an independent reading of the local wall clock, for random
schedules, zones (with and without DST, half-hour offsets) and instants; and the days DST makes
23 or 25 hours long, and a public holiday, by hand."""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dispatcher.plans.calendar import Calendar
from dispatcher.plans.hours import Schedule, Window, parse_hours
from dispatcher.plans.public_holidays import closed_days

ZONES = ("Europe/Brussels", "America/New_York", "Asia/Shanghai", "Australia/Sydney", "Asia/Kolkata")
H = dt.timedelta(hours=1)
# The same examples on every run (no example database); no timing checks on a loaded machine.
CHECKED = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    windows = []
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, 24 * 60 - 15)) // 15 * 15
        length = draw(st.integers(15, 24 * 60 - 15)) // 15 * 15
        windows.append(Window(draw(st.integers(0, 6)), start, start + length))
    return Schedule(tuple(windows), "drawn")


instants = st.datetimes(dt.datetime(2025, 1, 1), dt.datetime(2031, 12, 31), timezones=st.just(dt.UTC))
calendars = st.builds(
    lambda schedule, zone, holidays: Calendar(
        schedule, ZoneInfo(zone), closed_days("BE") if holidays else closed_days(None)
    ),
    schedules(),
    st.sampled_from(ZONES),
    st.booleans(),
)


def wall_open(calendar: Calendar, t: dt.datetime) -> bool:
    """Open by the wall clock: the local time lies in a window of a day that is no holiday."""
    local = t.astimezone(calendar.zone).replace(tzinfo=None)
    for back in (0, 1):
        day = local.date() - dt.timedelta(days=back)
        midnight = dt.datetime.combine(day, dt.time())
        for w in calendar.schedule.windows:
            inside = (
                midnight + dt.timedelta(minutes=w.start) <= local < midnight + dt.timedelta(minutes=w.end)
            )
            if w.day == day.weekday() and inside and not calendar.closed(day):
                return True
    return False


def near_a_change(calendar: Calendar, t: dt.datetime) -> bool:
    """Within hours of a DST change the wall clock jumps: the reading above is not defined there."""
    offsets = {(t + k * H).astimezone(calendar.zone).utcoffset() for k in range(-26, 27)}
    return len(offsets) > 1


@CHECKED
@given(calendars, instants)
def test_open_exactly_when_the_wall_clock_is_in_office_hours(calendar: Calendar, t: dt.datetime) -> None:
    assume(not near_a_change(calendar, t))
    assert calendar.is_open(t) == wall_open(calendar, t)


@CHECKED
@given(calendars, instants)
def test_the_next_opening_is_open_and_nothing_opens_before_it(calendar: Calendar, t: dt.datetime) -> None:
    opens = calendar.next_open(t)
    assert opens is not None and opens >= t and calendar.is_open(opens)
    assert calendar.open_seconds(t, opens) == 0
    assert (opens == t) == calendar.is_open(t)
    closes = calendar.next_close(opens)
    assert closes is not None and closes > opens and not calendar.is_open(closes)
    assert math.isclose(calendar.open_seconds(opens, closes), (closes - opens).total_seconds(), abs_tol=1e-6)


@CHECKED
@given(calendars, instants, st.integers(0, 20 * 24), st.integers(0, 20 * 24))
def test_open_seconds_add_up_and_never_exceed_the_span(
    calendar: Calendar, a: dt.datetime, x: int, y: int
) -> None:
    b, c = a + x * H, a + (x + y) * H
    whole = calendar.open_seconds(a, c)
    assert math.isclose(whole, calendar.open_seconds(a, b) + calendar.open_seconds(b, c), abs_tol=1e-6)
    assert 0 <= whole <= (c - a).total_seconds()


@CHECKED
@given(calendars, instants)
def test_asking_in_any_order_gives_the_same_answers(calendar: Calendar, t: dt.datetime) -> None:
    """The calendar keeps its last answer: a clock moved back or far ahead must not reuse it."""
    fresh = Calendar(calendar.schedule, calendar.zone, calendar.closed)
    for u in (t, t + 3 * H, t - 50 * H, t + 400 * H, t + 3 * H):
        assert calendar.is_open(u) == Calendar(fresh.schedule, fresh.zone, fresh.closed).is_open(u)


def day_length(zone: str, day: dt.date) -> float:
    calendar = Calendar(parse_hours(f"{day:%a} 00:00-24:00"), ZoneInfo(zone))  # that day only
    start = dt.datetime.combine(day, dt.time(), tzinfo=ZoneInfo(zone)).astimezone(dt.UTC)
    return calendar.open_seconds(start - 2 * H, start + 30 * H) / 3600


def test_a_whole_day_lasts_23_or_25_hours_on_a_dst_change() -> None:
    assert day_length("Europe/Brussels", dt.date(2026, 3, 29)) == 23
    assert day_length("Europe/Brussels", dt.date(2026, 10, 25)) == 25
    assert day_length("America/New_York", dt.date(2026, 3, 8)) == 23
    assert day_length("Asia/Shanghai", dt.date(2026, 3, 29)) == 24


def test_office_hours_keep_their_local_times_across_a_dst_change() -> None:
    calendar = Calendar(parse_hours("Mon-Fri 08:00-18:00"), ZoneInfo("America/New_York"))
    friday = dt.datetime(2026, 3, 6, 12, 59, tzinfo=dt.UTC)  # 07:59 EST
    assert not calendar.is_open(friday) and calendar.next_open(friday) == friday + dt.timedelta(minutes=1)
    saturday = dt.datetime(2026, 3, 7, 12, tzinfo=dt.UTC)
    assert calendar.next_open(saturday) == dt.datetime(2026, 3, 9, 12, tzinfo=dt.UTC)  # 08:00 EDT
    assert calendar.next_close(dt.datetime(2026, 3, 9, 12, tzinfo=dt.UTC)) == dt.datetime(
        2026, 3, 9, 22, tzinfo=dt.UTC
    )


def test_a_public_holiday_closes_the_office_all_day() -> None:
    hours = parse_hours("Mon-Fri 08:00-18:00")
    brussels = Calendar(hours, ZoneInfo("Europe/Brussels"), closed_days("BE"))
    christmas = dt.datetime(2026, 12, 25, 10, tzinfo=dt.UTC)  # a Friday
    assert not brussels.is_open(christmas)
    assert brussels.next_open(christmas) == dt.datetime(2026, 12, 28, 7, tzinfo=dt.UTC)
    assert Calendar(hours, ZoneInfo("Europe/Brussels")).is_open(christmas)  # holidays: false
    week = dt.datetime(2026, 12, 21, tzinfo=dt.UTC)
    assert brussels.open_seconds(week, week + 7 * 24 * H) == 4 * 10 * 3600
