"""The fax channel: a letter as a fax PDF, handed to a fax provider, its outcome known later.

A provider accepts a job in milliseconds and dials for minutes or hours, so ``send`` returns a
``Submission`` and the delivery waits, ``submitted`` and unleased, for the provider's final word
(``Store.resolve``), from a webhook or from polling ``FaxProvider.status``.

Each fax carries a reference derived from its delivery (as a Message-ID is): after a crash
between the provider's acceptance and our commit, the next attempt asks the provider whether a
fax with that reference exists before submitting again.
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
import hashlib
import logging
import os
from pathlib import Path

from dispatcher.channels import Channel, Envelope, Reply
from dispatcher.config import Action, Settings, Target
from dispatcher.faxpdf import find_font, letter_pdf, letterhead
from dispatcher.store import ProviderEvent, Submission

log = logging.getLogger("dispatcher.fax")


def fax_reference(secret: bytes, delivery_id: int) -> str:
    """Stable per delivery and unguessable: the same on every attempt, after any crash."""
    digest = hashlib.blake2b(f"fax:{delivery_id}".encode(), key=secret, digest_size=10).hexdigest()
    return f"d{delivery_id}-{digest}"


class FaxProvider(abc.ABC):
    name: str
    concurrency = 4  # faxes being prepared and submitted at once by one dispatcher
    poll_every = 30.0  # a provider's API is asked about its jobs this often (webhooks are faster)

    @abc.abstractmethod
    async def submit(self, pdf: bytes, to: str, reference: str) -> str:
        """Hand the fax over; returns the provider's job id."""

    @abc.abstractmethod
    async def find(self, reference: str) -> str | None:
        """The job id of a fax already submitted with this reference, if there is one."""

    @abc.abstractmethod
    async def status(self, job_id: str) -> ProviderEvent | None:
        """The job's final outcome, or None while the provider is still working on it."""

    async def cancel(self, job_id: str) -> bool:
        """Withdraw a job the provider has not started; False if it cannot."""
        return False

    async def close(self) -> None:
        """Release what the provider client holds."""


class FileProvider(FaxProvider):
    """Writes each fax as a PDF under a folder and reports it delivered: the demo's provider.

    Nothing is dialled. The folder holds letters signed by supporters: owner-only.
    """

    name = "file"
    poll_every = 0.0  # its jobs are done as soon as written

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.pdf"

    async def submit(self, pdf: bytes, to: str, reference: str) -> str:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = self.folder / f".{reference}.tmp"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pdf)
        partial.replace(self._path(reference))  # whole or absent: a crash leaves no half fax
        return reference

    async def find(self, reference: str) -> str | None:
        return reference if self._path(reference).exists() else None

    async def status(self, job_id: str) -> ProviderEvent | None:
        path = self._path(job_id)
        if not path.exists():
            return ProviderEvent(self.name, job_id, False, dt.datetime.now(dt.UTC), reason="file is gone")
        written = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        return ProviderEvent(self.name, job_id, True, written, reason=f"written to {path}")


def make_provider(settings: Settings) -> FaxProvider:
    return FileProvider(settings.fax_outbox)


class FaxChannel(Channel):
    name = "fax"

    def __init__(self, provider: FaxProvider, secret: bytes, font: Path | None = None) -> None:
        self.fax = provider
        self.provider = provider.name
        self.poll_every = provider.poll_every
        self.secret = secret
        self.font = font

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
        events = [await self.fax.status(job) for job in job_ids]
        return [e for e in events if e is not None]

    async def send(self, envelope: Envelope) -> Reply:
        target = envelope.target
        assert target.fax is not None
        reference = fax_reference(self.secret, envelope.delivery_id)
        if envelope.attempt > 1 and (job := await self.fax.find(reference)):
            # An earlier attempt got through before a crash: that fax is the one, not a second.
            log.warning(
                "delivery %d: %s already has fax %s; not submitting again",
                envelope.delivery_id,
                self.fax.name,
                job,
            )
            submission = Submission(self.fax.name, job, target.fax, 0)
            return Reply(None, f"found already submitted as {job}", submission)
        head = letterhead(
            envelope.action, target, envelope.signer, envelope.letter.language, envelope.now.date()
        )
        # A CJK PDF takes tens of milliseconds to subset and write: off the event loop.
        document = await asyncio.to_thread(letter_pdf, envelope.letter, head, find_font(self.font))
        job = await self.fax.submit(document.data, target.fax, reference)
        submission = Submission(self.fax.name, job, target.fax, document.pages)
        return Reply(None, f"submitted to {self.fax.name} as {job}", submission)
