"""The store: where deliveries, attempts, supporters and runtime action state live.

``Store`` is the interface the planner, the scheduler and the CLI talk to; ``SqlStore`` is the
implementation over SQLAlchemy (SQLite file by default, PostgreSQL for several workers). Every
method is one short transaction, so a process killed at any point leaves the store consistent.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class Outcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    # A lease ran out while the attempt was in flight (crash, kill -9): the outcome is unknown and
    # the delivery is sent again with the same Message-ID.
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class ActionState:
    action_id: str
    status: str | None
    deadline: dt.datetime | None
    updated_at: dt.datetime
    updated_by: str


@dataclass(frozen=True)
class SupporterRecord:
    email: str
    name: str
    language: str
    city: str
    country: str
    scopes: tuple[str, ...]
    opted_in_at: dt.datetime
    source: str = "import"


@dataclass(frozen=True)
class Signer:
    """The supporter as the renderer and channels see them: only what a letter needs."""

    name: str
    email: str
    city: str
    country: str
    language: str


@dataclass(frozen=True)
class ClaimGroup:
    action_id: str
    target_id: str
    channel: str
    limit: int


@dataclass(frozen=True)
class Claim:
    delivery_id: int
    action_id: str
    target_id: str
    channel: str
    attempt: int
    signer: Signer


@dataclass(frozen=True)
class AttemptResult:
    delivery_id: int
    action_id: str
    target_id: str
    channel: str
    started_at: dt.datetime
    finished_at: dt.datetime
    outcome: Outcome
    code: int | None = None
    detail: str = ""
    language: str | None = None
    next_attempt_at: dt.datetime | None = None


@dataclass(frozen=True)
class AttemptRow:
    id: int
    delivery_id: int
    action_id: str
    target_id: str
    channel: str
    started_at: dt.datetime
    finished_at: dt.datetime
    outcome: str
    code: int | None
    detail: str
    worker: str


@dataclass(frozen=True)
class QueueCount:
    action_id: str
    target_id: str
    channel: str
    status: str
    count: int
    oldest_due: dt.datetime | None


Progress = Callable[[int, int], None]


class Store(abc.ABC):
    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def instance_secret(self) -> bytes:
        """A random per-database key (Message-IDs are derived from it and the delivery id)."""

    # runtime state of actions
    @abc.abstractmethod
    def action_states(self) -> dict[str, ActionState]: ...

    @abc.abstractmethod
    def set_action_state(
        self,
        action_id: str,
        *,
        by: str,
        now: dt.datetime,
        status: str | None = None,
        deadline: dt.datetime | None = None,
    ) -> None: ...

    # supporters
    @abc.abstractmethod
    def import_supporters(self, records: Iterable[SupporterRecord], now: dt.datetime) -> int:
        """Upsert supporters and their consents in one transaction; returns rows written."""

    @abc.abstractmethod
    def supporter_count(self) -> int: ...

    @abc.abstractmethod
    def find_signer(self, email: str) -> Signer | None: ...

    # planning
    @abc.abstractmethod
    def plan(
        self,
        action_id: str,
        pairs: Sequence[tuple[str, str]],
        now: dt.datetime,
        batch: int = 5000,
        progress: Progress | None = None,
    ) -> int:
        """Create missing deliveries for consenting supporters × (target, channel) pairs."""

    # sending
    @abc.abstractmethod
    def claim(
        self, worker: str, groups: Sequence[ClaimGroup], now: dt.datetime, lease: dt.timedelta
    ) -> list[Claim]:
        """Lease due deliveries; expired leases of others are taken over and logged."""

    @abc.abstractmethod
    def release(self, worker: str, delivery_ids: Sequence[int], now: dt.datetime) -> int:
        """Give back leased deliveries that were not attempted."""

    @abc.abstractmethod
    def expire_leases_of(self, worker: str, now: dt.datetime) -> int:
        """Make a previous run's leases under this worker id reclaimable at once."""

    @abc.abstractmethod
    def record(self, worker: str, results: Sequence[AttemptResult]) -> None: ...

    @abc.abstractmethod
    def next_due(self, action_ids: Sequence[str], channels: Sequence[str]) -> dt.datetime | None: ...

    # deadlines and controls
    @abc.abstractmethod
    def finish_pending(self, action_id: str, status: Status, now: dt.datetime) -> int:
        """Move pending (and abandoned in-flight) deliveries to expired or cancelled."""

    @abc.abstractmethod
    def revive(self, action_id: str, from_status: Status, now: dt.datetime) -> int: ...

    # reports
    @abc.abstractmethod
    def queue_counts(self) -> list[QueueCount]: ...

    @abc.abstractmethod
    def attempt_log(
        self, action_id: str | None = None, target_id: str | None = None
    ) -> Iterator[AttemptRow]: ...


def open_store(url: str, *, migrate: bool = True) -> Store:
    from dispatcher.store.sql import SqlStore

    return SqlStore(url, migrate=migrate)
