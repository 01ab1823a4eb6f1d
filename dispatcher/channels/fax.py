"""The fax channel: a letter as a fax PDF, handed to a fax provider, its outcome known later.

A provider accepts a job in milliseconds and dials for minutes or hours, so ``send`` returns a
``Submission`` and the delivery waits, ``submitted`` and unleased, for the provider's final word
(``Store.resolve``), from a webhook or from polling ``FaxProvider.status``.

Each fax carries a reference derived from its delivery (as a Message-ID is): after a crash
between the provider's acceptance and our commit, the next attempt asks the provider whether a
fax with that reference exists before submitting again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Awaitable
from pathlib import Path

from dispatcher.actions.model import Action, Target
from dispatcher.channels.base import Channel, Envelope, Reply, SendError, Unavailable
from dispatcher.letters.faxpdf import FaxDocument, find_font, letter_pdf, letterhead
from dispatcher.models import ProviderEvent, Submission
from dispatcher.providers import FaxProvider, ProviderError
from dispatcher.store.failures import Failure

log = logging.getLogger("dispatcher.fax")


def digest_reference(secret: bytes, digest_id: int, first: int) -> str:
    """Stable per fax of a digest (the digest, the delivery id of its first letter): the same
    on every attempt, after any crash."""
    digest = hashlib.blake2b(f"digest:{digest_id}:{first}".encode(), key=secret, digest_size=10).hexdigest()
    return f"g{digest_id}-{first}-{digest}"


def fax_reference(secret: bytes, delivery_id: int) -> str:
    """Stable per delivery and unguessable: the same on every attempt, after any crash."""
    digest = hashlib.blake2b(f"fax:{delivery_id}".encode(), key=secret, digest_size=10).hexdigest()
    return f"d{delivery_id}-{digest}"


# After a crash, the fax that may have got through is looked for this far back.
FIND_WINDOW = dt.timedelta(days=7)
# The account was refused (a revoked key, no credit): nothing can go until an operator acts, so
# the channel stops asking for this long rather than failing every letter in turn.
ACCOUNT_PAUSE = 300.0


class FaxChannel(Channel):
    name = "fax"

    def __init__(self, provider: FaxProvider, secret: bytes, font: Path | None = None) -> None:
        self.fax = provider
        self.provider = provider.name
        self.poll_every = provider.poll_every
        self.secret = secret
        self.font = font
        self._resume_at = 0.0  # time.monotonic() before which nothing is submitted

    def ready_in(self) -> float:
        return max(0.0, self._resume_at - time.monotonic())

    @property
    def concurrency(self) -> int:
        return self.fax.concurrency

    def pacing_keys(self, action: Action, target: Target) -> tuple[str, ...]:
        return (f"fax:{target.fax}",)

    def line(self, action: Action, target: Target) -> str | None:
        # A fax machine takes one call at a time: a second fax while one is in the provider's
        # hands would only meet a busy line (and count as a failed attempt).
        return f"line:fax:{target.fax}"

    async def close(self) -> None:
        await self.fax.close()

    async def poll(self, job_ids: list[str]) -> list[ProviderEvent]:
        events = []
        for job in job_ids:
            try:
                event = await self.fax.status(job)
            except ProviderError as exc:  # one unanswered question must not stop the others
                log.warning("%s: no status for job %s: %s", self.fax.name, job, exc)
                continue
            if event is not None:
                events.append(event)
        return events

    async def cancel(self, job_id: str) -> bool:
        try:
            return await self.fax.cancel(job_id)
        except ProviderError as exc:
            log.warning("%s: could not withdraw job %s: %s", self.fax.name, job_id, exc)
            return False

    async def send(self, envelope: Envelope) -> Reply:
        return await self._guarded(self._send(envelope))

    async def submit(
        self, document: FaxDocument, number: str, reference: str, now: dt.datetime, again: bool
    ) -> Reply:
        """A fax prepared elsewhere (a part of a digest): submitted, or, ``again`` (an earlier
        attempt may have got through before a crash), found already submitted under ``reference``."""
        return await self._guarded(self._submit(document, number, reference, now, again))

    async def _guarded(self, work: Awaitable[Reply]) -> Reply:
        try:
            return await work
        except ProviderError as exc:
            pause = ACCOUNT_PAUSE if exc.failure is Failure.ACCOUNT else exc.retry_after
            if pause:
                level = logging.ERROR if exc.failure is Failure.ACCOUNT else logging.WARNING
                log.log(level, "%s: %s; no fax submitted for %.0f s", self.fax.name, exc, pause)
                self._resume_at = max(self._resume_at, time.monotonic() + pause)
            raise SendError(
                str(exc), transient=exc.failure.retryable, code=exc.code, retry_after=exc.retry_after
            ) from None

    async def _found(self, reference: str, number: str, now: dt.datetime) -> Reply | None:
        job = await self.fax.find(reference, now - FIND_WINDOW, number)
        if job is None:
            return None
        # An earlier attempt got through before a crash: that fax is the one, not a second.
        which = reference.partition("-")[0]  # "d12", "g3": the keyed part stays out of the log
        log.warning("%s: %s already has fax %s; not submitting again", which, self.fax.name, job)
        return Reply(None, f"found already submitted as {job}", Submission(self.fax.name, job, number, 0))

    async def _submit(
        self, document: FaxDocument, number: str, reference: str, now: dt.datetime, again: bool
    ) -> Reply:
        if again and (found := await self._found(reference, number, now)):
            return found
        job = await self.fax.submit(document.data, number, reference)
        submission = Submission(self.fax.name, job, number, document.pages)
        return Reply(None, f"submitted to {self.fax.name} as {job}", submission)

    async def _send(self, envelope: Envelope) -> Reply:
        target = envelope.target
        assert target.fax is not None
        reference = fax_reference(self.secret, envelope.delivery_id)
        if envelope.attempt > 1 and (found := await self._found(reference, target.fax, envelope.now)):
            return found
        head = letterhead(
            envelope.action, target, envelope.signer, envelope.letter.language, envelope.now.date()
        )
        # A CJK PDF takes tens of milliseconds to subset and write: off the event loop.
        document = await asyncio.to_thread(letter_pdf, envelope.letter, head, find_font(self.font))
        # Pacing is per number and a number takes one fax at a time: only the deadline binds here.
        if time.monotonic() >= envelope.deadline_by:
            raise Unavailable("the deadline passed while the fax was prepared")
        return await self._submit(document, target.fax, reference, envelope.now, again=False)
