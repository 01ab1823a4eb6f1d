"""The ``plan:`` of an action (its defaults) and of a target (overrides), validated with
pydantic so that an error names the field. A field left out inherits (target ← action ←
the deployment's default); ``null`` for a cap means no cap."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

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


OfficeHoursField = Annotated[OfficeHours, PlainValidator(_office_hours), PlainSerializer(_shown)]
Cap = Annotated[int | None, Field(ge=1)]


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_per_hour: Cap = None
    max_per_day: Cap = None
    domain_max_per_hour: Cap = None
    office_hours: OfficeHoursField | None = None
    holidays: bool = True

    def given(self, name: str) -> bool:
        """Whether the file says this field (else it is inherited)."""
        return name in self.model_fields_set
