"""Delivery plans as staff write them: office hours read or refused with the reason, a plan's
fields validated where the file says them, and a target × channel's plan resolved field by field
(target over action over the deployment's default)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dispatcher.actions.files import load_action_file
from dispatcher.actions.model import Action
from dispatcher.models import Caps
from dispatcher.plans.hours import DAY, Window, parse_hours
from dispatcher.plans.resolve import caps_for, default_hours, hours_for, problems, zone_of
from dispatcher.plans.zones import country_zone
from tests.support.actions import action_data, write_action

FAX = {"id": "minister", "name": "Minister", "fax": "+3222222222", "country": "BE", "channels": ["fax"]}


def action(defaults: dict[str, Any] | None = None, /, **target: Any) -> Action:
    extra = {"plan": defaults} if defaults is not None else {}
    return Action.model_validate(action_data("a", [FAX | target], **extra))


def test_office_hours_read_days_spans_and_overnight() -> None:
    week = parse_hours("Mon-Fri 08:00-12:00, 13:00-17:30; Sat 09:00-12:00")
    assert len(week.windows) == 11 and Window(5, 9 * 60, 12 * 60) in week.windows
    assert parse_hours("Sun-Tue 22:00-06:00").windows == tuple(
        Window(day, 22 * 60, DAY + 6 * 60) for day in (0, 1, 6)
    )
    assert parse_hours("daily 00:00-24:00").windows[0] == Window(0, 0, DAY)
    assert parse_hours("Monday,Wednesday 09:00-10:00").windows == (Window(0, 540, 600), Window(2, 540, 600))
    assert parse_hours(" Always ").always


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("Mon-Fri 08:00-08:00", "never opens"),
        ("Mo-Fr 08:00-18:00", "'Mo' is not a day"),
        ("Mon-Fri 8-18", "is not hours such as 08:00-18:00"),
        ("Mon-Fri 08:00-25:00", "is not a time of day"),
        ("Mon-Fri 08:00-18:00;", "an empty window"),
        ("Mon-Fri", "is not hours"),
    ],
)
def test_office_hours_that_cannot_be_read_or_never_open_are_refused(text: str, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        parse_hours(text)


@pytest.mark.parametrize(
    ("plan", "target", "field", "said"),
    [
        ({"max_per_hour": 0}, {}, "plan.max_per_hour", "greater than or equal to 1"),
        ({}, {"plan": {"max_per_day": 0}}, "targets[0].plan.max_per_day (target minister)", "greater than"),
        (
            {},
            {"timezone": "Europe/Brusels"},
            "targets[0].timezone (target minister)",
            "not an IANA time zone",
        ),
        ({"office_hours": "Mon-Fri 18:00-18:00"}, {}, "plan.office_hours", "never opens"),
        ({"office_hours": {"post": "always"}}, {}, "plan.office_hours", "'post' is not a channel"),
        ({"office_hours": 8}, {}, "plan.office_hours", "office hours are a text"),
        ({"caps": 3}, {}, "plan.caps", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_plan_is_refused_naming_the_file_the_target_and_the_field(
    tmp_path: Path, plan: dict[str, Any], target: dict[str, Any], field: str, said: str
) -> None:
    path = write_action(tmp_path, action_data("a", [FAX | target], plan=plan))
    errors = load_action_file(path)
    assert isinstance(errors, list) and len(errors) == 1, errors
    assert str(errors[0]).startswith(f"{path}: {field}: ") and said in str(errors[0]), str(errors[0])


def test_the_targets_plan_overrides_the_actions_field_by_field_and_null_lifts_a_cap() -> None:
    default = Caps(per_hour=30, per_day=200, domain_per_hour=100)
    a = action({"max_per_hour": 10, "max_per_day": 50}, plan={"max_per_day": None, "domain_max_per_hour": 5})
    assert caps_for(a, a.targets[0], "fax", default) == Caps(10, None, 5, "Europe/Brussels")
    bare = action()
    assert caps_for(bare, bare.targets[0], "fax", default) == Caps(30, 200, 100, "Europe/Brussels")


def test_office_hours_per_channel_fall_back_to_the_action_then_the_deployment() -> None:
    defaults = default_hours("Mon-Fri 08:00-18:00")
    a = action({"office_hours": {"email": "Mon 09:00-10:00"}}, plan={"office_hours": {"fax": "always"}})
    assert hours_for(a, a.targets[0], "fax", defaults) == (parse_hours("always"), "targets.plan.office_hours")
    assert hours_for(a, a.targets[0], "email", defaults)[1] == "plan.office_hours"
    bare = action()
    assert str(hours_for(bare, bare.targets[0], "fax", defaults)[0]) == "Mon-Fri 08:00-18:00"
    assert hours_for(bare, bare.targets[0], "email", defaults)[0].always  # an email waits in its inbox


def test_a_targets_zone_is_its_own_else_its_countrys_one_else_the_actions() -> None:
    assert country_zone("BE") == "Europe/Brussels" and country_zone("US") is None
    assert country_zone("CN") is None  # Asia/Shanghai and Asia/Urumqi
    a = action(timezone="America/New_York")
    assert zone_of(a, a.targets[0]) == "America/New_York"
    assert zone_of(action(), action().targets[0]) == "Europe/Brussels"
    cn = Action.model_validate(
        action_data("a", [FAX | {"country": "CN", "fax": "+861062381025"}], timezone="Asia/Tokyo")
    )
    assert zone_of(cn, cn.targets[0]) == "Asia/Tokyo"


def test_office_hours_shut_until_the_deadline_are_a_problem_naming_target_and_field() -> None:
    a = action(plan={"office_hours": "Sat 10:00-12:00", "holidays": False})
    monday = dt.datetime(2030, 1, 7, 9, tzinfo=dt.UTC)
    pairs = [(a.targets[0], "fax")]
    found = problems(a, pairs, monday, monday + dt.timedelta(days=4), default_hours("always"))
    assert [str(p) for p in found] == [
        "targets.plan.office_hours (target minister, fax): office hours Sat 10:00-12:00 "
        "(Europe/Brussels) never open before the deadline, Fri 2030-01-11 10:00 CET"
    ]
    assert not problems(a, pairs, monday, monday + dt.timedelta(days=6), default_hours("always"))
    # New Year's Day, a Tuesday, closes the only day the office opens before the deadline.
    tuesday = action({"office_hours": "Tue 08:00-18:00"})
    late = dt.datetime(2030, 1, 1, 0, tzinfo=dt.UTC)
    assert problems(tuesday, [(tuesday.targets[0], "fax")], late, late + dt.timedelta(days=2), {})


def test_the_fax_default_is_office_hours_outside_tests() -> None:
    """The suite makes every fax clock-independent (tests/conftest.py): the product's default is
    read where nothing changed it."""
    code = "from dispatcher.settings import Settings; print(Settings().fax_office_hours)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "Mon-Fri 08:00-18:00"


def test_spread_delivery_and_digest_hour_resolve_target_over_action_over_default() -> None:
    from dispatcher.plans.resolve import delivery_for, digest_at_for, spread_for

    chosen = action({"spread": "asap", "digest_at": "09:30"}, plan={"delivery": "digest"})
    target = chosen.targets[0]
    assert spread_for(chosen, target, "even") == "asap"
    assert delivery_for(chosen, target) == "digest"
    assert digest_at_for(chosen, target, dt.time(10)) == dt.time(9, 30)
    plain = action()
    assert spread_for(plain, plain.targets[0], "even") == "even"
    assert delivery_for(plain, plain.targets[0]) == "each"
    assert digest_at_for(plain, plain.targets[0], dt.time(10)) == dt.time(10)


@pytest.mark.parametrize(
    ("plan", "field"),
    [({"spread": "slow"}, "spread"), ({"delivery": "weekly"}, "delivery"), ({"digest_at": 600}, "digest_at")],
)
def test_bad_spread_delivery_or_digest_hour_is_refused(plan: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        action(plan)
