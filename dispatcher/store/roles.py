"""What each part of the dispatcher needs from the store, as Protocols (``Store`` has it all).

A signature that takes one of these says which calls it makes, and a fake for a test of it
needs only those: the planner (actions/planner.py) takes a PlannerStore; the feeder, the lease
keeper and the results writer (sending/) a SenderStore. ``SqlStore`` satisfies each (mypy
checks it: tests/store/test_roles.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from dispatcher.store import (
    ActionHold,
    ActionState,
    AttemptResult,
    Backlog,
    ClaimBatch,
    ClaimRequest,
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
from dispatcher.store.accounts import Accounts
from dispatcher.store.people import SqlPeople
from dispatcher.store.reports import SqlReports


class SenderStore(Protocol):
    """A sending worker: claims, leases kept or given back, outcomes, its heartbeat."""

    def claim(
        self, worker: str, request: ClaimRequest, now: dt.datetime, lease: dt.timedelta
    ) -> ClaimBatch: ...
    def renew(self, worker: str, delivery_ids: Sequence[int], until: dt.datetime) -> int: ...
    def release(self, worker: str, delivery_ids: Sequence[int], now: dt.datetime) -> int: ...
    def record(self, worker: str, results: Sequence[AttemptResult], retry: Retry) -> None: ...
    def recover(self, worker: str, now: dt.datetime, others: bool = True) -> int: ...
    def expire_leases_of(self, worker: str, now: dt.datetime) -> int: ...
    def next_due(self, groups: Sequence[GroupId], now: dt.datetime) -> dt.datetime | None: ...
    def backlog(self, now: dt.datetime) -> Backlog: ...
    def heartbeat(self, beat: WorkerBeat) -> None: ...


class PlannerStore(Protocol):
    """The planner: letters written from consents, and an action's waiting ones ended."""

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
    ) -> int: ...
    def finish_pending(
        self,
        action_id: str,
        status: Status,
        now: dt.datetime,
        *,
        deadline: dt.datetime,
        by_file: bool = False,
    ) -> int: ...


class WebStore(Protocol):
    """The web app: the dashboard's reads, staff's requeues, supporters' pages, the CRM API,
    webhooks and fax media."""

    def instance_secret(self) -> bytes: ...
    def action_states(self) -> dict[str, ActionState]: ...
    def action_holds(self, now: dt.datetime) -> list[ActionHold]: ...
    def queue_counts(self) -> list[QueueCount]: ...
    def fax_pages(self) -> list[tuple[str, str, int]]: ...
    def workers(self) -> list[WorkerBeat]: ...
    def requeue_failed(self, action_id: str, now: dt.datetime, delivery_id: int | None = None) -> int: ...
    def retry_now(self, action_id: str, now: dt.datetime) -> int: ...
    def import_supporters(self, records: Iterable[SupporterRecord], now: dt.datetime) -> int: ...
    def accept_webhook(
        self, provider: str, message: str, event: ProviderEvent | None, retry: Retry, now: dt.datetime
    ) -> Resolution | None: ...
    def media(self, reference: str) -> bytes | None: ...
    @property
    def accounts(self) -> Accounts: ...
    @property
    def reports(self) -> SqlReports: ...
    @property
    def people(self) -> SqlPeople: ...
