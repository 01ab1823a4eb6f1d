"""What each part of the dispatcher needs from the store, as Protocols; ``Store`` is their union
and what only the CLI and the daemon's housekeeping call.

A signature that takes one of these says which calls it makes, and a fake for a test of it
needs only those: the planner (actions/planner.py) takes a PlannerStore; the feeder, the lease
keeper and the results writer (sending/) a SenderStore. ``SqlStore`` satisfies each (mypy
checks it: tests/store/test_roles.py).
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from dispatcher.models import (
    ActionHold,
    ActionState,
    AttemptResult,
    Backlog,
    ClaimBatch,
    ClaimGroup,
    GroupId,
    Progress,
    ProviderEvent,
    QueueCount,
    Resolution,
    Retry,
    Status,
    SupporterRecord,
    WorkerBeat,
)
from dispatcher.pacing import Limits
from dispatcher.plans import spread

if TYPE_CHECKING:
    from dispatcher.store.accounts import Accounts
    from dispatcher.store.people import SqlPeople
    from dispatcher.store.reports import SqlReports


@dataclass(frozen=True)
class ClaimRequest:
    groups: Sequence[ClaimGroup]
    room: Mapping[str, int]  # most letters to claim per channel
    limits: Limits
    start: int = 0  # which group is served first this round (the feeder rotates the groups instead)
    # What one letter costs of its group's spread bucket (pacing.jitter); a test passes a
    # seeded one.
    jitter: Callable[[], float] = spread.cost


class SenderStore(Protocol):
    """A sending worker: claims, leases kept or given back, outcomes, its heartbeat."""

    @abc.abstractmethod
    def claim(self, worker: str, request: ClaimRequest, now: dt.datetime, lease: dt.timedelta) -> ClaimBatch:
        """Lease due deliveries, fairly across groups and as the shared pacing buckets allow.

        One transaction: the buckets are refilled and spent in it, so every worker sharing the
        store sees one budget per recipient and one for the deployment. It looks at the first
        groups only, as many per channel as its room (``ClaimBatch.reached`` says how many).
        """

    @abc.abstractmethod
    def renew(self, worker: str, delivery_ids: Sequence[int], until: dt.datetime) -> int:
        """Extend this worker's leases on deliveries whose attempt is still running."""

    @abc.abstractmethod
    def release(self, worker: str, delivery_ids: Sequence[int], now: dt.datetime) -> int:
        """Give back leased deliveries that were not attempted."""

    @abc.abstractmethod
    def record(self, worker: str, results: Sequence[AttemptResult], retry: Retry) -> None:
        """Attempt outcomes; ``retry`` applies to provider events that outran a submission."""

    @abc.abstractmethod
    def recover(self, worker: str, now: dt.datetime, others: bool = True) -> int:
        """Deliveries whose lease ran out mid-attempt go back to pending, logged as interrupted;
        not those of another worker that beat within ``ALIVE`` (it is still sending them).
        With ``others`` false, only ``worker``'s own: it has not been up long enough to tell a
        gone worker from one whose first beat after an outage is still on its way."""

    @abc.abstractmethod
    def expire_leases_of(self, worker: str, now: dt.datetime) -> int:
        """Make a previous run's leases under this worker id reclaimable at once."""

    @abc.abstractmethod
    def next_due(self, groups: Sequence[GroupId], now: dt.datetime) -> dt.datetime | None:
        """When the first of these groups has a letter to send whose consent still allows it at
        ``now`` (or a lease runs out)."""

    @abc.abstractmethod
    def backlog(self, now: dt.datetime) -> Backlog: ...

    @abc.abstractmethod
    def pending_counts(self) -> dict[GroupId, int]:
        """Pending letters per action × target × channel, due or not (what a spread divides)."""

    @abc.abstractmethod
    def heartbeat(self, beat: WorkerBeat) -> None: ...


class PlannerStore(Protocol):
    """The planner: letters written from consents, and an action's waiting ones ended."""

    @abc.abstractmethod
    def plan(
        self,
        action_id: str,
        pairs: Sequence[tuple[str, str]],
        now: dt.datetime,
        batch: int = 5000,
        progress: Progress | None = None,
        fallbacks: Mapping[str, str] | None = None,
        tags: Sequence[str] = (),
        languages: Mapping[str, str] | None = None,
    ) -> int:
        """Create missing deliveries for supporters whose live, confirmed, unexpired consent
        covers the action (by id, by one of its ``tags``, or all) × (target, channel) pairs;
        ``fallbacks`` names the channel a target's failed faxes go by instead, ``languages`` the
        language each target's letter is written in (a consent may name the ones it signs)."""

    @abc.abstractmethod
    def finish_pending(
        self,
        action_id: str,
        status: Status,
        now: dt.datetime,
        *,
        deadline: dt.datetime,
        by_file: bool = False,
    ) -> int:
        """Move pending (and abandoned in-flight) deliveries to expired or cancelled; cancelled
        while the action's state says closed, they are marked for ``revive(closed=True)``.

        Only while the store still says so, checked in the same statement: expired only past the
        deadline in force (an ``extend``'s, else ``deadline``, the file's); cancelled only while
        the action's state says closed, unless ``by_file`` (the action's file closes it)."""


class WebStore(Protocol):
    """The web app: the dashboard's reads, staff's requeues, supporters' pages, the CRM API,
    webhooks and fax media."""

    @abc.abstractmethod
    def instance_secret(self) -> bytes:
        """A random per-database key (Message-IDs are derived from it and the delivery id)."""

    @abc.abstractmethod
    def action_states(self) -> dict[str, ActionState]: ...

    @abc.abstractmethod
    def action_holds(self, now: dt.datetime) -> list[ActionHold]:
        """Every worker's holds, but those of workers forgotten (silent for ``WORKERS_KEPT``)
        and the check holds of workers that stopped."""

    @abc.abstractmethod
    def queue_counts(self) -> list[QueueCount]:
        """Deliveries by action × target × channel × status, with the oldest due time."""

    @abc.abstractmethod
    def fax_pages(self) -> list[tuple[str, str, int]]:
        """Pages handed to each fax provider per action (what the faxes cost), retries included."""

    @abc.abstractmethod
    def workers(self) -> list[WorkerBeat]: ...

    @abc.abstractmethod
    def requeue_failed(self, action_id: str, now: dt.datetime, delivery_id: int | None = None) -> int:
        """Failed deliveries of an action (or one of them) go back to the queue, due now."""

    @abc.abstractmethod
    def retry_now(self, action_id: str, now: dt.datetime) -> int:
        """Letters of an action waiting for a retry are due now instead."""

    @abc.abstractmethod
    def import_supporters(self, records: Iterable[SupporterRecord], now: dt.datetime) -> int:
        """Upsert supporters and their consents in one transaction; returns rows written."""

    @abc.abstractmethod
    def accept_webhook(
        self, provider: str, message: str, event: ProviderEvent | None, retry: Retry, now: dt.datetime
    ) -> Resolution | None:
        """Note a verified webhook message and apply its event, in one transaction; None if
        this message was accepted before (a replay) or carries no final word."""

    @abc.abstractmethod
    def media(self, reference: str) -> bytes | None: ...

    @property
    @abc.abstractmethod
    def accounts(self) -> Accounts:
        """The web app's users, sessions and audit log."""

    @property
    @abc.abstractmethod
    def reports(self) -> SqlReports:
        """The dashboard's and /metrics' reads."""

    @property
    @abc.abstractmethod
    def people(self) -> SqlPeople:
        """Supporters' rights: revoke, export, forget."""
