"""The overview's forecast counts the caps: letters beyond a recipient's hourly or daily cap wait
for later windows, whatever the pacing allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.models import QueueCount
from dispatcher.web.staff.summary import needed_seconds
from tests.support.web_client import web_settings

HOUR, DAY = 3600.0, 86400.0


@pytest.mark.parametrize(
    ("letters", "needs"),
    [
        (30, 15.0),  # one hour's cap, at 2 a second
        (31, HOUR),  # the 31st waits for the next hour
        (300, 9 * HOUR),  # ten hours' caps
        (301, DAY),  # the 301st waits for the next day
        (1000, 3 * DAY),
    ],
)
def test_letters_over_a_cap_wait_for_its_next_window(letters: int, needs: float) -> None:
    pending = [QueueCount("a", "minister", "email", "pending", letters, None)]
    assert needed_seconds(pending, web_settings(Path("/nonexistent"))) == needs


def test_lifted_caps_leave_the_pacing_alone() -> None:
    pending = [QueueCount("a", "minister", "email", "pending", 1000, None)]
    lifted = web_settings(Path("/nonexistent"), max_per_hour=None, max_per_day=None)
    assert needed_seconds(pending, lifted) == 500.0
