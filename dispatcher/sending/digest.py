"""Digest delivery: each target whose plan says ``delivery: digest`` gets one message a day.

Looked for about once a second: a target's digest is due once its moment of the day has come
(plans/digests.py). The store decides what it carries and its Message-ID, and leases it to one
worker (store/digests.py); this worker renders every letter as it would send it alone, composes
the digest (letters/digest.py), sends it as one email, and records each letter SENT with one
attempt row, or to be tried again with the usual backoff. By fax it goes as one or more faxes
(letters/faxdigest.py), each letter recorded submitted with its fax's job id; the provider's
word on that job comes later, for all of them (store/submissions.py). A letter that fails to
render holds its action, as it does when sent alone, and the digest goes back untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial

from dispatcher.actions.model import Action, Target
from dispatcher.channels import Channel, SendError, Unavailable
from dispatcher.channels.email import EmailChannel
from dispatcher.channels.email import digest as mail
from dispatcher.channels.fax import FaxChannel, digest_reference
from dispatcher.letters.digest import compose
from dispatcher.letters.faxdigest import faxes
from dispatcher.letters.faxpdf import find_font, letterhead
from dispatcher.letters.render import Letter, RenderError
from dispatcher.models import AttemptResult, ClaimGroup, GroupId, Outcome, Signer, Submission
from dispatcher.plans import digests as schedule
from dispatcher.plans import resolve
from dispatcher.plans.calendar import Calendar
from dispatcher.sending.sender import Sender
from dispatcher.settings import Settings
from dispatcher.store import Store
from dispatcher.store.digests import FAILED, PENDING, SENT, Digest
from dispatcher.store.reasons import gave_up
from dispatcher.store.thread import StoreThread

log = logging.getLogger("dispatcher")

LOOK_EVERY = 1.0  # seconds between looks for digests due (clock arithmetic only, no store call)
KNOWN_MOST = 10_000  # (target, day) answers kept; forgotten past that, then asked once again


def _send_error(digest: Digest, exc: Exception) -> SendError:
    """What a send raised, as a SendError: a bug or an unforeseen error costs one attempt."""
    if isinstance(exc, SendError):
        return exc
    log.error("digest %d: unexpected error", digest.id, exc_info=exc)
    return SendError(f"{type(exc).__name__}: {exc}", transient=True)


def _asking_again(again: dt.datetime | None, now: dt.datetime) -> bool:
    """None: nothing more that day; else whether the time to ask the store again has come."""
    return again is not None and again <= now


def is_digest(action: Action, target: Target) -> bool:
    return resolve.delivery_for(action, target) == "digest"


@dataclass(frozen=True)
class DigestTarget:
    action: Action
    target: Target
    channel: str
    calendar: Calendar

    @property
    def ident(self) -> GroupId:
        return (self.action.id, self.target.id, self.channel)


@dataclass(frozen=True)
class _Moments:
    """A target's last digest moment, as worked out at ``since``, good until ``until``."""

    calendar: Calendar
    at: dt.time
    since: dt.datetime
    until: dt.datetime | None
    moment: schedule.Moment | None

    def good(self, calendar: Calendar, at: dt.time, now: dt.datetime) -> bool:
        same = self.calendar is calendar and self.at == at
        return same and self.since <= now and (self.until is None or now < self.until)


class DigestJob:
    def __init__(self, settings: Settings, store: Store, db: StoreThread, sender: Sender) -> None:
        """What a digest needs is what a single letter needs: the sender's catalogue, channels,
        result writer (its tally), clock and backoff."""
        self.settings, self.store, self.db = settings, store, db
        self.catalogue, self.channels, self.results = sender.catalogue, sender.channels, sender.results
        self.clock, self.backoff = sender.clock, sender.backoff
        self.worker_id = sender.results.worker_id
        self.lease = dt.timedelta(seconds=settings.lease_seconds)
        # (group, day) → None: nothing more that day; a time: ask the store again then.
        self._known: dict[tuple[GroupId, dt.date], dt.datetime | None] = {}
        self._looked = -LOOK_EVERY
        self._moments: dict[GroupId, _Moments] = {}

    def targets(self, up: tuple[str, ...]) -> Iterator[DigestTarget]:
        """Targets × channels (that are up) of the open actions whose letters go as a digest."""
        for action, _deadline in self.catalogue.open.values():
            for target_id, name in action.claim_pairs(up):
                target = action.target(target_id)
                if name in schedule.DIGEST_CHANNELS and is_digest(action, target):
                    yield DigestTarget(action, target, name, self.catalogue.calendar(action, target_id, name))

    async def tick(self, up: tuple[str, ...]) -> None:
        """Send the digests due now (about once a second; at once on the first call)."""
        if time.monotonic() - self._looked < LOOK_EVERY:
            return
        self._looked = time.monotonic()
        for each in list(self.targets(up)):
            now = self.clock()
            moment = self._latest(each, now)
            if moment is None:
                continue
            key = (each.ident, moment.day)
            if key in self._known and not _asking_again(self._known[key], now):
                continue
            today = moment.day == now.astimezone(each.calendar.zone).date()
            self._known[key] = await self._take(each, moment, today)

    def _latest(self, each: DigestTarget, now: dt.datetime) -> schedule.Moment | None:
        """The target's last digest moment, worked out again only once the next one has come
        (or its calendar or digest_at changed): hundreds of digest targets are looked at each
        second."""
        at = resolve.digest_at_for(each.action, each.target, self.settings.digest_at)
        known = self._moments.get(each.ident)
        if known is not None and known.good(each.calendar, at, now):
            return known.moment
        if len(self._known) > KNOWN_MOST:  # a long-running worker forgets days long past
            self._known.clear()
        coming = schedule.upcoming(each.calendar, at, now)
        found = schedule.latest(each.calendar, at, now)
        self._moments[each.ident] = _Moments(each.calendar, at, now, coming.at if coming else None, found)
        return found

    async def _take(self, each: DigestTarget, moment: schedule.Moment, create: bool) -> dt.datetime | None:
        channel = self.channels[each.channel]
        caps = resolve.caps_for(each.action, each.target, each.channel, self.settings.caps())
        group = ClaimGroup(*each.ident, channel.pacing_keys(each.action, each.target), caps=caps)
        day, now = moment.day.isoformat(), self.clock()
        # A fax digest has no Message-ID; the column holds one all the same.
        domain = channel.builder.domain if isinstance(channel, EmailChannel) else "fax.invalid"
        taken = await self.db(
            self.store.digests.take_digest,
            self.worker_id,
            group,
            day,
            moment.at,
            now,
            self.lease,
            domain,
            create,
        )
        if not isinstance(taken, Digest):
            return taken
        await self._send(each, channel, taken)
        return self.clock()  # ask again at once: an older unfinished one may have gone first

    def _render(self, each: DigestTarget, digest: Digest, now: dt.datetime) -> list[tuple[Letter, Signer]]:
        renderer = self.catalogue.renderer
        language = renderer.language_for(each.action, each.target)
        if language is None:
            raise RenderError(each.action.id, each.target.id, None, "no template for this target")
        deadline = self.catalogue.open[each.action.id][1]
        return [
            (renderer.render(each.action, each.target, language, signer, now.date(), deadline), signer)
            for _, signer in digest.letters
        ]

    async def _prepared(self, each: DigestTarget, digest: Digest) -> list[tuple[Letter, Signer]] | None:
        """Every letter rendered, or None: the digest given back untouched (the action stopped
        meanwhile, or a letter failed to render: that holds the action, as for a single letter)."""
        now = self.clock()
        opened = self.catalogue.open.get(each.action.id)
        try:
            if opened is None or now >= opened[1]:
                raise Unavailable("the action stopped meanwhile")
            return self._render(each, digest, now)
        except Unavailable:
            pass
        except Exception as exc:
            # Whatever a template does, it holds its own action and never stops the others.
            problem = (
                exc
                if isinstance(exc, RenderError)
                else RenderError(each.action.id, each.target.id, None, repr(exc))
            )
            self.catalogue.hold(each.action.id, problem)
        await self.db(self.store.digests.release_digest, self.worker_id, digest, now)
        return None

    async def _send(self, each: DigestTarget, channel: Channel, digest: Digest) -> None:
        letters = await self._prepared(each, digest)
        if letters is None:
            return
        async with self._renewed(digest):
            if isinstance(channel, FaxChannel):
                done = await self._fax(each, channel, digest, letters)
            else:
                assert isinstance(channel, EmailChannel)
                done = await self._email(each, channel, digest, letters)
        if done:
            log.info("%s → %s: digest of %d letters sent", each.action.id, each.target.id, len(letters))

    async def _email(
        self, each: DigestTarget, channel: EmailChannel, digest: Digest, letters: list[tuple[Letter, Signer]]
    ) -> bool:
        now, deadline = self.clock(), self.catalogue.open[each.action.id][1]
        language = letters[0][0].language
        text = compose(each.action.title, language, letters)
        copies = EmailChannel.copies(each.action, each.target)
        message = mail.build(channel.builder, each.target, copies, digest.message_id, text, now)
        try:
            reply = await channel.transport.send(message, time.monotonic() + (deadline - now).total_seconds())
        except Unavailable:
            await self.db(self.store.digests.release_digest, self.worker_id, digest, self.clock())
            return False
        except Exception as exc:
            await self._failed(each, digest, digest.delivery_ids, now, language, _send_error(digest, exc))
            return False
        detail = f"in digest {digest.message_id} of {len(letters)} letters: {reply.detail}"
        ids = digest.delivery_ids
        await self._record(each, ids, now, language, Outcome.SENT, detail, reply.code)
        await self.db(self.store.digests.end_digest, self.worker_id, digest.id, SENT, self.clock())
        return True

    async def _fax(
        self, each: DigestTarget, channel: FaxChannel, digest: Digest, letters: list[tuple[Letter, Signer]]
    ) -> bool:
        """Each fax of the digest submitted in turn, its letters recorded with its job id; a
        failure leaves those already submitted with their provider, the rest to try again."""
        now, language, number = self.clock(), letters[0][0].language, each.target.fax
        assert number is not None
        text = compose(each.action.title, language, letters)
        heads = [
            letterhead(each.action, each.target, s, letter.language, now.date()) for letter, s in letters
        ]
        font, most = find_font(channel.font), self.settings.fax_digest_pages
        parts = await asyncio.to_thread(faxes, text, heads, heads[0], font, most)
        ids = digest.delivery_ids
        for part in parts:
            members = [ids[i] for i in part.letters]
            reference = digest_reference(channel.secret, digest.id, members[0])
            try:
                reply = await channel.submit(part.document, number, reference, now, again=digest.attempt > 1)
            except Unavailable:
                await self.db(self.store.digests.release_digest, self.worker_id, digest, self.clock())
                return False
            except Exception as exc:
                rest = ids[part.letters.start :]
                await self._failed(each, digest, rest, now, language, _send_error(digest, exc))
                return False
            sub = reply.submission
            await self._record(
                each, members, now, language, Outcome.SUBMITTED, reply.detail, None, submission=sub
            )
        await self.db(self.store.digests.end_digest, self.worker_id, digest.id, SENT, self.clock())
        return True

    async def _failed(
        self,
        each: DigestTarget,
        digest: Digest,
        ids: list[int],
        now: dt.datetime,
        language: str,
        exc: SendError,
    ) -> None:
        finished = self.clock()
        later = self.backoff.after(digest.attempt, finished) if exc.transient else None
        if later is not None and exc.retry_after is not None:
            later = finished + dt.timedelta(seconds=exc.retry_after)
        detail = f"digest {digest.message_id}: {exc.detail}"
        if later is None:
            why = gave_up(digest.attempt, detail) if exc.transient else detail
            await self._record(each, ids, now, language, Outcome.FAILED, why, exc.code)
            await self.db(self.store.digests.end_digest, self.worker_id, digest.id, FAILED, finished)
            return
        await self._record(each, ids, now, language, Outcome.RETRY, detail, exc.code, later)
        await self.db(self.store.digests.end_digest, self.worker_id, digest.id, PENDING, finished, later)

    async def _record(
        self,
        each: DigestTarget,
        ids: list[int],
        started: dt.datetime,
        language: str,
        outcome: Outcome,
        detail: str,
        code: int | None,
        later: dt.datetime | None = None,
        submission: Submission | None = None,
    ) -> None:
        """One attempt row per letter, as each would have had alone."""
        result = partial(
            AttemptResult,
            action_id=each.action.id,
            target_id=each.target.id,
            channel=each.channel,
            started_at=started,
            finished_at=self.clock(),
            outcome=outcome,
            code=code,
            detail=detail,
            language=language,
            next_attempt_at=later,
            submission=submission,
        )
        results = [result(delivery_id=i) for i in ids]
        await self.db(self.store.record, self.worker_id, results, self.results.retry)
        self.results.tally.counts[outcome.value] += len(results)

    @contextlib.asynccontextmanager
    async def _renewed(self, digest: Digest) -> AsyncIterator[None]:
        """The digest's lease renewed while it is sent and recorded (a slow server, a store
        outage): only a worker that stopped running loses it to another."""
        every = min(self.lease.total_seconds() / 4, 5.0)

        async def renew() -> None:
            while True:
                await asyncio.sleep(every)
                with contextlib.suppress(Exception):  # the next round tries again
                    until = self.clock() + self.lease
                    await asyncio.to_thread(self.store.digests.renew_digest, self.worker_id, digest, until)

        task = asyncio.create_task(renew())
        try:
            yield
        finally:
            task.cancel()
