"""The ``plan:`` of an action (its defaults) and of a target (overrides), validated with
pydantic so that an error names the field. A field left out inherits (target ← action ←
the deployment's default); ``null`` for a cap means no cap."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator

from dispatcher import capabilities
from dispatcher.plans.hours import Schedule, parse_hours


@dataclass(frozen=True)
class OfficeHours:
    """``Mon-Fri 08:00-18:00`` for every channel, or per channel: ``{fax: ..., email: always}``."""

    every: Schedule | None = None
    channels: dict[str, Schedule] = field(default_factory=dict)

    def of(self, channel: str) -> Schedule | None:
        return self.channels.get(channel, self.every)


def _office_hours(value: object) -> OfficeHours:
    if isinstance(value, OfficeHours):
        return value
    if isinstance(value, dict):
        return OfficeHours(channels={_channel(k): _schedule(v) for k, v in value.items()})
    return OfficeHours(every=_schedule(value))


def _channel(name: object) -> str:
    if not isinstance(name, str) or name not in capabilities.KINDS:
        raise ValueError(f"{name!r} is not a channel (the channels: {', '.join(capabilities.KINDS)})")
    return name


def _schedule(value: object) -> Schedule:
    """A text, or a list of texts (one window each)."""
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return parse_hours("; ".join(value))
    if not isinstance(value, str):
        raise ValueError('office hours are a text such as "Mon-Fri 08:00-18:00", or always')
    return parse_hours(value)


def _shown(hours: OfficeHours) -> Any:
    return {k: str(v) for k, v in hours.channels.items()} if hours.channels else str(hours.every)


def clock_time(value: object) -> dt.time:
    """``"10:00"``: a wall-clock time of day (YAML would read an unquoted 10:00 as 600 minutes)."""
    if isinstance(value, dt.time):
        return value
    if isinstance(value, str):
        try:
            return dt.time.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError('a time of day is written "HH:MM", quoted, e.g. "10:00"')


OfficeHoursField = Annotated[OfficeHours, PlainValidator(_office_hours), PlainSerializer(_shown)]
ClockTime = Annotated[dt.time, PlainValidator(clock_time), PlainSerializer(lambda t: t.strftime("%H:%M"))]
Cap = Annotated[int | None, Field(ge=1)]
Spread = Literal["even", "asap"]
Delivery = Literal["each", "digest"]


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_per_hour: Cap = None
    max_per_day: Cap = None
    domain_max_per_hour: Cap = None
    office_hours: OfficeHoursField | None = None
    holidays: bool = True
    # "even": each target's letters spread over the sending time left before the deadline;
    # "asap": as fast as the caps and pacing allow (an imminent execution).
    spread: Spread = "even"
    # "each": one letter per supporter; "digest": one message a day per target with them all.
    delivery: Delivery = "each"
    digest_at: ClockTime = dt.time(10, 0)  # in the target's zone, on its office days

    def given(self, name: str) -> bool:
        """Whether the file says this field (else it is inherited)."""
        return name in self.model_fields_set
