"""Outcomes of attempts, and claims handed back unattempted, committed in small groups.

The letters at risk of a second send after a crash are those in flight plus at most
``FLUSH_EVERY`` seconds of replies, and a second send carries the same Message-ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from dispatcher.models import AttemptResult, Retry
from dispatcher.store.roles import SenderStore
from dispatcher.store.thread import StoreThread

FLUSH_EVERY = 0.05  # seconds between commits of attempt results


@dataclass
class Tally:
    """Counts for progress lines."""

    counts: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        sent = self.counts["sent"]
        return (
            f"sent {sent} · retry {self.counts['retry']} · failed {self.counts['failed']}"
            f" · {sent / elapsed:.0f} letters/s"
        )


class ResultWriter:
    def __init__(
        self,
        store: SenderStore,
        db: StoreThread,
        worker_id: str,
        clock: Callable[[], dt.datetime],
        retry: Retry,  # for fax outcomes that outran their submission's commit
    ) -> None:
        self.store = store
        self.retry = retry
        self.db = db
        self.worker_id = worker_id
        self.clock = clock
        self.tally = Tally()
        self._results: list[AttemptResult] = []
        self._release: list[int] = []
        self._waiting = asyncio.Event()  # set when there is something to flush
        self._flushing = asyncio.Lock()  # one flush at a time: each commits what it took, once
        self.committed: Callable[[], None] = lambda: None  # told after each commit

    def add(self, result: AttemptResult) -> None:
        self._results.append(result)
        self.tally.counts[result.outcome.value] += 1
        self._waiting.set()

    def release(self, delivery_id: int) -> None:
        """A claim that was not attempted goes back to the queue, its attempt not counted."""
        self._release.append(delivery_id)
        self.tally.counts["handed back"] += 1
        self._waiting.set()

    def uncommitted(self) -> set[int]:
        """Deliveries whose outcome or hand-back is not yet committed: still leased to us."""
        return {r.delivery_id for r in self._results}.union(self._release)

    def pending(self) -> int:
        """Results and hand-backs not yet committed."""
        return len(self._results) + len(self._release)

    async def flush(self) -> None:
        """Commit what is here; it stays here until its commit succeeds (a failed commit, or one
        cut short, loses nothing: the letters the server accepted are not sent again)."""
        async with self._flushing:
            results, release = self._results[:], self._release[:]
            if results:
                await self.db(self.store.record, self.worker_id, results, self.retry)
                del self._results[: len(results)]  # only appended to meanwhile
            if release:
                await self.db(self.store.release, self.worker_id, release, self.clock())
                del self._release[: len(release)]
            if results or release:
                self.committed()

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every ``FLUSH_EVERY`` seconds while there is something to flush, until ``stop``
        (a stopping worker sets it once its senders are done, so what they finish meanwhile is
        committed at once); an idle dispatcher does not wake for it at all.

        Never cancel this task: a commit cut short may still land, and would be made twice.
        """
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                waiting = asyncio.create_task(self._waiting.wait())
                await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stopping), FLUSH_EVERY)  # gather a batch
                self._waiting.clear()
                await self.flush()
        finally:
            stopping.cancel()
