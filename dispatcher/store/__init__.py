"""The store: where deliveries, attempts, supporters and runtime action state live.

``Store`` is the interface the planner, the scheduler and the CLI talk to; ``SqlStore`` is the
implementation over SQLAlchemy (SQLite file by default, PostgreSQL for several workers). Every
method is one short transaction, so a process killed at any point leaves the store consistent.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dispatcher.models import (
    ALIVE,
    WORKERS_KEPT,
    ActionHold,
    ActionState,
    AttemptResult,
    AttemptRow,
    Backlog,
    Claim,
    ClaimBatch,
    ClaimGroup,
    GroupId,
    Outcome,
    Progress,
    ProviderEvent,
    QueueCount,
    Resolution,
    Retry,
    SentCount,
    Signer,
    Status,
    Submission,
    SupporterRecord,
    Terms,
    WorkerBeat,
    released_before,
)
from dispatcher.pacing import Limits

# The records (dispatcher.models) are exported here too: the store's own modules import them from
# here until the lead sweeps store/ after issue 19's merges; code outside store/ imports models.
__all__ = [
    "ALIVE",
    "WORKERS_KEPT",
    "ActionHold",
    "ActionState",
    "AttemptResult",
    "AttemptRow",
    "Backlog",
    "Claim",
    "ClaimBatch",
    "ClaimGroup",
    "ClaimRequest",
    "GroupId",
    "Outcome",
    "Progress",
    "ProviderEvent",
    "QueueCount",
    "Resolution",
    "Retry",
    "SentCount",
    "Signer",
    "Status",
    "Store",
    "Submission",
    "SupporterRecord",
    "Terms",
    "WorkerBeat",
    "open_store",
    "released_before",
]

if TYPE_CHECKING:
    from dispatcher.store.accounts import Accounts
    from dispatcher.store.people import SqlPeople
    from dispatcher.store.privacy import SqlPrivacy
    from dispatcher.store.reports import SqlReports


@dataclass(frozen=True)
class ClaimRequest:
    groups: Sequence[ClaimGroup]
    room: Mapping[str, int]  # most letters to claim per channel
    limits: Limits
    start: int = 0  # which group is served first this round (rotated by the caller)


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
        fallbacks: Mapping[str, str] | None = None,
        tags: Sequence[str] = (),
        languages: Mapping[str, str] | None = None,
    ) -> int:
        """Create missing deliveries for supporters whose live, confirmed, unexpired consent
        covers the action (by id, by one of its ``tags``, or all) × (target, channel) pairs;
        ``fallbacks`` names the channel a target's failed faxes go by instead, ``languages`` the
        language each target's letter is written in (a consent may name the ones it signs)."""

    # sending
    @abc.abstractmethod
    def claim(self, worker: str, request: ClaimRequest, now: dt.datetime, lease: dt.timedelta) -> ClaimBatch:
        """Lease due deliveries, fairly across groups and as the shared pacing buckets allow.

        One transaction: the buckets are refilled and spent in it, so every worker sharing the
        store sees one budget per recipient and one for the deployment.
        """

    @abc.abstractmethod
    def recover(self, worker: str, now: dt.datetime, others: bool = True) -> int:
        """Deliveries whose lease ran out mid-attempt go back to pending, logged as interrupted;
        not those of another worker that beat within ``ALIVE`` (it is still sending them).
        With ``others`` false, only ``worker``'s own: it has not been up long enough to tell a
        gone worker from one whose first beat after an outage is still on its way."""

    @abc.abstractmethod
    def release(self, worker: str, delivery_ids: Sequence[int], now: dt.datetime) -> int:
        """Give back leased deliveries that were not attempted."""

    @abc.abstractmethod
    def renew(self, worker: str, delivery_ids: Sequence[int], until: dt.datetime) -> int:
        """Extend this worker's leases on deliveries whose attempt is still running."""

    @abc.abstractmethod
    def expire_leases_of(self, worker: str, now: dt.datetime) -> int:
        """Make a previous run's leases under this worker id reclaimable at once."""

    @abc.abstractmethod
    def record(self, worker: str, results: Sequence[AttemptResult], retry: Retry) -> None:
        """Attempt outcomes; ``retry`` applies to provider events that outran a submission."""

    @abc.abstractmethod
    def resolve(self, event: ProviderEvent, by: str, retry: Retry) -> Resolution:
        """Apply a provider's final word to its submitted delivery, once: duplicates and events
        about superseded jobs change nothing; one that arrives before its submission is kept.
        A retryable failure is tried again when ``retry`` says, or fails for good."""

    @abc.abstractmethod
    def accept_webhook(
        self, provider: str, message: str, event: ProviderEvent | None, retry: Retry, now: dt.datetime
    ) -> Resolution | None:
        """Note a verified webhook message and apply its event, in one transaction; None if
        this message was accepted before (a replay) or carries no final word."""

    # fax media a provider fetches from the web app, and records kept a few days
    @abc.abstractmethod
    def put_media(self, reference: str, data: bytes, now: dt.datetime) -> None: ...

    @abc.abstractmethod
    def media(self, reference: str) -> bytes | None: ...

    @abc.abstractmethod
    def prune_fax_records(self, before: dt.datetime) -> int:
        """Forget media, webhook messages and unmatched early events older than ``before``."""

    # running dispatchers
    @abc.abstractmethod
    def heartbeat(self, beat: WorkerBeat) -> None: ...

    @abc.abstractmethod
    def workers(self) -> list[WorkerBeat]: ...

    @abc.abstractmethod
    def action_holds(self, now: dt.datetime) -> list[ActionHold]:
        """Every worker's holds, but those of workers forgotten (silent for ``WORKERS_KEPT``)
        and the check holds of workers that stopped."""

    @abc.abstractmethod
    def set_holds(self, worker: str, holds: Mapping[str, ActionHold]) -> None:
        """This worker's held actions are these: its others are released, other workers' are
        left alone; one held already keeps its ``held_at``."""

    @abc.abstractmethod
    def release_holds(self, action_id: str, now: dt.datetime) -> int:
        """Staff release the action: every worker's hold of it goes, and a "sending" hold taken
        before ``now`` is not stored or read again. Returns how many went."""

    @abc.abstractmethod
    def hold_releases(self) -> dict[str, dt.datetime]:
        """When staff last released each action's holds."""

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

    @property
    @abc.abstractmethod
    def privacy(self) -> SqlPrivacy:
        """Receipts due and sent, and retention: letters that stop naming their supporter."""

    # operators' requeues
    @abc.abstractmethod
    def requeue_failed(self, action_id: str, now: dt.datetime, delivery_id: int | None = None) -> int:
        """Failed deliveries of an action (or one of them) go back to the queue, due now."""

    @abc.abstractmethod
    def retry_now(self, action_id: str, now: dt.datetime) -> int:
        """Letters of an action waiting for a retry are due now instead."""

    @abc.abstractmethod
    def submitted_for(self, provider: str, action_ids: Sequence[str]) -> list[str]:
        """Jobs this provider holds for these actions (paused or closed: to withdraw)."""

    @abc.abstractmethod
    def submitted(self, provider: str, limit: int) -> list[str]:
        """Job ids of faxes this provider holds, longest waiting first (for polling)."""

    @abc.abstractmethod
    def next_due(self, groups: Sequence[GroupId], now: dt.datetime) -> dt.datetime | None:
        """When the first of these groups has a letter to send whose consent still allows it at
        ``now`` (or a lease runs out)."""

    # deadlines and controls
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

    @abc.abstractmethod
    def revive(self, action_id: str, from_status: Status, now: dt.datetime, closed: bool = False) -> int:
        """Back to pending, if consent still allows (moved to the consent that replaced theirs if
        that allows their channel); ``closed``: only those cancelled while staff held it closed."""

    @abc.abstractmethod
    def backlog(self, now: dt.datetime) -> Backlog: ...

    # reports: counted by the database (GROUP BY), read in pages, never loaded whole
    @abc.abstractmethod
    def queue_counts(self) -> list[QueueCount]:
        """Deliveries by action × target × channel × status, with the oldest due time."""

    @abc.abstractmethod
    def action_counts(self) -> dict[str, dict[str, int]]:
        """Deliveries by action and status."""

    @abc.abstractmethod
    def sent_counts(self, action_id: str | None = None) -> list[SentCount]:
        """Letters sent per action × target × channel: the count reported to officials."""

    @abc.abstractmethod
    def fax_pages(self) -> list[tuple[str, str, int]]:
        """Pages handed to each fax provider per action (what the faxes cost), retries included."""

    @abc.abstractmethod
    def attempts_after(
        self,
        after_id: int,
        limit: int,
        action_id: str | None = None,
        target_id: str | None = None,
    ) -> list[AttemptRow]:
        """One page of the send log, oldest first, after the attempt ``after_id``."""

    def attempt_log(
        self, action_id: str | None = None, target_id: str | None = None, page: int = 2000
    ) -> Iterator[AttemptRow]:
        """The whole send log, page by page: each page its own short read."""
        after = 0
        while rows := self.attempts_after(after, page, action_id, target_id):
            yield from rows
            after = rows[-1].id


def open_store(url: str, *, migrate: bool = True) -> Store:
    from dispatcher.store.sql import SqlStore

    return SqlStore(url, migrate=migrate)
