"""Leases kept alive while their attempts run, and until their outcomes are committed.

A lease says how long other workers (and this one's own recovery) leave a claimed letter alone.
An attempt may outlast it (a slow server: every command may take up to the SMTP timeout, and a
letter with copies sends several), and a letter taken back mid-attempt is sent twice. So while
an attempt runs its lease is renewed, every quarter lease (at most every few seconds): only a
worker that stopped running, killed or frozen, loses its letters to the others. A letter sent
whose outcome waits for the store (an outage) stays leased the same way: taken back, it would
be sent again by whoever claims it next.

Renewals run on a thread of their own, not the store thread: they never wait behind a claim, a
planning round or a retention sweep, whose length has nothing to do with the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Collection, Iterator

from dispatcher.store.roles import SenderStore

log = logging.getLogger("dispatcher")

RENEW_AT_MOST_EVERY = 5.0  # seconds: a long lease is renewed well before it runs out all the same


class LeaseKeeper:
    def __init__(
        self,
        store: SenderStore,
        worker_id: str,
        lease: dt.timedelta,
        clock: Callable[[], dt.datetime],
        uncommitted: Callable[[], Collection[int]] = frozenset,
    ) -> None:
        self.store = store
        self.uncommitted = uncommitted  # letters attempted whose outcome is not yet in the store
        self.worker_id = worker_id
        self.lease = lease
        self.clock = clock
        self.every = min(lease.total_seconds() / 4, RENEW_AT_MOST_EVERY)
        self._running: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._failing = False  # the last renewal failed: warned once, until one succeeds

    @contextlib.contextmanager
    def attempt(self, delivery_id: int) -> Iterator[None]:
        """The lease of ``delivery_id`` is renewed for as long as this block runs."""
        self._running.add(delivery_id)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._renew_while_running())
        try:
            yield
        finally:
            self._running.discard(delivery_id)

    async def _renew_while_running(self) -> None:
        # One UPDATE per round for all letters held, not one per letter.
        while True:
            await asyncio.sleep(self.every)
            ids = sorted(self._running.union(self.uncommitted()))
            if not ids:
                return
            try:
                await asyncio.to_thread(self.store.renew, self.worker_id, ids, self.clock() + self.lease)
            except Exception as exc:  # the next round tries again; the attempts go on regardless
                if not self._failing:
                    why = type(exc).__name__
                    log.warning("could not renew the leases of %d letters held: %s; retrying", len(ids), why)
                self._failing = True
                continue
            if self._failing:
                log.info("leases of %d letters held renewed again", len(ids))
            self._failing = False
