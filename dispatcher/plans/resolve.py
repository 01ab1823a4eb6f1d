"""One target × channel's plan: the target's ``plan:`` over the action's over the deployment's
defaults; its caps, its zone, its office-hours calendar, and what in it can never work."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar
from zoneinfo import ZoneInfo

from dispatcher.models import Caps
from dispatcher.plans.calendar import Calendar
from dispatcher.plans.hours import ALWAYS, Schedule, parse_hours
from dispatcher.plans.model import Delivery, Plan, Spread
from dispatcher.plans.public_holidays import closed_days, known
from dispatcher.plans.zones import country_zone

T = TypeVar("T")


class PlannedTarget(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def country(self) -> str | None: ...
    @property
    def timezone(self) -> str | None: ...
    @property
    def plan(self) -> Plan: ...


class PlannedAction(Protocol):
    @property
    def timezone(self) -> str: ...
    @property
    def plan(self) -> Plan: ...


def default_hours(fax: str) -> dict[str, Schedule]:
    """The deployment's office hours per channel: fax as set (a fax at 3 a.m. rings in an empty
    office), every other channel always (an email waits in its inbox)."""
    return {"fax": parse_hours(fax)}


def zone_of(action: PlannedAction, target: PlannedTarget) -> str:
    """The target's ``timezone``, else its country's when it has one, else the action's."""
    return target.timezone or (target.country and country_zone(target.country)) or action.timezone


def _pick(action: PlannedAction, target: PlannedTarget, name: str, default: T) -> T:
    for plan in (target.plan, action.plan):
        if plan.given(name):
            value: T = getattr(plan, name)
            return value
    return default


def caps_for(action: PlannedAction, target: PlannedTarget, channel: str, default: Caps) -> Caps:
    """The caps of the target's letters by ``channel``, in the target's zone (its day)."""
    del channel  # the same caps on every channel today; the signature leaves room for more
    return replace(
        default,
        per_hour=_pick(action, target, "max_per_hour", default.per_hour),
        per_day=_pick(action, target, "max_per_day", default.per_day),
        domain_per_hour=_pick(action, target, "domain_max_per_hour", default.domain_per_hour),
        zone=zone_of(action, target),
    )


def spread_for(action: PlannedAction, target: PlannedTarget, default: Spread) -> Spread:
    """``even`` or ``asap``: the target's plan, the action's, else the deployment's."""
    return _pick(action, target, "spread", default)


def delivery_for(action: PlannedAction, target: PlannedTarget) -> Delivery:
    """``each`` (a letter per supporter, the default) or ``digest`` (one message a day)."""
    return _pick(action, target, "delivery", "each")


def digest_at_for(action: PlannedAction, target: PlannedTarget, default: dt.time) -> dt.time:
    """When the target's daily digest goes, in its zone (its office hours permitting)."""
    return _pick(action, target, "digest_at", default)


def hours_for(
    action: PlannedAction, target: PlannedTarget, channel: str, defaults: Mapping[str, Schedule]
) -> tuple[Schedule, str]:
    """The office hours and where they were said: the target's plan, the action's, the default."""
    for plan, where in ((target.plan, "targets.plan.office_hours"), (action.plan, "plan.office_hours")):
        chosen = plan.office_hours.of(channel) if plan.office_hours else None
        if chosen is not None:
            return chosen, where
    return defaults.get(channel, ALWAYS), f"DISPATCHER_{channel.upper()}_OFFICE_HOURS"


def calendar_for(
    action: PlannedAction, target: PlannedTarget, channel: str, defaults: Mapping[str, Schedule]
) -> Calendar:
    schedule, _ = hours_for(action, target, channel, defaults)
    closed = closed_days(target.country if _holidays(action, target, schedule) else None)
    return Calendar(schedule, ZoneInfo(zone_of(action, target)), closed)


def _holidays(action: PlannedAction, target: PlannedTarget, schedule: Schedule) -> bool:
    """Public holidays close the office, unless it is always open (an email always is)."""
    return _pick(action, target, "holidays", True) and not schedule.always


@dataclass(frozen=True)
class PlanProblem:
    target_id: str
    channel: str
    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.field} (target {self.target_id}, {self.channel}): {self.problem}"


def problems(
    action: PlannedAction,
    pairs: Iterable[tuple[PlannedTarget, str]],
    now: dt.datetime,
    deadline: dt.datetime,
    defaults: Mapping[str, Schedule],
) -> list[PlanProblem]:
    """Office hours that stay shut from ``now`` to the deadline: nothing of theirs could go."""
    if now >= deadline:
        return []
    found = []
    for target, channel in pairs:
        calendar = calendar_for(action, target, channel, defaults)
        if calendar.next_open(now, deadline - now) is None:
            schedule, where = hours_for(action, target, channel, defaults)
            local = deadline.astimezone(calendar.zone)
            closes = _holidays(action, target, schedule) and known(target.country)
            less = ", less public holidays" if closes else ""
            said = f"office hours {schedule} ({calendar.zone.key}{less}) never open before the deadline"
            found.append(PlanProblem(target.id, channel, where, f"{said}, {local:%a %Y-%m-%d %H:%M %Z}"))
    return found
