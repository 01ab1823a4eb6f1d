"""Settings and action files.

Settings come from ``config/dispatcher.toml`` (optional, committed, no secrets) overridden by
``DISPATCHER_*`` environment variables. Action files are YAML, one per action, validated with
pydantic so that an error names the file, the field path and the problem.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import yaml
from babel import Locale, UnknownLocaleError
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dispatcher import capabilities


def _channel(name: str) -> str:
    if name not in capabilities.KINDS:
        raise ValueError(f"{name!r} is not a channel (the channels: {', '.join(capabilities.KINDS)})")
    return name


# A channel's name, from the kinds ``capabilities`` knows (a new kind needs no change here).
Channel = Annotated[str, AfterValidator(_channel)]


class ActionStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    CLOSED = "closed"


def parse_language(tag: str) -> Locale:
    """A BCP 47 tag (``zh-Hans``, ``en``, ``de-CH``) as a Babel locale."""
    try:
        return Locale.parse(tag.replace("-", "_"))
    except (ValueError, UnknownLocaleError) as exc:
        raise ValueError(f"{tag!r} is not a known BCP 47 language tag") from exc


def _language(tag: str) -> str:
    parse_language(tag)
    return tag


def script_of(tag: str) -> str:
    """The ISO 15924 script a language is written in (``Hans``, ``Hant``, ``Latn``…)."""
    from babel.core import get_global

    locale = parse_language(tag)
    if locale.script:
        return locale.script
    likely: Mapping[str, str] = get_global("likely_subtags")
    full = likely.get(str(locale)) or likely.get(locale.language) or ""
    parts = full.split("_")
    return parts[1] if len(parts) > 2 else "Latn"


def normalise_email(value: str) -> str:
    """Validate an address (syntax only: no DNS lookups) and return its ASCII normal form.

    Internationalised local parts are refused: they need SMTPUTF8, which many officials' servers
    lack, and a letter that cannot be delivered is worse than an import error.
    """
    try:
        checked = validate_email(value, check_deliverability=False, allow_smtputf8=False)
        return checked.ascii_email or checked.normalized
    except EmailNotValidError as exc:
        raise ValueError(f"{value!r} is not a valid email address: {exc}") from exc


def normalise_fax(value: str, region: str | None) -> str:
    """A fax number in E.164 (``+861062381025``); national forms need the target's country."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{value!r} is not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"{value!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


Language = Annotated[str, AfterValidator(_language)]


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

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not an IANA time zone") from exc
        return value

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


@dataclass(frozen=True)
class ConfigError:
    """One problem in one file, worded for the person who has to fix it."""

    file: str
    field: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.problem}"


@dataclass
class ActionSet:
    actions: dict[str, Action] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    errors: list[ConfigError] = field(default_factory=list)


def _field_path(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-after", "function-before")):
            continue
        else:
            out += f".{part}" if out else str(part)
    if len(loc) > 1 and loc[0] == "targets" and isinstance(loc[1], int):  # name it, not only its place
        targets = data.get("targets")
        target = targets[loc[1]] if isinstance(targets, list) and loc[1] < len(targets) else None
        if isinstance(target, dict) and target.get("id"):
            out += f" (target {target['id']})"
    return out


class _ActionLoader(yaml.SafeLoader):
    """YAML 1.1 reads ``+442079460000`` as an integer and ``010623`` as octal: a number written
    with a sign or a leading zero is a phone number in an action file, so it stays its text."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> Any:
        text = str(node.value)
        if text.startswith("+") or (text.startswith("0") and len(text) > 1):
            return text
        return super().construct_yaml_int(node)


_ActionLoader.add_constructor("tag:yaml.org,2002:int", _ActionLoader.construct_yaml_int)


def load_action_file(path: Path) -> Action | list[ConfigError]:
    try:
        data: Any = yaml.load(path.read_text(encoding="utf-8"), Loader=_ActionLoader)  # noqa: S506 (a SafeLoader)
    except (OSError, UnicodeDecodeError) as exc:
        return [ConfigError(str(path), "", f"cannot read: {exc}")]
    except yaml.YAMLError as exc:
        return [ConfigError(str(path), "", f"not valid YAML: {exc}")]
    if not isinstance(data, dict):
        return [ConfigError(str(path), "", "must be a YAML mapping of fields")]
    try:
        return Action.model_validate(data)
    except ValidationError as exc:
        return [
            ConfigError(str(path), _field_path(err["loc"], data), err["msg"].removeprefix("Value error, "))
            for err in exc.errors()
        ]


def load_actions(directory: Path) -> ActionSet:
    """Every ``*.yaml``/``*.yml`` in ``directory``; a bad file is reported, the others load."""
    result = ActionSet()
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    for path in files:
        loaded = load_action_file(path)
        if isinstance(loaded, list):
            result.errors.extend(loaded)
            continue
        if loaded.id in result.actions:
            first = result.sources[loaded.id]
            result.errors.append(ConfigError(str(path), "id", f"{loaded.id!r} is already used by {first}"))
            continue
        result.actions[loaded.id] = loaded
        result.sources[loaded.id] = path
    return result


# The SMTP URL ---------------------------------------------------------------------------------------
SMTP_DEFAULT_PORTS: dict[str, int] = {"smtp": 25, "smtps": 465, "smtp+starttls": 587}
_SCHEME_NAME = re.compile(r"[a-z][a-z0-9+.-]{0,19}")
_HOST_PORT = re.compile(
    r"(?:\[(?P<ipv6>[0-9a-f:.]+)\]|(?P<host>[a-z0-9._-]+))(?::(?P<port>[0-9]{1,5}))?/?", re.IGNORECASE
)


@dataclass(frozen=True)
class SmtpUrl:
    """``DISPATCHER_SMTP_URL``, parsed once.

    The password is left out of ``repr`` and ``str``, so printing or logging the settings, the
    transport or anything holding them cannot show it.
    """

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_smtp_url(url: str) -> SmtpUrl:
    """``scheme://[user:password@]host[:port]``; errors never repeat the URL (it may hold a password).

    The user name and password end at the *last* ``@``, and the password runs from the first
    ``:`` to there, so ``@``, ``/``, ``#``, ``?`` and ``:`` in a password work without
    percent-encoding (a host has none of them). Percent-encoding is decoded, so a literal ``%``
    followed by two hex digits must be written ``%25``.
    """
    scheme, sep, rest = url.strip().partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError("must start with smtp://, smtps:// or smtp+starttls://")
    if scheme not in SMTP_DEFAULT_PORTS:
        shown = f"scheme {scheme!r}" if _SCHEME_NAME.fullmatch(scheme) else "the scheme"
        raise ValueError(f"{shown} is not smtp, smtps or smtp+starttls")
    userinfo, at, host_port = rest.rpartition("@")
    host, port = _host_port(scheme, host_port)
    username, password = _credentials(userinfo) if at else (None, None)
    return SmtpUrl(scheme, host, port, username, password)


def _host_port(scheme: str, text: str) -> tuple[str, int]:
    match = _HOST_PORT.fullmatch(text)
    if match is None:
        raise ValueError(
            f"is not {scheme}://[user:password@]host[:port]: what follows the last '@' (or the "
            "scheme, without credentials) must be host[:port]"
        )
    port = int(match["port"] or SMTP_DEFAULT_PORTS[scheme])
    if not 0 < port < 65536:
        raise ValueError("the port must be between 1 and 65535")
    return match["ipv6"] or match["host"], port


def _credentials(userinfo: str) -> tuple[str, str]:
    username, colon, password = userinfo.partition(":")
    if not username:
        raise ValueError("has a password but no user name: scheme://user:password@host")
    if not colon or not password:
        raise ValueError("has a user name but no password: scheme://user:password@host")
    return unquote(username), unquote(password)


def _smtp_url(value: object) -> SmtpUrl | None:
    if value is None or isinstance(value, SmtpUrl):
        return value
    if not isinstance(value, str):  # a ValueError, not TypeError: pydantic reports only the former
        raise ValueError("must be a URL such as smtps://user:password@host:465")
    return parse_smtp_url(value) if value.strip() else None


def _smtp_url_shown(url: SmtpUrl | None) -> str | None:
    return None if url is None else str(url)


SmtpUrlSetting = Annotated[SmtpUrl | None, PlainValidator(_smtp_url), PlainSerializer(_smtp_url_shown)]


class Settings(BaseModel):
    """Runtime settings. Every field can be set as ``DISPATCHER_<NAME>`` in the environment."""

    # Errors must not repeat their input: DISPATCHER_SMTP_URL may hold a password.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    database_url: str = "sqlite:///var/dispatcher.db"
    actions_dir: Path = Path("config/actions")
    templates_dir: Path = Path("templates")
    outbox: Path = Path("var/outbox")
    # Before smtp_url: its validator reads this one (fields are validated in this order).
    smtp_allow_plain_auth: bool = False
    smtp_url: SmtpUrlSetting = None
    smtp_pool: int = Field(default=8, ge=1, le=256)
    smtp_timeout: float = Field(default=30.0, gt=0)
    smtp_cafile: Path | None = None
    fax_provider: Literal["file", "telnyx", "sinch", "twilio"] = "file"
    fax_outbox: Path = Path("var/fax-outbox")
    fax_font: Path | None = None
    # Busy and no answer: 20 min, then × 1.9 each time, at most 4 h, with up to 5 min of jitter.
    fax_max_attempts: int = Field(default=6, ge=1)
    fax_retry_initial: float = Field(default=20 * 60.0, gt=0)
    fax_retry_max: float = Field(default=4 * 3600.0, gt=0)
    # The bearer token Prometheus presents to /metrics; unset: there is no /metrics.
    metrics_token: SecretStr | None = None
    # Reverse proxies whose X-Forwarded-For/-Proto the web app believes (comma-separated
    # addresses); none by default, so a client cannot claim another address to dodge limits.
    trusted_proxies: str = ""
    # How fax providers reach the web app (webhooks, media): https://letters.example.org
    public_url: str | None = Field(default=None, pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$")
    telnyx_base_url: str = "https://api.telnyx.com/v2"
    telnyx_api_key: SecretStr | None = None
    telnyx_connection_id: str | None = None
    telnyx_from: str | None = None
    telnyx_public_key: str | None = None
    sinch_base_url: str = "https://fax.api.sinch.com/v3"
    sinch_project_id: str | None = None
    sinch_key_id: str | None = None
    sinch_key_secret: SecretStr | None = None
    twilio_base_url: str | None = None  # no default: https://SPACE.signalwire.com/api/laml/2010-04-01
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    # SignalWire signs webhooks with the project's Signing Key; Twilio with the auth token.
    twilio_signing_key: SecretStr | None = None
    twilio_from: str | None = None
    sender: str = Field(default="Letters (demo) <letters@example.org>", alias="from")
    # The bearer token a CRM presents to /api/consents; unset: there is no API.
    api_token: SecretStr | None = None
    # The version of the consent text the opt-in page shows; recorded with each consent.
    consent_text_version: str = Field(default="2026-11", min_length=1, max_length=64)
    # Days after an action closes until its letters no longer say who signed them; unset: kept.
    retention_days: int | None = Field(default=None, ge=1)
    rate_per_target: float = Field(default=2.0, gt=0)
    burst_per_target: int = Field(default=10, ge=1)
    rate_global: float = Field(default=100.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    retry_initial: float = Field(default=60.0, gt=0)
    retry_max: float = Field(default=6 * 3600.0, gt=0)
    lease_seconds: float = Field(default=120.0, gt=0)
    plan_interval: float = Field(default=60.0, gt=0)
    batch_size: int = Field(default=200, ge=1)
    auto_migrate: bool = True

    @field_validator("smtp_url")
    @classmethod
    def _credentials_need_tls(cls, url: SmtpUrl | None, info: ValidationInfo) -> SmtpUrl | None:
        if url and url.scheme == "smtp" and url.username and not info.data.get("smtp_allow_plain_auth"):
            raise ValueError(
                "smtp:// would send the password unencrypted: use smtps:// (port 465) or "
                "smtp+starttls:// (port 587), or, for a trusted local relay only, set "
                "DISPATCHER_SMTP_ALLOW_PLAIN_AUTH=true"
            )
        return url

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        from email.utils import parseaddr

        _, address = parseaddr(value)
        normalise_email(address)
        return value


ENV_PREFIX = "DISPATCHER_"
SECRETS = frozenset(
    name for name, info in Settings.model_fields.items() if info.annotation == SecretStr | None
)


def load_settings(environ: Mapping[str, str] | None = None, file: Path | None = None) -> Settings:
    """Merge ``config/dispatcher.toml`` (if any) with ``DISPATCHER_*`` variables.

    A problem is a ``ValueError`` naming the variable or the file and key, never the value.
    """
    environ = os.environ if environ is None else environ
    file = Path(environ.get(ENV_PREFIX + "SETTINGS", "config/dispatcher.toml")) if file is None else file
    names = {name: info.alias or name for name, info in Settings.model_fields.items()}
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}  # key -> where its value came from, for error messages
    if file.is_file():
        with file.open("rb") as fh:
            for name, value in tomllib.load(fh).items():
                values[names.get(name, name)] = value
                origins[names.get(name, name)] = f"{file}: {name}"
        if _has_password(values.get("smtp_url")):
            raise ValueError(f"{file}: smtp_url: passwords belong in DISPATCHER_SMTP_URL, not in a file")
        for name in SECRETS & values.keys():
            raise ValueError(f"{file}: {name}: secrets belong in {ENV_PREFIX}{name.upper()}, not in a file")
    for key in names.values():
        env = environ.get(ENV_PREFIX + key.upper())
        if env is not None:
            values[key] = env
            origins[key] = ENV_PREFIX + key.upper()
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        # from None: the chained ValidationError would be printed with any traceback.
        raise ValueError(_problems(exc, origins)) from None


def _has_password(value: object) -> bool:
    try:
        return isinstance(value, str) and bool(value.strip()) and parse_smtp_url(value).password is not None
    except ValueError:
        return False  # validation reports the bad URL, without repeating it


def _problems(exc: ValidationError, origins: Mapping[str, str]) -> str:
    lines = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        key = str(err["loc"][0]) if err["loc"] else ""
        where = origins.get(key, key)
        problem = err["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {problem}" if where else problem)
    return "\n".join(lines)
