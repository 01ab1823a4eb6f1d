"""Faxes in the providers' hands: asked about, withdrawn when their action stops, forgotten.

Webhooks bring most outcomes; polling catches the ones that never arrive. A fax whose action
was paused or closed is withdrawn if the provider has not started dialling it (it goes back to
the queue, to be cancelled with the others if the action was closed); one already on the line
is left to finish, and logged.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from dispatcher.channels import Channel
from dispatcher.models import ProviderEvent, Resolution, Retry
from dispatcher.providers.media import MEDIA_TTL
from dispatcher.store import Store
from dispatcher.store.failures import Failure
from dispatcher.store.thread import StoreThread

log = logging.getLogger("dispatcher.fax")

POLL_BATCH = 200  # jobs asked about per channel and poll
PRUNE_EVERY = 3600.0  # seconds between prunes of old media and webhook records
KEEP = 3 * MEDIA_TTL  # a replay is refused for this long after its original
# Seconds between questions to a provider this worker knows no job at: jobs another worker
# handed over and then left behind (webhooks bring most outcomes anyway).
IDLE_POLL = 15.0


class ProviderJobs:
    def __init__(
        self,
        store: Store,
        db: StoreThread,
        channels: Mapping[str, Channel],
        retry: Retry,
        worker_id: str,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.store = store
        self.db = db
        self.channels = {n: c for n, c in channels.items() if c.provider is not None}
        self.retry = retry
        self.worker_id = worker_id
        self.clock = clock
        self._polled: dict[str, float] = {}
        self._asked: set[tuple[str, str]] = set()  # (provider, job) already asked to cancel
        self._pruned = 0.0
        self._expecting: set[str] = set(self.channels)  # channels that may have jobs out
        self._commits = 0  # outcomes committed so far (a poll's "none" is older than a newer one)

    async def poll(self, only_due: bool = False) -> int:
        """Ask the providers what became of their jobs; apply what they say.

        In the send loop (``only_due``) each channel is asked as often as it says while it has
        jobs out (a fax line stays busy until its job is resolved, so the loop cannot wait for a
        slower timer), and every ``IDLE_POLL`` seconds when it had none.
        """
        resolved = 0
        now = time.monotonic()
        for name, channel in self.channels.items():
            since = now - self._polled.get(name, 0.0)
            pace = channel.poll_every if name in self._expecting else IDLE_POLL
            if only_due and since < pace:
                continue
            self._polled[name] = now
            assert channel.provider is not None
            commits = self._commits
            jobs = await self.db(self.store.submitted, channel.provider, POLL_BATCH)
            if not jobs and commits == self._commits:
                self._expecting.discard(name)
            for event in await channel.poll(jobs):
                resolved += await self._apply(event, f"poll:{self.worker_id}")
        return resolved

    def expect(self) -> None:
        """Outcomes were committed, submissions among them maybe: ask at each channel's pace."""
        self._expecting = set(self.channels)
        self._commits += 1

    async def withdraw(self, stopped: Iterable[str]) -> int:
        """Cancel the jobs of actions that were paused or closed, where the provider still can."""
        action_ids = list(stopped)
        if not action_ids:
            return 0
        withdrawn = 0
        for channel in self.channels.values():
            assert channel.provider is not None
            for job in await self.db(self.store.submitted_for, channel.provider, action_ids):
                if (channel.provider, job) in self._asked:
                    continue
                self._asked.add((channel.provider, job))
                if not await channel.cancel(job):
                    log.info("%s job %s is already on the line: left to finish", channel.provider, job)
                    continue
                event = ProviderEvent(
                    channel.provider,
                    job,
                    False,
                    self.clock(),
                    "withdrawn: its action stopped",
                    Failure.CANCELLED,
                )
                withdrawn += await self._apply(event, f"cancel:{self.worker_id}")
        if withdrawn:
            log.info("%d queued faxes withdrawn from their providers", withdrawn)
        return withdrawn

    async def prune(self) -> None:
        if time.monotonic() - self._pruned < PRUNE_EVERY:
            return
        self._pruned = time.monotonic()
        await self.db(self.store.prune_fax_records, self.clock() - KEEP)

    async def _apply(self, event: ProviderEvent, by: str) -> bool:
        return await self.db(self.store.resolve, event, by, self.retry) is Resolution.APPLIED
