"""The channel interface: a rendered letter delivered to one target, by email or fax.

A channel turns (letter, target, signer) into something its transport can carry and reports
the outcome as a ``Reply`` or raises ``SendError`` with ``transient`` telling the scheduler
whether a later attempt may succeed.
"""

from __future__ import annotations

import abc
import datetime as dt
import math
from dataclasses import dataclass

from dispatcher import capabilities
from dispatcher.actions.model import Action, Target
from dispatcher.capabilities import Capabilities
from dispatcher.letters.render import Letter
from dispatcher.models import ProviderEvent, Signer, Submission


@dataclass(frozen=True)
class Reply:
    code: int | None
    detail: str
    # Set when the channel only handed the letter on (a fax provider took the job): the outcome
    # comes later, by webhook or polling.
    submission: Submission | None = None


class SendError(Exception):
    def __init__(
        self,
        detail: str,
        *,
        transient: bool,
        code: int | None = None,
        retry_after: float | None = None,  # seconds, when the other side said (429 Retry-After)
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.transient = transient
        self.code = code
        self.retry_after = retry_after


class Unavailable(Exception):
    """Nothing was attempted: the channel is down (its circuit is open), or the letter could not
    start by its ``start_by`` time and goes back to the queue."""


@dataclass(frozen=True)
class Envelope:
    """Everything a channel needs to send one delivery."""

    action: Action
    target: Target
    letter: Letter
    signer: Signer
    delivery_id: int
    now: dt.datetime
    start_by: float = math.inf  # time.monotonic() after which the attempt must not start (pacing)
    attempt: int = 1  # above 1, an earlier attempt may have got through: ask before resending
    deadline_by: float = math.inf  # time.monotonic() of the action's deadline


# An HTTP provider's attempt: a lookup and a submission, each within httpx's 10 s to connect and
# 30 s to read or to write (dispatcher/providers/http.py).
HTTP_ATTEMPT = 2 * (10.0 + 30.0 + 30.0)


class Channel(abc.ABC):
    name: str

    @property
    def capabilities(self) -> Capabilities:
        """What this kind of channel can do: the answer the planner, the store and the web app
        get for its name without a built channel; the channel contract suite checks that the
        channel does what it declares."""
        return capabilities.of(self.name)

    @property
    def concurrency(self) -> int:
        """How many letters this channel works on at once in one dispatcher."""
        return 4

    async def start(self) -> None:
        """Open connections, if the transport keeps any."""

    async def close(self) -> None:
        """Close what ``start`` opened; called once, on shutdown."""

    def ready_in(self) -> float:
        """Seconds until the channel should be tried again; 0 when it is up."""
        return 0.0

    @property
    def trouble(self) -> str | None:
        """Why the channel is down, fit for logs and dashboards (no secret); None when it is not
        known to be."""
        return None

    def drain(self) -> None:
        """The worker is stopping: an attempt not yet under way is handed back (``Unavailable``)
        rather than started, so that those under way are the only ones it waits for."""

    def longest_attempt(self, action: Action, target: Target) -> float:
        """Seconds an attempt to ``target`` can take at most once under way: how long a stopping
        worker waits for it, so that what the other side accepted is recorded, not sent twice."""
        return HTTP_ATTEMPT

    def line(self, action: Action, target: Target) -> str | None:
        """A line that carries one letter at a time across all workers (a fax number), if any."""
        return None

    def message_id(self, delivery_id: int) -> str | None:
        """The Message-ID the letter carries, stable across attempts, if it is an email."""
        return None

    @abc.abstractmethod
    def pacing_keys(self, action: Action, target: Target) -> tuple[str, ...]:
        """The recipients one letter to ``target`` reaches, as pacing bucket keys.

        Keyed by address, not by target id: the same official named in two actions has one
        mailbox, and one limit.
        """

    @abc.abstractmethod
    async def send(self, envelope: Envelope) -> Reply: ...

    # Channels whose outcome comes later (fax) name the provider holding the jobs, and say
    # what became of them when asked.
    provider: str | None = None
    poll_every = 30.0  # seconds between questions about the jobs the provider holds

    async def poll(self, job_ids: list[str]) -> list[ProviderEvent]:
        """The final outcomes among these jobs (the others are still in the provider's hands)."""
        return []

    async def cancel(self, job_id: str) -> bool:
        """Withdraw a job the provider has not started; False if it cannot (or has no jobs)."""
        return False
