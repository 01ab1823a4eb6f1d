"""Settings: ``config/dispatcher.toml`` (optional, committed, no secrets) overridden by
``DISPATCHER_*`` environment variables, and the SMTP URL they name. Action files are in
``actions/files.py``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from dispatcher.addresses import normalise_email
from dispatcher.models import Caps
from dispatcher.plans.hours import parse_hours

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
    # When faxes may arrive, in each target's zone, unless its action file's plan says: a fax at
    # 3 a.m. rings in an empty office. "always" for none (emails are always sent).
    fax_office_hours: str = "Mon-Fri 08:00-18:00"
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
    # The version of the consent text the opt-in page shows; recorded with each consent, by the
    # form with the page's language and a digest of its words (" zh-Hans 1a2b3c4d", 17 more
    # characters) in a consent_version of at most 64 (people/fields.py, store/schema.py).
    consent_text_version: str = Field(default="2026-11", min_length=1, max_length=47)
    # Days after an action closes until its letters no longer say who signed them; unset: kept.
    retention_days: int | None = Field(default=None, ge=1)
    rate_per_target: float = Field(default=2.0, gt=0)
    burst_per_target: int = Field(default=10, ge=1)
    rate_global: float = Field(default=100.0, gt=0)
    # Caps on what one recipient address, and one email domain, receives (README: Caps): officials'
    # filters quarantine volume. "none" (or empty) lifts a cap.
    max_per_hour: int | None = Field(default=30, ge=1)
    max_per_day: int | None = Field(default=300, ge=1)
    domain_max_per_hour: int | None = Field(default=120, ge=1)
    # How each target's letters are paced to the deadline unless a plan says (README: Delivery
    # plans): "even" spreads them over the sending time left, "asap" sends as the caps allow.
    spread: Literal["even", "asap"] = "even"
    # The spread aims this long before the deadline, so late letters and retries still fit.
    spread_margin_hours: float = Field(default=24.0, ge=0)
    # When a digest target's daily message goes, in its zone (the first open moment from then).
    digest_at: dt.time = dt.time(10, 0)
    fax_digest_pages: int = Field(default=20, ge=2)  # at most this many pages in one digest fax
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

    @field_validator("max_per_hour", "max_per_day", "domain_max_per_hour", mode="before")
    @classmethod
    def _lifted(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in ("", "none") else value

    def caps(self, zone: str = "UTC") -> Caps:
        """The caps every recipient gets from these settings; ``zone``: the recipient's."""
        return Caps(self.max_per_hour, self.max_per_day, self.domain_max_per_hour, zone)

    @field_validator("fax_office_hours")
    @classmethod
    def _office_hours(cls, value: str) -> str:
        return str(parse_hours(value))

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
