"""What carries a built message: the transport interface, which SMTP and a Maildir implement."""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

from dispatcher.channels.base import Reply


@dataclass(frozen=True)
class OutgoingMail:
    sender: str
    recipients: tuple[str, ...]
    data: bytes


class MailTransport(abc.ABC):
    trouble: str | None = None  # why the transport cannot be used now, if it knows

    async def start(self) -> None:
        """Open what the transport keeps open."""

    def ready_in(self) -> float:
        """Seconds until the transport should be tried again; 0 when it is up."""
        return 0.0

    async def close(self) -> None:
        """Close what ``start`` opened."""

    @property
    def concurrency(self) -> int:
        """Letters worth having in hand at once."""
        return 4

    def drain(self) -> None:
        """Start no more transactions: letters not yet under way are handed back."""

    def longest_attempt(self, recipients: int) -> float:
        """Seconds a transaction to ``recipients`` addresses can take once under way."""
        return 1.0

    @abc.abstractmethod
    async def send(self, mail: OutgoingMail, start_by: float = math.inf) -> Reply:
        """Deliver ``mail``; raise ``Unavailable`` if it cannot start by ``start_by`` (monotonic)."""
