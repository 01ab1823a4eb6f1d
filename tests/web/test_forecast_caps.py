"""The overview's forecast counts the caps: letters beyond a recipient's hourly or daily cap wait
for later windows, whatever the pacing allows. The last letter goes (letters - 1) pacing
intervals after the first, which goes now: the old arithmetic counted one interval more."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from dispatcher.actions.model import Action
from dispatcher.models import ActionState, QueueCount
from dispatcher.plans.forecast import Outlook
from dispatcher.sending import forecast
from dispatcher.web.staff.summary import action_rows
from tests.support import actions
from tests.support.caps import NO_CAPS
from tests.support.forecast import needed_seconds
from tests.support.web_client import web_settings

HOUR, DAY = 3600.0, 86400.0
NOW = dt.datetime(2034, 3, 6, tzinfo=dt.UTC)  # the top of an hour and of a day in the target's zone
MINISTER = {"id": "minister", "name": "Minister", "email": "minister@gov.example", "channels": ["email"]}
ACTION = Action.model_validate(actions.action_data("a", [MINISTER], timezone="UTC"))


@pytest.mark.parametrize(
    ("letters", "needs"),
    [
        (30, 14.5),  # one hour's cap, at 2 a second
        (31, HOUR),  # the 31st waits for the next hour
        (300, 9 * HOUR + 14.5),  # ten hours' caps
        (301, DAY),  # the 301st waits for the next day
        (1000, 3 * DAY + 3 * HOUR + 4.5),  # three days' caps, then three hours' and ten letters
    ],
)
def test_letters_over_a_cap_wait_for_its_next_window(letters: int, needs: float) -> None:
    pending = [QueueCount("a", "minister", "email", "pending", letters, None)]
    assert needed_seconds(ACTION, pending, web_settings(Path("/nonexistent")), NOW) == needs


def test_lifted_caps_leave_the_pacing_alone() -> None:
    pending = [QueueCount("a", "minister", "email", "pending", 1000, None)]
    lifted = web_settings(Path("/nonexistent"), **NO_CAPS)
    assert needed_seconds(ACTION, pending, lifted, NOW) == 499.5


def test_the_domains_cap_holds_with_the_recipients_lifted() -> None:
    """New: the old arithmetic left the domain's hourly cap (120) out."""
    pending = [QueueCount("a", "minister", "email", "pending", 1000, None)]
    lifted = web_settings(Path("/nonexistent"), max_per_hour=None, max_per_day=None)
    assert needed_seconds(ACTION, pending, lifted, NOW) == 8 * HOUR + 19.5  # 8 × 120, then 40


def test_a_dashboard_polling_reuses_the_forecast_for_its_lanes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk over hundreds of targets takes a second; a tab polls every 3 s."""
    walks: list[dt.datetime] = []
    walk = forecast.outlooks

    def counted(*args: Any) -> list[Outlook]:
        walks.append(args[-1])
        return walk(*args)

    monkeypatch.setattr(forecast, "outlooks", counted)
    settings, actions = web_settings(Path("/nonexistent")), {"a": ACTION}
    state = ActionState("a", None, None, NOW, "staff")

    def poll(letters: int, at: dt.datetime, deadline: dt.datetime | None = None) -> str:
        pending = [QueueCount("a", "minister", "email", "pending", letters, None)]
        states = {"a": dataclasses.replace(state, deadline=deadline)} if deadline else {}
        [row] = action_rows(actions, states, {}, {}, pending, settings, at, (), dispatching=True)
        return row.forecast

    said = poll(30, NOW)
    assert poll(29, NOW + dt.timedelta(seconds=3)) == said and len(walks) == 1  # a letter went since
    poll(29, NOW + dt.timedelta(seconds=3), deadline=NOW + dt.timedelta(days=30))  # extended: again
    poll(29, NOW + dt.timedelta(seconds=40))  # kept 30 s at most
    assert len(walks) == 3


def test_letters_to_a_target_taken_out_of_the_file_are_not_forecast() -> None:
    """They are never claimed: the page must not fail on them, nor count them."""
    pending = [
        QueueCount("a", "gone", "email", "pending", 5, None),
        QueueCount("a", "minister", "fax", "pending", 5, None),  # no fax number in the file
    ]
    assert needed_seconds(ACTION, pending, web_settings(Path("/nonexistent")), NOW) is None
