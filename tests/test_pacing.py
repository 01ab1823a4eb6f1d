"""Token buckets: a target never gets more than its burst at once, then its rate."""

from __future__ import annotations

import pytest

from dispatcher.pacing import Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_rate_per_target() -> None:
    clock = Clock()
    pacer = Pacer(rate_per_target=2.0, burst_per_target=5, rate_global=1000.0, clock=clock)
    assert pacer.budget(["pres"], cap=100) == 5
    pacer.take(["pres"], 5)
    assert pacer.budget(["pres"], cap=100) == 0
    assert pacer.wait(["pres"]) == pytest.approx(0.5)
    clock.now = 1.0
    assert pacer.budget(["pres"], cap=100) == 2
    clock.now = 100.0
    assert pacer.budget(["pres"], cap=100) == 5  # never more than the burst


def test_a_copy_counts_against_the_copied_target() -> None:
    clock = Clock()
    pacer = Pacer(rate_per_target=1.0, burst_per_target=3, rate_global=1000.0, clock=clock)
    pacer.take(["amb"], 3)
    assert pacer.budget(["pres"], cap=10) == 3
    assert pacer.budget(["pres", "amb"], cap=10) == 0


def test_global_rate_caps_all_targets() -> None:
    clock = Clock()
    pacer = Pacer(rate_per_target=100.0, burst_per_target=100, rate_global=4.0, clock=clock)
    assert pacer.budget(["a"], cap=50) == 4
    pacer.take(["a"], 4)
    assert pacer.budget(["b"], cap=50) == 0
    clock.now = 0.5
    assert pacer.budget(["b"], cap=50) == 2


def test_sustained_rate_over_a_minute() -> None:
    clock = Clock()
    pacer = Pacer(rate_per_target=2.0, burst_per_target=10, rate_global=1000.0, clock=clock)
    sent = 0
    while clock.now < 60.0:
        n = pacer.budget(["pres"], cap=1000)
        pacer.take(["pres"], n)
        sent += n
        clock.now += 0.1
    assert 10 + 2 * 59 <= sent <= 10 + 2 * 60


def test_tokens_given_back_never_exceed_the_burst() -> None:
    clock = Clock()
    pacer = Pacer(rate_per_target=1.0, burst_per_target=3, rate_global=1000.0, clock=clock)
    pacer.take(["pres"], 3)
    pacer.give_back(["pres"], 2)
    assert pacer.budget(["pres"], cap=10) == 2
    pacer.give_back(["pres"], 5)
    assert pacer.budget(["pres"], cap=10) == 3
