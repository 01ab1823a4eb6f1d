"""Fax providers: who dials the fax, behind one small interface.

A provider takes a PDF for a number with our reference and returns its job id; says what became
of a job when asked; withdraws a job it has not started; and turns a webhook it sent into a
``ProviderEvent`` after checking that it really sent it. Every provider's failure codes map
onto one vocabulary (``Failure``), retryable or not.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from dispatcher.models import ProviderEvent
from dispatcher.settings import Settings
from dispatcher.store.failures import Failure

__all__ = ["Failure", "FaxProvider", "ProviderError", "Verified", "Webhook", "WebhookRefused", "require"]


class ProviderError(Exception):
    """The provider refused or failed a request; nothing was accepted."""

    def __init__(
        self, failure: Failure, detail: str, *, code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{failure.value}: {detail}")
        self.failure = failure
        self.detail = detail
        self.code = code
        self.retry_after = retry_after


class WebhookRefused(Exception):
    """Not a webhook the provider sent us (forged, stale, malformed): 4xx, logged, ignored."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Webhook:
    """A request as it reached the web app: what a provider's signature covers."""

    url: str  # as the provider called it (DISPATCHER_PUBLIC_URL + path + query)
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    content_type: str
    form: Mapping[str, str]  # the parsed body, when it is a form


@dataclass(frozen=True)
class Verified:
    """A webhook the provider really sent: its final word on a job, if it is one, and what
    identifies this very message, so a replay of it is refused."""

    event: ProviderEvent | None  # None: news on the way (queued, sending), not an outcome
    message: str


class FaxProvider(abc.ABC):
    name: str
    concurrency = 4  # faxes being prepared and submitted at once by one dispatcher
    poll_every = 60.0  # seconds between questions about the jobs it holds (webhooks are faster)

    @abc.abstractmethod
    async def submit(self, pdf: bytes, to: str, reference: str) -> str:
        """Hand the fax over; returns the provider's job id. Raises ``ProviderError``."""

    @abc.abstractmethod
    async def find(self, reference: str, since: dt.datetime, to: str | None = None) -> str | None:
        """The job id of a fax with this reference, submitted since then (to that number, which
        narrows the listing where the API can filter by it) and under way or delivered, if there
        is one. A fax that failed (busy, say) is not one: the letter is being tried again, and
        must be submitted again."""

    @abc.abstractmethod
    async def status(self, job_id: str) -> ProviderEvent | None:
        """The job's final outcome, or None while the provider is still working on it."""

    async def cancel(self, job_id: str) -> bool:
        """Withdraw a job the provider has not started dialling; False if it cannot."""
        return False

    def verify(self, webhook: Webhook, now: dt.datetime) -> Verified:
        """Check a webhook's origin and read it. Raises ``WebhookRefused``."""
        raise WebhookRefused(f"{self.name} sends no webhooks", status=404)

    async def close(self) -> None:
        """Release what the provider client holds."""


def require(settings: Settings, *names: str) -> None:
    """Every one of these settings is set, or one error naming all that are missing."""
    missing = [f"DISPATCHER_{n.upper()}" for n in names if getattr(settings, n) in (None, "")]
    if missing:
        raise ValueError(f"fax provider {settings.fax_provider} needs {', '.join(missing)}")
