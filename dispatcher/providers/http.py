"""What every HTTP fax provider shares: one client, plain connections refused, and HTTP
statuses read the same way (429 and its Retry-After, 401/403, 5xx, network errors)."""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from dispatcher.providers import FaxProvider, ProviderError
from dispatcher.store.failures import Failure

TIMEOUT = httpx.Timeout(30.0, connect=10.0)
LOOPBACK_NAMES = ("localhost",)


def require_tls(url: str, what: str) -> str:
    """Credentials travel with every request: https, or plain http to this machine only."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" or (parts.scheme == "http" and _loopback(host)):
        return url.rstrip("/")
    raise ValueError(f"{what} must be an https:// URL (plain http only to this machine)")


def _loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_time(value: object) -> dt.datetime | None:
    """An ISO 8601 time from a provider's JSON; naive means UTC; anything else, None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def retry_after(response: httpx.Response, now: Callable[[], dt.datetime]) -> float | None:
    """Seconds from a Retry-After header: a number, or an HTTP date."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - now()).total_seconds())


class HttpProvider(FaxProvider):
    """An HTTP API client; subclasses say how a refusal (4xx) maps onto ``Failure``."""

    def __init__(self, base_url: str, auth: httpx.Auth | None = None, headers: dict[str, str] | None = None):
        self.base_url = require_tls(base_url, f"DISPATCHER_{self.name.upper()}_BASE_URL")
        self.client = httpx.AsyncClient(
            base_url=self.base_url, auth=auth, headers=headers, timeout=TIMEOUT, follow_redirects=False
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; any answer but 2xx becomes a ``ProviderError`` in the shared vocabulary."""
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ProviderError(
                Failure.PROVIDER, f"{self.name} did not answer in time ({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            raise ProviderError(
                Failure.PROVIDER, f"cannot reach {self.name} ({type(exc).__name__})"
            ) from None
        if response.is_success:
            return response
        code = response.status_code
        if code == 429:
            wait = retry_after(response, lambda: dt.datetime.now(dt.UTC))
            raise ProviderError(
                Failure.RATE_LIMITED, f"{self.name} asks us to slow down", code=code, retry_after=wait
            )
        if code in (401, 403):
            raise ProviderError(Failure.ACCOUNT, f"{self.name} refused our credentials ({code})", code=code)
        if code >= 500:
            raise ProviderError(Failure.PROVIDER, f"{self.name} failed ({code})", code=code)
        raise self.refusal(response)

    def refusal(self, response: httpx.Response) -> ProviderError:
        """A 4xx other than 401, 403 and 429: the provider's own codes say why."""
        return ProviderError(
            Failure.PROVIDER,
            f"{self.name} refused the request ({response.status_code})",
            code=response.status_code,
        )
