"""The running dispatcher: the parts wired together, and their lifecycle.

- ``Catalogue``: which actions may send now (files, template checks, staff controls);
- ``Feeder``: claims letters from the store, fairly and as the shared pacing allows;
- ``Sender``: renders and sends one letter through its channel;
- ``ResultWriter``: commits outcomes in small groups.

One asyncio loop does the sending and re-reads staff controls every second; store calls run on
one dedicated thread. APScheduler drives the periodic jobs: re-read action files and plan,
expire deliveries past their deadline.
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
from collections.abc import Callable
from dataclasses import replace

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from dispatcher.actions.planner import finish_action, plan_action
from dispatcher.channels import Channel
from dispatcher.models import ALIVE, Backlog, GroupId, WorkerBeat
from dispatcher.pacing import Limits
from dispatcher.people import tokens
from dispatcher.people.receipts import EVERY as RECEIPTS_EVERY
from dispatcher.people.receipts import ReceiptsJob
from dispatcher.people.retention import EVERY as RETENTION_EVERY
from dispatcher.people.retention import RetentionJob
from dispatcher.sending.backoff import fax_backoff
from dispatcher.sending.catalogue import Catalogue
from dispatcher.sending.digest import DigestJob
from dispatcher.sending.faxjobs import ProviderJobs
from dispatcher.sending.feeder import IDLE_RECHECK, Feeder, Queued
from dispatcher.sending.results import ResultWriter, Tally
from dispatcher.sending.sender import Sender
from dispatcher.settings import Settings
from dispatcher.store import Store
from dispatcher.store.faults import cause
from dispatcher.store.people import LAPSE_LOOKBACK
from dispatcher.store.thread import StoreThread

log = logging.getLogger("dispatcher")

REFRESH_EVERY = 1.0  # seconds between re-reads of staff controls
RECOVER_EVERY = 5.0  # seconds between looks for leases that ran out (a quarter lease if shorter)
# Seconds between counts of the pending letters the spread divides (and at once after a plan):
# a count between them changes a pace spread over days by a hair.
COUNT_EVERY = 30.0
BEAT_EVERY = 5.0  # seconds between heartbeats (the dashboard's list of workers)
STOP_GRACE = 5.0  # seconds a stopping worker still tries to commit what it holds to a store that is down
FINISH_SLACK = 5.0  # seconds beyond the longest attempt in flight: rendering, handing the result over
# The longest a stopping worker waits for letters in flight: with STOP_GRACE for the final commit it
# stays below the README unit's TimeoutStopSec=180, so systemd never kills a worker mid-commit.
STOP_WAIT_MAX = 160.0
# A withdrawn consent stops letters already claimed: longer than any claim waits in a queue.
REVOKED_WINDOW = dt.timedelta(minutes=10)

__all__ = ["Dispatcher", "Tally", "utcnow"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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
        self.progress = progress
        self.db = StoreThread()
        self.catalogue = Catalogue(settings, tuple(channels), clock)
        fax_retry = fax_backoff(settings).after
        self.results = ResultWriter(store, self.db, self.worker_id, clock, fax_retry)
        self.jobs = ProviderJobs(store, self.db, channels, fax_retry, self.worker_id, clock)
        limits = Limits(settings.rate_per_target, settings.burst_per_target, settings.rate_global)
        lease = dt.timedelta(seconds=settings.lease_seconds)
        self.feeder = Feeder(
            store, self.db, self.worker_id, channels, limits, lease, settings.batch_size, clock
        )
        self.sender = Sender(settings, self.catalogue, channels, self.results, clock)
        self.results.committed = self._committed
        self.digests = DigestJob(settings, store, self.db, self.sender)
        self._busy = 0
        self._swept: dt.datetime | None = None  # this worker's last consent sweep
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        # Set once the senders are done: until then results are committed and beats go on.
        self._drained = asyncio.Event()
        self._hurry = asyncio.Event()  # a second signal: stop without waiting for attempts
        self._signals = 0
        self._in_flight: dict[int, float] = {}  # delivery id -> the longest its attempt can take
        self._refreshed = 0.0
        self._recovered = 0.0
        self._counted: float | None = None  # time.monotonic() of the last pending count
        self._pending: dict[GroupId, int] = {}
        self._holds_said: dict[str, tuple[str, str, str]] | None = None
        self._holds_written = clock()  # when they were written
        self._started = clock()
        self._up_since = time.monotonic()
        self.left = Backlog(0, 0, None)  # what ``run_once`` left pending
        self._failure: BaseException | None = None  # what ended a background task

    @property
    def tally(self) -> Tally:
        return self.results.tally

    # state and planning --------------------------------------------------------------------
    async def refresh(self) -> None:
        """Staff controls and deadlines; leases that ran out elsewhere go back to the queue."""
        now = self.clock()
        # After a store outage every worker's leases may have run out while it kept sending: give
        # them one lease period to commit and renew what they hold before taking anything back.
        if not self.db.outage.within(self.settings.lease_seconds):
            await self._recover(now)
        self.catalogue.set_states(await self.db(self.store.action_states))
        await self._pace()
        await self.publish_holds()
        # Only a letter in hand can be stopped by a withdrawal: a claim already skips revoked
        # consents, so an idle worker need not read them.
        if self.feeder.held() or self._busy:
            self.sender.revoked = await self.db(self.store.people.revoked_since, now - REVOKED_WINDOW)
        self.feeder.settle()
        self._refreshed = time.monotonic()
        self._wake.set()

    async def _pace(self) -> None:
        """The groups' spread paces, from a fresh count of their pending letters every
        COUNT_EVERY (one store query for all of them), and whenever a deadline moved."""
        fresh = self._counted is None or time.monotonic() - self._counted >= COUNT_EVERY
        if fresh:
            self._pending = await self.db(self.store.pending_counts)
            self._counted = time.monotonic()
        self.catalogue.pace(self._pending, fresh)

    def _refresh_due(self) -> bool:
        """Staff controls and deadlines reach the loop within a second while it sends or is about
        to claim; a worker quiet until its next letter is due (feeder.quiet) reads them every
        IDLE_RECHECK only, and again before it claims: each read costs an idle process CPU."""
        since = time.monotonic() - self._refreshed
        if since < REFRESH_EVERY:
            return False
        return since >= IDLE_RECHECK or not self.feeder.quiet() or bool(self._busy or self.feeder.held())

    async def _recover(self, now: dt.datetime) -> None:
        """Leases that ran out go back to the queue: looked for a few times per lease period,
        not at every refresh (an idle worker would write every second for nothing)."""
        if time.monotonic() - self._recovered < min(RECOVER_EVERY, self.settings.lease_seconds / 4):
            return
        self._recovered = time.monotonic()
        recovered = await self.db(self.store.recover, self.worker_id, now, self._up_long_enough())
        if recovered:
            log.warning("%d deliveries whose lease ran out mid-attempt are queued again", recovered)
            self.feeder.stir()

    def _committed(self) -> None:
        """Outcomes were written: a retry or a hand-back may be due soon, a fax may be at its
        provider."""
        self.feeder.stir()
        self.jobs.expect()

    def _up_long_enough(self) -> bool:
        """Whether another worker's silence means it is gone. After an outage a live worker's
        first beat can come up to a beat period after the store answers; a worker started in that
        window has no outage on record and would take its leases while it still sends them."""
        return time.monotonic() - self._up_since >= ALIVE.total_seconds() + BEAT_EVERY

    async def publish_holds(self) -> None:
        """Put what this worker holds where the dashboard and ``dispatcher actions`` read it."""
        if not self.catalogue.reloaded:  # nothing checked yet: keep what the store says
            return
        holds = self.catalogue.holds(self.worker_id, self.clock())
        said = {a: (h.kind, h.reason, h.templates) for a, h in holds.items()}
        if said != self._holds_said:
            written = self.clock()
            await self.db(self.store.set_holds, self.worker_id, holds)
            self._holds_said, self._holds_written = said, written

    async def beat(self, stopped: bool = False) -> None:
        """Tell the store (and so the dashboard) this dispatcher is alive, and what it holds.

        On a thread of its own, not the store thread, as lease renewals are: a long planning
        round or retention sweep there must not make a running worker look gone."""
        now = self.clock()
        held, sent = self.feeder.held() + self._busy, self.tally.counts["sent"]
        beat = WorkerBeat(self.worker_id, self._started, now, held, sent, now if stopped else None)
        await asyncio.to_thread(self.store.heartbeat, beat)

    async def _beat_until_drained(self) -> None:
        back = self.db.outage.back
        while not self._drained.is_set():
            back.clear()
            try:
                await self.beat()
            except Exception as exc:  # the store is away: the store thread logs the outage
                log.debug("heartbeat not written: %s", cause(exc))
            await self._beat_pause(back)

    async def _beat_pause(self, back: asyncio.Event) -> None:
        """BEAT_EVERY, cut short when the worker drains or an outage ends (beat at once then)."""
        waits = {asyncio.ensure_future(self._drained.wait()), asyncio.ensure_future(back.wait())}
        try:
            await asyncio.wait(waits, timeout=BEAT_EVERY, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def sweep(self) -> None:
        """Pending deliveries of actions past their deadline expire; of closed ones, cancel.
        Faxes still queued at their provider for a paused or closed action are withdrawn."""
        await self.jobs.withdraw(self.catalogue.stopped())
        await self.jobs.prune()
        now = self.clock()
        since = self._swept - LAPSE_LOOKBACK if self._swept else None
        lapsed = await self.db(self.store.people.lapse, now, since)
        self._swept = now
        if lapsed:
            log.info("%d letters cancelled: the consent they relied on ended or expired", lapsed)
        # Opt-in forms whose link has expired: nothing of a person waits longer than that.
        await self.db(self.store.people.prune_opt_ins, self.clock() - tokens.MAX_AGE[tokens.CONFIRM])
        for action_id, final in list(self.catalogue.finished()):
            action = self.catalogue.loaded.actions[action_id]
            changed = await self.db(finish_action, self.store, action, final, self.clock())
            if changed:
                log.info("%s: %d deliveries %s", action_id, changed, final.value)

    async def take_holds(self) -> None:
        """Adopt what other workers hold while sending; forget what staff released of ours (by
        the release times, not by our rows: those may be missing for other reasons) and write
        our holds again once checked again."""
        releases = await self.db(self.store.hold_releases)
        stored = await self.db(self.store.action_holds, self.clock())
        self.catalogue.release(releases)
        said = self._holds_said or {}
        if any(at >= self._holds_written for a, at in releases.items() if a in said):
            self._holds_said = None
        self.catalogue.adopt(stored)

    async def plan(self) -> int:
        await self.take_holds()
        self.catalogue.reload()
        await self.refresh()
        total = 0
        renderer = self.catalogue.renderer
        for action, _deadline in list(self.catalogue.open.values()):
            written_in = {t.id: lang for t in action.targets if (lang := renderer.language_for(action, t))}
            channels, progress = tuple(self.channels), _plan_progress(action.id)
            created = await self.db(
                plan_action, self.store, action, channels, self.clock(), progress, written_in
            )
            if created:
                log.info("%s: planned %d new deliveries", action.id, created)
            total += created
        if total:
            self._counted = None  # late joiners raise their targets' pace now
            await self._pace()
            self.feeder.stir()
        self._wake.set()
        return total

    # sending -------------------------------------------------------------------------------
    def _up(self) -> tuple[str, ...]:
        return tuple(name for name, channel in self.channels.items() if channel.ready_in() <= 0)

    async def _sender(self, name: str) -> None:
        queue = self.feeder.queues[name]
        while (item := await queue.items.get()) is not None:
            self._busy += 1
            try:
                self._in_flight[item.claim.delivery_id] = self._longest(item)
                await self.sender.send(item)
            finally:
                self._busy -= 1
                self._in_flight.pop(item.claim.delivery_id, None)
                queue.finished_one()
                if queue.room():
                    self._wake.set()

    def _longest(self, item: Queued) -> float:
        claim = item.claim
        opened = self.catalogue.open.get(claim.action_id)
        targets = {t.id: t for t in opened[0].targets} if opened else {}
        if opened is None or claim.target_id not in targets:  # not attempted: handed back
            return 0.0
        return self.channels[claim.channel].longest_attempt(opened[0], targets[claim.target_id])

    async def _let_finish(self, senders: list[asyncio.Task[None]]) -> None:
        """Stop starting letters and wait for those under way, as long as the longest of them
        can take, so that what a server accepted is recorded rather than sent again; a second
        signal cuts the wait short."""
        for channel in self.channels.values():
            channel.drain()
        if not senders:
            return
        limit = self._wait_limit()
        if self._in_flight and not self._hurry.is_set():
            log.info("waiting up to %.0f s for %d letters in flight", limit, len(self._in_flight))
        finished = asyncio.ensure_future(asyncio.wait(senders))
        hurry = asyncio.ensure_future(self._hurry.wait())
        await asyncio.wait({finished, hurry}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finished.cancel()
        hurry.cancel()
        cut = len(self._in_flight)
        if cut:
            log.warning(
                "stopping now: %d letter%s still in flight cut off; sent again, with the same "
                "Message-ID, once the lease runs out or worker %s starts again",
                cut,
                "" if cut == 1 else "s",
                self.worker_id,
            )
        for sender in senders:
            sender.cancel()
        await asyncio.gather(*senders, return_exceptions=True)

    def _wait_limit(self) -> float:
        return min(max(self._in_flight.values(), default=0.0) + FINISH_SLACK, STOP_WAIT_MAX)

    async def _done(self) -> bool:
        """``--once`` may end: nothing in hand, and nothing due now on the channels that are up."""
        if not self.feeder.empty() or self._busy:
            return False
        # A letter handed back but not yet committed still looks leased: commit first.
        await self.results.flush()
        up = self._up()
        for name in set(self.channels) - set(up):
            log.warning("%s channel unavailable; its letters stay queued for a later run", name)
        groups = self.feeder.uncapped(g.ident for g in self.catalogue.groups(up, self.channels))
        now = self.clock()
        due = await self.db(self.store.next_due, groups, now)
        return due is None or due > now

    async def _idle_wait(self) -> None:
        wait = 1.0 if self.feeder.full() else min(1.0, max(0.005, self.feeder.wait or 1.0))
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), wait)

    async def send_loop(self, *, once: bool) -> None:
        senders = [
            asyncio.create_task(self._sender(name))
            for name, channel in self.channels.items()
            for _ in range(channel.concurrency)
        ]
        try:
            while not self._stop.is_set():
                if self._refresh_due():
                    await self.jobs.poll(only_due=True)
                    await self.refresh()
                else:
                    self.catalogue.tick()
                await self.digests.tick(self._up())
                groups = self.catalogue.groups(self._up(), self.channels)
                if await self.feeder.fill(groups):
                    continue
                if once and await self._done():
                    return
                await self._idle_wait()
            if self._failure is not None:
                raise self._failure
        finally:
            # Claimed but never attempted: hand them back for this or another worker.
            for delivery_id in self.feeder.drain():
                self.results.release(delivery_id)
            for name, channel in self.channels.items():
                for _ in range(channel.concurrency):
                    self.feeder.queues[name].items.put_nowait(None)
            await self._let_finish(senders)

    # lifecycle -----------------------------------------------------------------------------
    async def _start(self) -> list[asyncio.Task[None]]:
        for channel in self.channels.values():
            await channel.start()
        released = await self.db(self.store.expire_leases_of, self.worker_id, self.clock())
        if released:
            log.warning(
                "%d deliveries were in flight when %s last stopped; resending them", released, self.worker_id
            )
        tasks = [asyncio.create_task(self.results.run(self._drained))]
        tasks[0].add_done_callback(self._ended)
        tasks.append(asyncio.create_task(self._beat_until_drained()))
        if self.progress:
            tasks.append(asyncio.create_task(self._report(self.progress)))
        return tasks

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A background task failed (a store error retrying cannot cure): the worker stops.

        Once stopping, a store given up on is not the run's error: the final commit tries again
        and logs what it could not record."""
        if self._stop.is_set():
            return
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()
            self.stop()

    async def _report(self, every: float) -> None:
        last = ""
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), every)
            line = self.tally.line()
            if line.split(" · ")[:3] != last.split(" · ")[:3]:  # only when the counts moved
                log.info("progress: %s", line)
                last = line

    async def _finish(self, tasks: list[asyncio.Task[None]]) -> None:
        """Commit what is held and say goodbye; a store that still fails is logged, never raised,
        so the error that ended the run is the one reported."""
        self.stop()
        self._drained.set()
        # The final commit's grace starts now, not at the signal: the wait may have outlasted it.
        self.db.stop(STOP_GRACE)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.results.flush()
            await self.publish_holds()
            await self.beat(stopped=True)
        except Exception as exc:  # cleanup: report, and let the first error (if any) through
            log.error(
                "stopping without the store (%s): %d outcomes not recorded; those letters are "
                "sent again, with the same Message-ID, once their lease runs out",
                cause(exc),
                self.results.pending(),
            )
        finally:
            for channel in self.channels.values():
                await channel.close()
            self.db.shutdown()

    async def run_once(self) -> Tally:
        """Plan, send everything due now (at the paced rate), expire what is past its deadline.

        It does not wait for retries due later: they stay pending for the next run, and
        ``left`` says how many there are and when the first is due.
        """
        tasks = await self._start()
        try:
            await self.sweep()
            await self.plan()
            await self.send_loop(once=True)
            await self.results.flush()
            await self.jobs.poll()
            await self.sweep()
            left = await self.db(self.store.backlog, self.clock())
            self.left = replace(left, opens=self.catalogue.opens)
        finally:
            await self._finish(tasks)
        return self.tally

    async def run_forever(self) -> Tally:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._signalled)
        tasks = await self._start()
        scheduler = AsyncIOScheduler(timezone=dt.UTC)
        now = self.clock()
        every = {"max_instances": 1, "coalesce": True, "next_run_time": now}
        scheduler.add_job(self.plan, "interval", seconds=self.settings.plan_interval, id="plan", **every)
        scheduler.add_job(self.sweep, "interval", seconds=10, id="sweep", **every)
        # Receipts and retention start a minute in, once the first plan has read the action files.
        later = {"max_instances": 1, "coalesce": True, "next_run_time": now + dt.timedelta(minutes=1)}
        actions = lambda: self.catalogue.loaded.actions  # noqa: E731
        receipts = ReceiptsJob(self.settings, self.store, self.db, self.worker_id, self.clock, actions)
        retention = RetentionJob(self.settings, self.store, self.db, self.clock, actions)
        scheduler.add_job(receipts.run, "interval", seconds=RECEIPTS_EVERY, id="receipts", **later)
        scheduler.add_job(retention.run, "interval", seconds=RETENTION_EVERY, id="retention", **later)
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

    def _signalled(self) -> None:
        self._signals += 1
        if self._signals > 1:
            self._hurry.set()
        self.stop()

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        # A store call failing meanwhile keeps trying while letters in flight may finish (their
        # results are committed as they come); the final commit then gets its own grace.
        self.db.stop(self._wait_limit() if self._in_flight else 0.0)


def _plan_progress(action_id: str) -> Callable[[int, int], None]:
    last = [time.monotonic()]

    def report(done: int, total: int) -> None:
        if time.monotonic() - last[0] >= 2.0:
            last[0] = time.monotonic()
            log.info("%s: planning, %d of %d consents read", action_id, done, total)

    return report
