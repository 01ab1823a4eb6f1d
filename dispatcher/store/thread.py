"""Store calls from asyncio code, on one dedicated thread, waiting out store outages.

A commit's fsync never stalls the event loop that drives the SMTP connections, and one thread
keeps the store's calls in the order they were made.

A call that fails with a curable error (``faults.curable``: a restart, a dropped connection, a full
disk) is tried again after 1 s, doubling to 30 s, until the store answers: the worker keeps what
it holds in memory and resumes by itself. Any call that answers (one that failed, or a new one)
wakes every waiting call at once. The outage is logged once when it starts, with its
cause, and once when it ends. Other errors pass through at once. Once ``stop`` is called, a call
still failing gives up after the stop's grace with ``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from dispatcher.store.faults import StoreUnavailable, cause, curable

T = TypeVar("T")
log = logging.getLogger("dispatcher")

FIRST_WAIT = 1.0  # seconds before the first retry of a store call
MAX_WAIT = 30.0  # the ceiling of the doubling


class Outage:
    """Whether the store answers, as this worker last saw it; logs each change once.

    An outage lasts while any call is still being retried: on a full disk reads succeed while
    writes fail, and that is one outage, not one per read."""

    def __init__(self) -> None:
        self.since: float | None = None  # time.monotonic() of the first failure
        self.ended: float | None = None  # time.monotonic() the last outage ended
        self.cause = ""
        self._failing = 0  # calls now waiting to try again
        # Set when an outage ends: the heartbeat goes out at once, not up to a beat period later,
        # so that other workers do not read this worker's silence after the outage as death.
        self.back = asyncio.Event()

    def failed(self, exc: BaseException, first: bool) -> None:
        self._failing += first
        if self.since is None:
            self.since, self.cause = time.monotonic(), cause(exc)
            log.error(
                "store unreachable (%s); waiting and retrying every %g-%g s, keeping results in memory",
                self.cause,
                FIRST_WAIT,
                MAX_WAIT,
            )

    def over(self, answered: bool) -> None:
        """A call that had failed has answered, or given up."""
        self._failing -= 1
        if answered:
            self.answered()

    def answered(self) -> None:
        """A call answered: the outage ends once no call is waiting any more."""
        if self._failing == 0 and self.since is not None:
            log.warning("store answers again after %.1f s; resuming", time.monotonic() - self.since)
            self.since, self.ended = None, time.monotonic()
            self.back.set()

    def within(self, seconds: float) -> bool:
        """The store is away, or came back less than ``seconds`` ago."""
        return self.since is not None or (self.ended is not None and time.monotonic() - self.ended < seconds)


class StoreThread:
    def __init__(self, first_wait: float = FIRST_WAIT, max_wait: float = MAX_WAIT) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self.outage = Outage()
        self.first_wait, self.max_wait = first_wait, max_wait
        self._give_up_at: float | None = None  # monotonic; set by ``stop``
        self._stopping: asyncio.Event | None = None
        self._answered: asyncio.Event | None = None  # set, and replaced, when a failed call answers

    async def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        wait, tries, answered = self.first_wait, 0, False
        try:
            while True:
                try:
                    result = await loop.run_in_executor(self._pool, partial(fn, *args, **kwargs))
                except Exception as exc:
                    if not curable(exc):
                        answered = True  # with an error, but the store answered
                        raise
                    tries += 1
                    self.outage.failed(exc, first=tries == 1)
                    await self._pause(wait, exc)
                    wait = min(wait * 2, self.max_wait)
                    continue
                answered = True
                return result
        finally:
            # However the call ends (answered, an incurable error, cancelled), it no longer waits:
            # otherwise the outage would never end, and the next one would go unlogged.
            if tries:
                self.outage.over(answered)
            elif answered:
                self.outage.answered()  # the last waiting call was given up or cancelled
            if answered:
                # Any call that answers, even one that never failed: the store is back, and calls
                # pausing out their backoff try now; the outage ends once they answer too.
                self._wake_paused()

    def _wake_paused(self) -> None:
        """The store answers again: every call still pausing tries at once, not after its own
        backoff (results waiting for a commit would otherwise land up to MAX_WAIT later)."""
        if self._answered is not None:
            self._answered.set()
            self._answered = None

    async def _pause(self, seconds: float, exc: Exception) -> None:
        """Sleep before the next try; cut short by ``stop``, then give up once its grace is spent."""
        if self._give_up_at is not None:
            left = self._give_up_at - time.monotonic()
            if left <= 0:
                raise StoreUnavailable(f"store unreachable ({cause(exc)})") from exc
            # Within a second: a later ``stop`` may bring the moment to give up forward.
            await asyncio.sleep(min(seconds, left, 1.0))
            return
        if self._stopping is None:
            self._stopping = asyncio.Event()
        if self._answered is None:
            self._answered = asyncio.Event()
        waits = {asyncio.ensure_future(self._stopping.wait()), asyncio.ensure_future(self._answered.wait())}
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    def stop(self, grace: float) -> None:
        """Calls still failing ``grace`` seconds from now give up instead of waiting on; a later
        call sets that moment again (a stopping worker's final commit gets its own grace)."""
        self._give_up_at = time.monotonic() + grace
        if self._stopping is not None:
            self._stopping.set()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
