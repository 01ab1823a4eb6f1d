"""The claim feeder: leases letters from the store for the senders, a little ahead of them.

Each round is one claim in the store (see ``Store.claim``): capacity goes only to groups with
letters due, shared round-robin, as the deployment's pacing buckets allow. A group that came back
with fewer letters than asked is dry and is not asked again until the next refresh. A round looks
at only as many groups as it may claim letters (``store.claims.window``): the next round starts
where it stopped, so with hundreds of groups each is served within a few rounds, and a round that
found nothing goes on to the next groups at once rather than waiting.

An idle worker does not claim every second: when a round finds nothing, it asks the store once
when the next letter falls due and stays quiet until then, or ``IDLE_RECHECK`` at most (letters
another worker hands back or plans reach it that late). Anything this worker learns that can make
letters due — new groups, a plan, a recovered lease, a committed outcome — stirs it at once.
A group the claim found at one of its caps (store/caps.py) is not asked again, stirred or not,
until the cap's window ends: a worker whose every group is capped makes no store call for it.
So is a group waiting for its spread's next token (plans/spread.py), until that token comes.

Queued letters spend their pacing tokens when claimed, so a letter must start soon after:
each channel's queue holds only what its senders start within half of ``START_WITHIN`` at the
rate they are going, and a sender hands back a letter that waited longer than ``START_WITHIN``.
So what an official receives in any span T stays within burst + rate × (T + START_WITHIN).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from dispatcher.channels import Channel
from dispatcher.models import Claim, ClaimBatch, ClaimGroup, GroupId
from dispatcher.pacing import Limits
from dispatcher.store import ClaimRequest
from dispatcher.store.roles import SenderStore
from dispatcher.store.thread import StoreThread

START_WITHIN = 1.0  # seconds from claim to the start of the attempt, or the letter goes back
IDLE_RECHECK = 5.0  # seconds an idle worker trusts its reading of when the next letter is due


@dataclass(frozen=True)
class Queued:
    claim: Claim
    claimed_at: float  # time.monotonic()

    @property
    def start_by(self) -> float:
        """The last moment (monotonic) the attempt may start under the pacing it was claimed by."""
        return self.claimed_at + START_WITHIN

    def late(self) -> bool:
        return time.monotonic() > self.start_by


class ChannelQueue:
    """Claimed letters of one channel waiting for its senders, sized from their pace."""

    def __init__(self, concurrency: int, batch_size: int) -> None:
        self.items: asyncio.Queue[Queued | None] = asyncio.Queue()
        self.low = max(2, concurrency // 2)
        self.high = max(self.low, batch_size)
        self.ahead = self.low
        self._window = (time.monotonic(), 0)  # start of the current second, letters finished in it

    def room(self) -> int:
        """How many to claim: none until the queue is half empty, then up to ``ahead``."""
        size = self.items.qsize()
        return 0 if size > self.ahead // 2 else self.ahead - size

    def finished_one(self) -> None:
        start, count = self._window
        now = time.monotonic()
        if now - start < 1.0:
            self._window = (start, count + 1)
            return
        rate = (count + 1) / (now - start)
        self.ahead = max(self.low, min(self.high, int(rate * START_WITHIN / 2)))
        self._window = (now, 0)


class Feeder:
    def __init__(
        self,
        store: SenderStore,
        db: StoreThread,
        worker_id: str,
        channels: Mapping[str, Channel],
        limits: Limits,
        lease: dt.timedelta,
        batch_size: int,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.store = store
        self.db = db
        self.worker_id = worker_id
        self.limits = limits
        self.lease = lease
        self.clock = clock
        self.queues = {name: ChannelQueue(ch.concurrency, batch_size) for name, ch in channels.items()}
        self.dry: set[GroupId] = set()
        self.wait: float | None = None  # until a group with letters has pacing tokens again
        self._quiet_until = 0.0  # time.monotonic() before which nothing of these groups is due
        self._groups: tuple[ClaimGroup, ...] = ()  # the groups the quiet was read for
        self._source: list[ClaimGroup] | None = None  # the list they came as (the catalogue keeps it)
        self._order: dict[GroupId, int] = {}  # each group's place in ``_groups``
        self._next: GroupId | None = None  # where the next round starts: the first not reached
        # Groups at a cap (store/caps.py), until its window ends: a cap reached stays reached
        # whatever else happens, so not even a stir asks them again before then.
        self.capped: dict[GroupId, dt.datetime] = {}

    def settle(self) -> None:
        """At a refresh: the dry groups are asked again, unless the store said nothing is due."""
        if time.monotonic() >= self._quiet_until:
            self.stir()

    def quiet(self) -> bool:
        """The store said nothing of these groups is due before ``_quiet_until``, not yet past."""
        return time.monotonic() < self._quiet_until

    def stir(self) -> None:
        """Something may have made letters due: ask every group at the next round."""
        self.dry.clear()
        self._quiet_until = 0.0

    async def fill(self, groups: list[ClaimGroup]) -> int:
        """One claim round (more while a round looked at only some groups and found nothing);
        returns how many letters were queued."""
        idents = tuple(g.ident for g in groups)
        if groups is not self._source and tuple(groups) != self._groups:  # an action resumed, caps changed…
            self._groups = tuple(groups)
            self._order = {ident: i for i, ident in enumerate(idents)}
            self.capped.clear()
            self.stir()
        self._source = groups
        now_at = self.clock()
        self.capped = {g: until for g, until in self.capped.items() if until > now_at}
        room = {name: queue.room() for name, queue in self.queues.items()}
        asked = self._rotated([g for g in groups if self._askable(g, room)])
        if not asked:
            self.wait = self._uncapped_in(now_at)
            return 0
        claimed, waits = 0, []
        while asked:
            request = ClaimRequest(asked, room, self.limits)
            batch = await self.db(self.store.claim, self.worker_id, request, self.clock(), self.lease)
            self.dry |= batch.dry
            self.capped |= batch.capped
            waits.append(batch.wait)
            now = time.monotonic()
            for claim in batch.claims:
                self.queues[claim.channel].items.put_nowait(Queued(claim, now))
            claimed += len(batch.claims)
            self._next = self._first_unserved(asked, batch) or self._next
            if claimed or not batch.reached:
                break
            asked = asked[batch.reached :]
        paced = min((w for w in waits if w is not None), default=None)
        self.wait = min((w for w in (paced, self._uncapped_in(now_at)) if w is not None), default=None)
        if not claimed and paced is None and self.dry.union(self.capped).issuperset(idents):
            await self._quiet(self.uncapped(idents))
        return claimed

    def _askable(self, group: ClaimGroup, room: Mapping[str, int]) -> bool:
        return (
            bool(room.get(group.channel)) and group.ident not in self.dry and group.ident not in self.capped
        )

    def _first_unserved(self, asked: list[ClaimGroup], batch: ClaimBatch) -> GroupId | None:
        """Where the next round starts: the first group the round looked at and left waiting
        (out of room or tokens), else the first it did not reach, so every group with letters
        due is served once before any is served twice (pacing allowing)."""
        served = {(c.action_id, c.target_id, c.channel) for c in batch.claims}
        done = served | self.dry | self.capped.keys()
        waiting = (g.ident for g in asked[: batch.reached] if g.ident not in done)
        after = asked[batch.reached].ident if batch.reached < len(asked) else None
        return next(waiting, after)

    def _rotated(self, asked: list[ClaimGroup]) -> list[ClaimGroup]:
        """``asked`` from the group the last round did not reach, then the ones before it."""
        start = self._order.get(self._next) if self._next is not None else None
        if start is None:
            return asked
        k = next((i for i, g in enumerate(asked) if self._order[g.ident] >= start), len(asked))
        return asked[k:] + asked[:k]

    def _uncapped_in(self, now: dt.datetime) -> float | None:
        """Seconds until the first group left out for a cap or its spread may be asked again:
        the worker wakes then, not at its next whole second (a spread's jitter stays visible)."""
        until = min(self.capped.values(), default=None)
        return None if until is None else max(0.001, (until - now).total_seconds())

    def uncapped(self, idents: Iterable[GroupId]) -> list[GroupId]:
        """The groups whose letters may be due now: not at a cap."""
        return [g for g in idents if g not in self.capped]

    async def _quiet(self, idents: list[GroupId]) -> None:
        now = self.clock()
        due = await self.db(self.store.next_due, idents, now) if idents else None
        times = [t for t in (due, min(self.capped.values(), default=None)) if t is not None]
        until = min(((t - now).total_seconds() for t in times), default=IDLE_RECHECK)
        self._quiet_until = time.monotonic() + min(IDLE_RECHECK, until)

    def full(self) -> bool:
        return all(q.room() == 0 for q in self.queues.values())

    def held(self) -> int:
        return sum(q.items.qsize() for q in self.queues.values())

    def empty(self) -> bool:
        return all(q.items.empty() for q in self.queues.values())

    def drain(self) -> list[int]:
        """Take every queued claim out (at shutdown): their delivery ids, to hand back."""
        ids = []
        for queue in self.queues.values():
            while not queue.items.empty():
                item = queue.items.get_nowait()
                if item is not None:
                    ids.append(item.claim.delivery_id)
        return ids
