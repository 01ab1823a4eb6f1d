"""The running dispatcher: plan, claim, render, send, record, expire.

One asyncio loop does the sending and re-reads staff controls every second; store calls run on
one dedicated thread so a commit's fsync never stalls the SMTP connections. APScheduler drives the
periodic jobs: re-read action files and plan, expire deliveries past their deadline.

Results are committed in small groups: the letters at risk of a second send after a crash are
those in flight plus at most ``FLUSH_EVERY`` seconds of replies, and a second send carries the
same Message-ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from tenacity import RetryCallState, wait_exponential, wait_random

from dispatcher.channels import Channel, Envelope, SendError, Unavailable
from dispatcher.config import Action, ActionSet, Settings, load_actions
from dispatcher.pacing import Pacer
from dispatcher.planner import effective, plan_action, sendable, terminal_status
from dispatcher.render import Renderer, RenderError
from dispatcher.store import ActionState, AttemptResult, Claim, ClaimGroup, Outcome, Store

log = logging.getLogger("dispatcher")

T = TypeVar("T")
FLUSH_EVERY = 0.05  # seconds between commits of attempt results
REFRESH_EVERY = 1.0  # seconds between re-reads of staff controls


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        channels: dict[str, Channel],
        *,
        worker_id: str | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        progress: float | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.channels = channels
        self.worker_id = worker_id or default_worker_id()
        self.clock = clock
        self.renderer = Renderer(settings.templates_dir)
        self.pacer = Pacer(settings.rate_per_target, settings.burst_per_target, settings.rate_global)
        self.actions = ActionSet()
        self.states: dict[str, ActionState] = {}
        self.held: dict[str, list[RenderError]] = {}
        self.open: dict[str, tuple[Action, dt.datetime]] = {}
        self.tally = Tally()
        self.progress = progress
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._results: list[AttemptResult] = []
        self._release: list[int] = []
        # Claimed deliveries wait here for a sender; the next batch is claimed while this one
        # is still being sent, so the SMTP connections never idle on a database round trip.
        self._queue: asyncio.Queue[tuple[Claim, float] | None] = asyncio.Queue()
        self._busy = 0
        # A queued letter's lease is already running and nothing renews it, so the queue holds
        # only what the senders will start within a quarter of a lease at the rate they are
        # going (at least two rounds of senders, at most a batch); a claim made again when the
        # queue is half empty is then a batch, not a trickle.
        self._ahead = 2 * self._concurrency()
        self._window = (time.monotonic(), 0)  # start of the current second, letters finished in it
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._refreshed = 0.0
        self._backoff = wait_exponential(
            multiplier=settings.retry_initial, max=settings.retry_max
        ) + wait_random(0, settings.retry_initial)

    def _concurrency(self) -> int:
        # Two letters per SMTP connection keeps every connection busy while the next is built.
        return max(4, 2 * self.settings.smtp_pool)

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, partial(fn, *args, **kwargs))

    # configuration and state ---------------------------------------------------------------
    def reload_actions(self) -> None:
        """Re-read action files; an action whose letters cannot all render is held, whole."""
        loaded = load_actions(self.settings.actions_dir)
        for error in loaded.errors:
            log.error("action file: %s", error)
        today = self.clock().date()
        # Check with the renderer that will send: the current one caches templates and would
        # pass one that staff have since broken.
        renderer = Renderer(self.settings.templates_dir)
        held: dict[str, list[RenderError]] = {}
        for action in loaded.actions.values():
            problems = renderer.check(action, tuple(self.channels), today)
            if problems:
                held[action.id] = problems
                if action.id not in self.held:
                    for problem in problems:
                        log.error("holding %s, nothing will be sent: %s", action.id, problem)
        self.actions, self.held, self.renderer = loaded, held, renderer
        self._recompute()

    def _recompute(self) -> None:
        self.open = sendable(self.actions.actions, self.states, self.held, self.clock())

    async def refresh(self) -> None:
        self.states = await self.db(self.store.action_states)
        self._refreshed = time.monotonic()
        self._recompute()
        self._wake.set()

    async def sweep(self) -> None:
        """Pending deliveries of actions past their deadline expire; of closed ones, cancel."""
        now = self.clock()
        for action_id, action in self.actions.actions.items():
            final = terminal_status(effective(action, self.states.get(action_id), now))
            if final is not None:
                changed = await self.db(self.store.finish_pending, action_id, final, now)
                if changed:
                    log.info("%s: %d deliveries %s", action_id, changed, final.value)

    async def plan(self) -> int:
        self.reload_actions()
        await self.refresh()
        now = self.clock()
        total = 0
        for action, _deadline in list(self.open.values()):
            created = await self.db(
                plan_action, self.store, action, tuple(self.channels), now, self._plan_progress(action.id)
            )
            if created:
                log.info("%s: planned %d new deliveries", action.id, created)
            total += created
        self._wake.set()
        return total

    @staticmethod
    def _plan_progress(action_id: str) -> Callable[[int, int], None]:
        last = [time.monotonic()]

        def report(done: int, total: int) -> None:
            if time.monotonic() - last[0] >= 2.0:
                last[0] = time.monotonic()
                log.info("%s: planning, %d of %d consents read", action_id, done, total)

        return report

    # sending -------------------------------------------------------------------------------
    def _groups(self) -> list[tuple[ClaimGroup, tuple[str, ...]]]:
        """What to claim per action × target × channel, its tokens taken from the pacer now.

        Taking as we go matters: groups share buckets (the global one, a target copied on
        several targets' letters), and budgets computed side by side would each spend them.
        ``_claim`` gives back what the store did not hand out.
        """
        room = max(0, self._ahead - self._queue.qsize())
        groups: list[tuple[ClaimGroup, tuple[str, ...]]] = []
        for action, _deadline in self.open.values():
            for target_id, channel_name in action.delivery_pairs(self._up()):
                channel = self.channels[channel_name]
                keys = channel.pacing_keys(action, action.target(target_id))
                n = self.pacer.budget(keys, room)
                if n > 0:
                    self.pacer.take(keys, n)
                    room -= n
                    groups.append((ClaimGroup(action.id, target_id, channel_name, n), keys))
        return groups

    def _note_finished(self) -> None:
        """Count a finished letter; once a second, size the claim-ahead queue from the rate."""
        start, count = self._window
        now = time.monotonic()
        if now - start < 1.0:
            self._window = (start, count + 1)
            return
        rate = (count + 1) / (now - start)
        wanted = int(rate * self.settings.lease_seconds / 4)
        self._ahead = max(2 * self._concurrency(), min(self.settings.batch_size, wanted))
        self._window = (now, 0)

    def _up(self) -> tuple[str, ...]:
        return tuple(name for name, channel in self.channels.items() if channel.ready_in() <= 0)

    def _pacing_wait(self) -> float:
        waits = [
            self.pacer.wait(self.channels[ch].pacing_keys(action, action.target(t)))
            for action, _ in self.open.values()
            for t, ch in action.delivery_pairs(self._up())
        ]
        waits += [c.ready_in() for c in self.channels.values() if c.ready_in() > 0]
        return min(waits, default=1.0)

    async def _claim(self) -> list[Claim]:
        groups = self._groups()
        if not groups:
            return []
        lease = dt.timedelta(seconds=self.settings.lease_seconds)
        claims = await self.db(self.store.claim, self.worker_id, [g for g, _ in groups], self.clock(), lease)
        taken = Counter((c.action_id, c.target_id, c.channel) for c in claims)
        for group, keys in groups:
            unused = group.limit - taken[(group.action_id, group.target_id, group.channel)]
            if unused:
                self.pacer.give_back(keys, unused)
        return claims

    def _next_attempt(self, attempt: int, now: dt.datetime) -> dt.datetime:
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return now + dt.timedelta(seconds=self._backoff(state))

    def _transient(self, claim: Claim, result: Callable[..., AttemptResult], exc: SendError) -> AttemptResult:
        """A retry with backoff while attempts remain; otherwise (or if permanent) a failure."""
        finished = self.clock()
        if exc.transient and claim.attempt < self.settings.max_attempts:
            return result(
                finished_at=finished,
                outcome=Outcome.RETRY,
                code=exc.code,
                detail=exc.detail,
                next_attempt_at=self._next_attempt(claim.attempt, finished),
            )
        why = f"gave up after {claim.attempt} attempts: {exc.detail}" if exc.transient else exc.detail
        return result(finished_at=finished, outcome=Outcome.FAILED, code=exc.code, detail=why)

    async def _sender(self) -> None:
        while (item := await self._queue.get()) is not None:
            claim, claimed_at = item
            self._busy += 1
            try:
                if time.monotonic() - claimed_at > self.settings.lease_seconds / 2:
                    # Whatever held it up, half its lease is gone: starting now could outlive the
                    # lease and race another worker's claim. Hand it back, unattempted.
                    self._release.append(claim.delivery_id)
                    continue
                await self._send_one(claim)
            finally:
                self._busy -= 1
                self._note_finished()
                if self._queue.qsize() <= self._ahead // 2:
                    self._wake.set()

    async def _send_one(self, claim: Claim) -> None:
        opened = self.open.get(claim.action_id)
        now = self.clock()
        if opened is None or now >= opened[1]:
            # Paused, closed or past its deadline since the claim: not an attempt.
            self._release.append(claim.delivery_id)
            return
        action = opened[0]
        target = action.target(claim.target_id)
        channel = self.channels[claim.channel]
        language = self.renderer.language_for(action, target)
        result = partial(
            AttemptResult,
            delivery_id=claim.delivery_id,
            action_id=claim.action_id,
            target_id=claim.target_id,
            channel=claim.channel,
            started_at=now,
            language=language,
        )
        try:
            if language is None:
                raise RenderError(action.id, target.id, None, "no template for this target")
            letter = self.renderer.render(action, target, language, claim.signer, now.date())
            reply = await channel.send(Envelope(action, target, letter, claim.signer, claim.delivery_id, now))
        except RenderError as exc:
            outcome = result(finished_at=self.clock(), outcome=Outcome.FAILED, detail=f"render: {exc}")
        except Unavailable:
            self._release.append(claim.delivery_id)  # not attempted: the circuit is open
            return
        except SendError as exc:
            outcome = self._transient(claim, result, exc)
        except Exception as exc:
            # A bug or an unforeseen error in a channel must cost one attempt, not the loop.
            log.exception("delivery %d: unexpected error", claim.delivery_id)
            unexpected = SendError(f"{type(exc).__name__}: {exc}", transient=True)
            outcome = self._transient(claim, result, unexpected)
        else:
            outcome = result(
                finished_at=self.clock(), outcome=Outcome.SENT, code=reply.code, detail=reply.detail
            )
        self._results.append(outcome)
        self.tally.counts[outcome.outcome.value] += 1

    async def flush(self) -> None:
        results, self._results = self._results, []
        release, self._release = self._release, []
        if results:
            await self.db(self.store.record, self.worker_id, results)
        if release:
            await self.db(self.store.release, self.worker_id, release, self.clock())

    async def _until_stopped(self, seconds: float) -> bool:
        """Sleep, waking early on stop; True while the dispatcher is still running."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return not self._stop.is_set()

    async def _flusher(self) -> None:
        # Never cancelled: a flush cut short would drop results it had already taken.
        while await self._until_stopped(FLUSH_EVERY):
            await self.flush()

    async def _report(self, every: float) -> None:
        last = ""
        while await self._until_stopped(every):
            line = self.tally.line()
            if line.split(" · ")[:3] != last.split(" · ")[:3]:  # only when the counts moved
                log.info("progress: %s", line)
                last = line

    async def _idle_wait(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _nothing_due(self) -> bool:
        """Nothing more to send now on the channels that are up (``--once`` may end)."""
        up = self._up()
        for name in set(self.channels) - set(up):
            log.warning("%s channel unavailable; its letters stay queued for a later run", name)
        due = await self.db(self.store.next_due, list(self.open), up)
        return due is None or due > self.clock()

    async def send_loop(self, *, once: bool) -> None:
        senders = [asyncio.create_task(self._sender()) for _ in range(self._concurrency())]
        try:
            while not self._stop.is_set():
                # Staff controls and deadlines reach the loop within a second, whatever else runs.
                if time.monotonic() - self._refreshed >= REFRESH_EVERY:
                    await self.refresh()
                else:
                    self._recompute()
                full = self._queue.qsize() > self._ahead // 2
                if not full:
                    claims = await self._claim()
                    claimed_at = time.monotonic()
                    for claim in claims:
                        self._queue.put_nowait((claim, claimed_at))
                    if claims:
                        continue
                    if once and self._queue.empty() and not self._busy and await self._nothing_due():
                        return
                await self._idle_wait(1.0 if full else min(1.0, max(0.005, self._pacing_wait())))
        finally:
            # Claimed but never attempted: hand them back for this or another worker.
            while not self._queue.empty():
                left = self._queue.get_nowait()
                if left is not None:
                    self._release.append(left[0].delivery_id)
            for _ in senders:
                self._queue.put_nowait(None)
            await asyncio.wait(senders, timeout=self.settings.smtp_timeout + 5)

    # lifecycle -----------------------------------------------------------------------------
    async def _start(self) -> list[asyncio.Task[None]]:
        for channel in self.channels.values():
            await channel.start()
        released = await self.db(self.store.expire_leases_of, self.worker_id, self.clock())
        if released:
            log.warning(
                "%d deliveries were in flight when %s last stopped; resending them", released, self.worker_id
            )
        tasks = [asyncio.create_task(self._flusher())]
        if self.progress:
            tasks.append(asyncio.create_task(self._report(self.progress)))
        return tasks

    async def _finish(self, tasks: list[asyncio.Task[None]]) -> None:
        self._stop.set()
        await asyncio.gather(*tasks)
        await self.flush()
        for channel in self.channels.values():
            await channel.close()
        self._db.shutdown(wait=True)

    async def run_once(self) -> Tally:
        """Plan, send everything due now, expire what is past its deadline; then return."""
        tasks = await self._start()
        try:
            await self.sweep()
            await self.plan()
            await self.send_loop(once=True)
            await self.flush()
            await self.sweep()
        finally:
            await self._finish(tasks)
        return self.tally

    async def run_forever(self) -> Tally:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        tasks = await self._start()
        scheduler = AsyncIOScheduler(timezone=dt.UTC)
        now = self.clock()
        scheduler.add_job(
            self.plan,
            "interval",
            seconds=self.settings.plan_interval,
            next_run_time=now,
            id="plan",
            max_instances=1,
            coalesce=True,
        )
        scheduler.add_job(
            self.sweep, "interval", seconds=10, next_run_time=now, id="sweep", max_instances=1, coalesce=True
        )
        scheduler.start()
        log.info("dispatcher %s running; %s", self.worker_id, ", ".join(self.channels))
        try:
            await self.plan()
            await self.send_loop(once=False)
        finally:
            scheduler.shutdown(wait=False)
            await self._finish(tasks)
            log.info("dispatcher %s stopped: %s", self.worker_id, self.tally.line())
        return self.tally

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
