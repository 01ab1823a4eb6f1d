"""The store: where deliveries, attempts, supporters and runtime action state live.

``Store`` is the interface the planner, the scheduler and the CLI talk to; ``SqlStore`` is the
implementation over SQLAlchemy (SQLite file by default, PostgreSQL for several workers). Every
method is one short transaction, so a process killed at any point leaves the store consistent.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
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
from dispatcher.store.roles import ClaimRequest, PlannerStore, SenderStore, WebStore

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
    from dispatcher.store.digests import SqlDigests
    from dispatcher.store.privacy import SqlPrivacy


class Store(SenderStore, PlannerStore, WebStore, abc.ABC):
    """Every call: the roles' (store/roles.py), and what only the CLI and housekeeping make."""

    @abc.abstractmethod
    def close(self) -> None: ...

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

    @abc.abstractmethod
    def supporter_count(self) -> int: ...

    @abc.abstractmethod
    def find_signer(self, email: str) -> Signer | None: ...

    @abc.abstractmethod
    def resolve(self, event: ProviderEvent, by: str, retry: Retry) -> Resolution:
        """Apply a provider's final word to its submitted delivery, once: duplicates and events
        about superseded jobs change nothing; one that arrives before its submission is kept.
        A retryable failure is tried again when ``retry`` says, or fails for good."""

    # fax media a provider fetches from the web app, and records kept a few days
    @abc.abstractmethod
    def put_media(self, reference: str, data: bytes, now: dt.datetime) -> None: ...

    @abc.abstractmethod
    def prune_fax_records(self, before: dt.datetime) -> int:
        """Forget media, webhook messages and unmatched early events older than ``before``."""

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
    def privacy(self) -> SqlPrivacy:
        """Receipts due and sent, and retention: letters that stop naming their supporter."""

    @property
    @abc.abstractmethod
    def digests(self) -> SqlDigests:
        """Daily digests: taken (members and Message-ID decided once), renewed, ended."""

    @abc.abstractmethod
    def submitted_for(self, provider: str, action_ids: Sequence[str]) -> list[str]:
        """Jobs this provider holds for these actions (paused or closed: to withdraw)."""

    @abc.abstractmethod
    def submitted(self, provider: str, limit: int) -> list[str]:
        """Job ids of faxes this provider holds, longest waiting first (for polling)."""

    @abc.abstractmethod
    def revive(self, action_id: str, from_status: Status, now: dt.datetime, closed: bool = False) -> int:
        """Back to pending, if consent still allows (moved to the consent that replaced theirs if
        that allows their channel); ``closed``: only those cancelled while staff held it closed."""

    # reports: counted by the database (GROUP BY), read in pages, never loaded whole
    @abc.abstractmethod
    def action_counts(self) -> dict[str, dict[str, int]]:
        """Deliveries by action and status."""

    @abc.abstractmethod
    def sent_counts(self, action_id: str | None = None) -> list[SentCount]:
        """Letters sent per action × target × channel: the count reported to officials."""

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
