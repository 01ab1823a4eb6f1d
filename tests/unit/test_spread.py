"""The spread's arithmetic (plans/spread.py): the pace over the open time left, kept while it
barely moves, the jittered cost of a letter, and how ``why`` says it."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest

from dispatcher.plans import spread
from dispatcher.plans.calendar import Calendar
from dispatcher.plans.hours import parse_hours

MONDAY = dt.datetime(2030, 1, 7, 8, tzinfo=dt.UTC)  # 09:00 in Brussels
OFFICE = Calendar(parse_hours("Mon-Fri 09:00-17:00"), ZoneInfo("Europe/Brussels"))
ALWAYS = Calendar(parse_hours("always"), ZoneInfo("UTC"))


def test_the_pace_divides_the_letters_by_the_open_time_left() -> None:
    week = MONDAY + dt.timedelta(days=7)
    assert spread.pace(39, OFFICE, MONDAY, week) == pytest.approx(40 / (5 * 8 * 3600))
    assert spread.pace(0, ALWAYS, MONDAY, MONDAY + dt.timedelta(days=1)) == pytest.approx(1 / 86400)
    # Saturday to Monday 09:00: shut all the way, as past the aim: as fast as the caps allow.
    saturday = MONDAY + dt.timedelta(days=5)
    assert spread.pace(5, OFFICE, saturday, saturday + dt.timedelta(days=2)) is None
    assert spread.pace(5, ALWAYS, MONDAY, MONDAY - dt.timedelta(seconds=1)) is None


def test_open_time_beyond_eight_weeks_is_estimated_from_them() -> None:
    for weeks in (7, 30, 400):
        aim = MONDAY + dt.timedelta(weeks=weeks, hours=5)
        exact = OFFICE.open_seconds(MONDAY, aim)
        assert spread.open_seconds(OFFICE, MONDAY, aim) == pytest.approx(exact, rel=0.01)


def test_a_pace_is_kept_within_a_tenth_and_replaced_beyond() -> None:
    assert spread.steady(1.0, 1.09) == 1.0 and spread.steady(1.0, 0.91) == 1.0
    assert spread.steady(1.0, 1.2) == 1.2 and spread.steady(None, 0.5) == 0.5
    assert spread.steady(1.0, None) is None


def test_a_letter_costs_three_quarters_to_five_quarters_of_a_token() -> None:
    rng = random.Random(3)
    costs = [spread.cost(rng) for _ in range(2000)]
    assert 0.75 <= min(costs) < 0.78 and 1.22 < max(costs) <= 1.25
    assert sum(costs) / len(costs) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize(
    ("per_day", "said"),
    [(0.5, "one every 2 days"), (12, "12 a day"), (24 * 30, "30 an hour"), (86400 / 15, "4 a minute")],
)
def test_a_pace_is_said_as_people_say_it(per_day: float, said: str) -> None:
    assert spread.rate(per_day / 86400) == said


def test_why_says_when_the_next_letter_goes_and_what_it_aims_at() -> None:
    deadline = dt.datetime(2030, 1, 30, 9, tzinfo=dt.UTC)
    aim = spread.Aim("spread:a/t/email", 12 / 86400, deadline, dt.timedelta(hours=24))
    assert aim.said(dt.datetime(2030, 1, 20, 14, 20, 31, tzinfo=dt.UTC)) == (
        "spread to the deadline: this target's next letter about 2030-01-20 14:20 UTC "
        "(12 a day to reach 2030-01-30 09:00 UTC with a day's margin)"
    )
    assert spread.margin(dt.timedelta(0)) == "with no margin"
    assert spread.margin(dt.timedelta(hours=6)) == "with a margin of 6 h"
