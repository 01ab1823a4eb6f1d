"""An action and its targets as staff write them: validated with pydantic, so that an error
names the field and the problem."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dispatcher import capabilities
from dispatcher.addresses import normalise_email, normalise_fax
from dispatcher.capabilities import Channel
from dispatcher.language import Language, script_of
from dispatcher.models import ActionStatus
from dispatcher.plans.model import Plan
from dispatcher.plans.zones import check_zone


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Target(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str = Field(min_length=1)
    title: str = ""
    role: Literal["to", "cc"] = "to"
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    languages: list[Language] = Field(default_factory=list)
    salutation: dict[Language, str] = Field(default_factory=dict)
    email: str | None = None
    fax: str | None = None
    address: dict[str, str] = Field(default_factory=dict)
    channels: list[Channel] = Field(default_factory=list)
    # After the last failed attempt by fax, send the letter by email instead (off by default).
    fallback: Literal["email"] | None = None
    # The target's IANA zone, for its office hours and its day's cap; unset: its country's
    # when the country has one zone, else the action's.
    timezone: str | None = None
    plan: Plan = Plan()  # overrides the action's plan, field by field

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_zone(value)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None else normalise_email(value)

    @field_validator("address")
    @classmethod
    def _scripts(cls, value: dict[str, str]) -> dict[str, str]:
        for script in value:
            if not (len(script) == 4 and script.isalpha() and script[0].isupper()):
                raise ValueError(f"address keys are ISO 15924 scripts (Latn, Hans…), not {script!r}")
        return value

    @model_validator(mode="after")
    def _channels_have_addresses(self) -> Target:
        if self.fax is not None:
            try:
                object.__setattr__(self, "fax", normalise_fax(self.fax, self.country))
            except ValueError as exc:
                raise ValueError(f"fax: {exc}") from None
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels lists a channel twice")
        for channel in self.channels:
            where = capabilities.of(channel).address
            if not getattr(self, where):
                raise ValueError(f"channel {channel!r} is listed but the target has no {where}")
        if self.fallback:
            self._check_fallback(self.fallback)
        return self

    def _check_fallback(self, fallback: str) -> None:
        kind = capabilities.of(fallback)
        falling = capabilities.named(lambda c: c.falls_back)
        if not getattr(self, kind.address) or not set(falling) & set(self.channels):
            raise ValueError(
                f"fallback: {fallback} needs the {' or '.join(falling)} channel and the target's {kind.noun}"
            )

    def salutation_for(self, language: str) -> str | None:
        return self.salutation.get(language)

    def address_for(self, language: str) -> str:
        """The postal address in the letter's script, else in Latin script, else any."""
        script = script_of(language)
        for key in (script, "Latn"):
            if key in self.address:
                return self.address[key]
        return next(iter(self.address.values()), "")


class Action(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    title: str = Field(min_length=1)
    reference: str = ""
    deadline: dt.datetime | dt.date
    timezone: str = "UTC"
    status: ActionStatus = ActionStatus.DRAFT
    languages: list[Language] = Field(min_length=1)
    template_set: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    subject_prefix: str = ""
    # Campaign tags: a supporter may consent to every action with a tag ("tag:<tag>").
    tags: tuple[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")], ...] = ()
    targets: list[Target] = Field(min_length=1)
    # The delivery plan of every target (caps, office hours, holidays); a target's own overrides.
    plan: Plan = Plan()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

    @model_validator(mode="after")
    def _unique_targets(self) -> Action:
        seen: set[str] = set()
        for target in self.targets:
            if target.id in seen:
                raise ValueError(f"target id {target.id!r} appears twice")
            seen.add(target.id)
        if not any(t.role == "to" for t in self.targets):
            raise ValueError("at least one target must have role 'to'")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def deadline_at(self) -> dt.datetime:
        """The deadline as an aware UTC instant; a bare date means the end of that day."""
        return deadline_instant(self.deadline, self.zone)

    @property
    def templates(self) -> str:
        return self.template_set or self.id

    def target(self, target_id: str) -> Target:
        for target in self.targets:
            if target.id == target_id:
                return target
        raise KeyError(target_id)

    def delivery_pairs(self, enabled: tuple[str, ...]) -> list[tuple[str, str]]:
        """(target id, channel) pairs that get a delivery per supporter.

        A ``cc`` target reached by a channel that carries copies (email) is copied on the letters
        to the ``to`` targets rather than sent letters of its own; a fax cannot carry a copy, so a
        ``cc`` gets its own fax.
        """
        return [
            (t.id, channel)
            for t in self.targets
            for channel in t.channels
            if channel in enabled and (t.role == "to" or not capabilities.of(channel).copies)
        ]

    def fallbacks(self, enabled: tuple[str, ...]) -> dict[str, str]:
        """Target id → the channel its faxes fall back to, where that channel is enabled."""
        return {t.id: t.fallback for t in self.targets if t.fallback and t.fallback in enabled}

    def claim_pairs(self, enabled: tuple[str, ...]) -> list[tuple[str, str]]:
        """The planned pairs, and the fallback ones a failed fax may have created."""
        pairs = self.delivery_pairs(enabled)
        return pairs + [(t, via) for t, via in self.fallbacks(enabled).items() if (t, via) not in pairs]

    def copies(self, channel: str) -> list[Target]:
        return [t for t in self.targets if t.role == "cc" and channel in t.channels]


def deadline_instant(value: dt.datetime | dt.date, zone: ZoneInfo) -> dt.datetime:
    if isinstance(value, dt.datetime):
        local = value if value.tzinfo else value.replace(tzinfo=zone)
    else:
        local = dt.datetime.combine(value + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    return local.astimezone(dt.UTC)
