"""One adapter per channel, for the channel contract suite: where its letters arrive (an
``Endpoint``), how to make that place fail, and how the dispatcher is configured to reach it.

A new channel: an adapter here, with an endpoint that counts what arrived, and its name in
``CHANNELS``.
"""

from __future__ import annotations

import contextlib
import mailbox
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.contract.providers import Telnyx
from tests.contract.world import EMBASSY, MINISTER
from tests.fax_servers.control import FakeProvider, Outcome
from tests.fax_servers.telnyx import FakeTelnyx
from tests.smtp_server import SmtpServer

FAILS = "fails"  # its endpoint can be made to fail, for a while or for good
EMAIL = "minister@example.org"


class Endpoint(Protocol):
    def letters(self) -> int:
        """How many letters reached the target."""
        ...

    def fail_next(self, permanent: bool) -> None:
        """The next letter meets a failure: for good, or one worth trying again."""
        ...

    def pdfs(self) -> int:
        """How many of the letters that reached the target were PDFs."""
        ...


PDF = b"application/pdf"  # a PDF attached to a message


class Channel(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def can(self) -> frozenset[str]: ...

    def serve(self, tmp: Path) -> contextlib.AbstractContextManager[tuple[Endpoint, dict[str, Any]]]:
        """Serve the endpoint; yield it and the settings that point the dispatcher at it."""
        ...

    @property
    def target(self) -> dict[str, Any]:
        """How the action's target is reached by this channel."""
        ...

    @property
    def copy(self) -> dict[str, Any]:
        """How a second target (a ``cc``) is reached by this channel."""
        ...


@dataclass(frozen=True)
class SmtpEnd:
    server: SmtpServer

    def letters(self) -> int:
        return len(self.server.received())

    def fail_next(self, permanent: bool) -> None:
        self.server.fail(at="rcpt", reply="550" if permanent else "451", times=1)

    def pdfs(self) -> int:
        return sum(PDF in m.data for m in self.server.received())


@dataclass(frozen=True)
class MaildirEnd:
    folder: Path

    def letters(self) -> int:
        return len(mailbox.Maildir(str(self.folder), create=True))

    def fail_next(self, permanent: bool) -> None:
        raise NotImplementedError("a Maildir on the local disk does not fail on request")

    def pdfs(self) -> int:
        return sum(PDF in m.as_bytes() for m in mailbox.Maildir(str(self.folder), create=True))


@dataclass(frozen=True)
class FaxEnd:
    fake: FakeProvider
    delivered: str

    def letters(self) -> int:
        return self.fake.job_states(MINISTER).count(self.delivered)

    def fail_next(self, permanent: bool) -> None:
        self.fake.outcome(MINISTER, Outcome.NOT_A_FAX if permanent else Outcome.BUSY)

    def pdfs(self) -> int:
        assert isinstance(self.fake, FakeTelnyx)  # the fake that says what it fetched
        return sum(bool(fax.pdf) for fax in self.fake.faxes_to(MINISTER))


EMAIL_TARGET = {"email": EMAIL, "channels": ["email"]}
EMAIL_COPY = {"email": "embassy@example.org", "channels": ["email"]}


@dataclass(frozen=True)
class Smtp:
    name: str = "smtp"
    can: frozenset[str] = frozenset({FAILS})
    target: dict[str, Any] = field(default_factory=lambda: EMAIL_TARGET)
    copy: dict[str, Any] = field(default_factory=lambda: EMAIL_COPY)

    @contextlib.contextmanager
    def serve(self, tmp: Path) -> Iterator[tuple[Endpoint, dict[str, Any]]]:
        with SmtpServer() as server:
            yield SmtpEnd(server), {"smtp_url": server.url, "smtp_timeout": 5.0}


@dataclass(frozen=True)
class Maildir:
    name: str = "maildir"
    can: frozenset[str] = frozenset()
    target: dict[str, Any] = field(default_factory=lambda: EMAIL_TARGET)
    copy: dict[str, Any] = field(default_factory=lambda: EMAIL_COPY)

    @contextlib.contextmanager
    def serve(self, tmp: Path) -> Iterator[tuple[Endpoint, dict[str, Any]]]:
        yield MaildirEnd(tmp / "outbox"), {"smtp_url": None}


@dataclass(frozen=True)
class Fax:
    """Fax through a provider that dials (the fake Telnyx): the provider suite covers the rest."""

    name: str = "fax"
    can: frozenset[str] = frozenset({FAILS})
    target: dict[str, Any] = field(default_factory=lambda: {"fax": MINISTER, "channels": ["fax"]})
    copy: dict[str, Any] = field(default_factory=lambda: {"fax": EMBASSY, "channels": ["fax"]})

    @contextlib.contextmanager
    def serve(self, tmp: Path) -> Iterator[tuple[Endpoint, dict[str, Any]]]:
        provider = Telnyx()
        with provider.serve(tmp) as (fake, values):
            yield FaxEnd(fake, provider.words.delivered), values


CHANNELS: list[Channel] = [Smtp(), Maildir(), Fax()]


def able(*needs: str) -> list[Any]:
    """The channels with all that a scenario needs, as pytest parameters named after them."""
    return [pytest.param(c, id=c.name) for c in CHANNELS if set(needs) <= c.can]
