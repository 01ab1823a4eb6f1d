"""Pacing arithmetic: refills, fair shares, round-robin hand-out over shared buckets, waits."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from dispatcher.pacing import GLOBAL, Limits, allocate, asks, refilled, wait

T0 = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


@dataclass(frozen=True)
class G:
    channel: str
    keys: tuple[str, ...]
    line: str | None = None
    pace: float | None = None
    spread: str | None = None

    @property
    def ident(self) -> tuple[str, str, str]:
        return ("a", "t", self.channel)


def test_refill_is_capped_by_the_burst_and_ignores_a_lagging_clock() -> None:
    assert refilled(0, T0, T0 + dt.timedelta(seconds=1), rate=2, burst=10) == 2
    assert refilled(4, T0, T0 + dt.timedelta(hours=1), rate=2, burst=10) == 10
    assert refilled(4, T0, T0 - dt.timedelta(seconds=5), rate=2, burst=10) == 4


def test_global_bucket_burst_is_one_second_of_its_rate() -> None:
    limits = Limits(rate=2, burst=10, global_rate=100)
    assert limits.of(GLOBAL) == (100, 100) and limits.of("email:a@example.org") == (2, 10)
    assert Limits(1, 1, 0.5).of(GLOBAL) == (0.5, 1.0)


def test_every_group_with_rows_gets_its_share_whatever_its_place() -> None:
    groups = [G("email", (f"k{i}",)) for i in range(5)]
    tokens = {GLOBAL: 1000.0, **{f"k{i}": 1000.0 for i in range(5)}}
    rows = [[f"{i}-{n}" for n in range(100)] if i < 4 else ["4-0"] for i in range(5)]
    taken = allocate(groups, rows, tokens, {"email": 10}, start=0)
    per_group = [sum(1 for g, _ in taken if g == i) for i in range(5)]
    assert per_group == [3, 2, 2, 2, 1]  # the last group's one letter is not starved
    assert tokens[GLOBAL] == 990


def test_a_shared_bucket_is_split_evenly_not_taken_by_the_first_group() -> None:
    # An ambassador copied on the letters to two presidents: three tokens for both groups.
    groups = [G("email", ("p1", "amb")), G("email", ("p2", "amb"))]
    tokens = {GLOBAL: 100.0, "p1": 10.0, "p2": 10.0, "amb": 3.0}
    taken = allocate(groups, [list(range(10)), list(range(10))], tokens, {"email": 100}, start=1)
    assert [g for g, _ in taken] == [1, 0, 1]
    assert tokens["amb"] == 0 and tokens["p1"] == 9 and tokens["p2"] == 8


def test_room_is_per_channel() -> None:
    groups = [G("email", ("a",)), G("fax", ("b",))]
    tokens = {GLOBAL: 100.0, "a": 100.0, "b": 100.0}
    taken = allocate(groups, [list(range(50)), list(range(50))], tokens, {"email": 5, "fax": 1}, start=0)
    assert sum(1 for g, _ in taken if g == 0) == 5 and sum(1 for g, _ in taken if g == 1) == 1


def test_asks_only_groups_with_tokens_and_caps_them_at_twice_their_share() -> None:
    groups = [G("email", ("a",)), G("email", ("b",)), G("email", ("c",))]
    tokens = {GLOBAL: 1000.0, "a": 0.5, "b": 7.9, "c": 1000.0}
    assert asks(groups, tokens, {"email": 20}) == [0, 7, 20]
    assert asks(groups, tokens, {"email": 0}) == [0, 0, 0]


def test_wait_is_for_the_first_group_to_have_a_token_everywhere() -> None:
    limits = Limits(rate=2, burst=10, global_rate=100)
    tokens = {GLOBAL: 50.0, "a": 0.0, "b": 0.5, "amb": 0.9}
    assert wait([G("email", ("a",)), G("email", ("b",))], tokens, limits) == pytest.approx(0.25)
    assert wait([G("email", ("b", "amb"))], tokens, limits) == pytest.approx(0.25)
    assert wait([], tokens, limits) is None
