"""One adapter per fax provider: what differs between them, for the provider contract suite.

An adapter serves its fake on loopback and says how to configure the dispatcher for it, and
speaks the provider's vocabulary: the states its faxes end in, the status code it refuses a
bad number with, and how our log words each outcome. A scenario of ``test_providers.py`` runs
over every adapter that has what it needs (``can``).

A fourth provider: a fake in ``tests/support/fax_servers/`` offering the control API of
``tests/support/fax_servers/control.py``, an adapter here, and its name in ``ADAPTERS``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dispatcher.providers.sinch import callback_password
from tests.support.asgi_server import serve
from tests.support.fax_servers.control import FakeProvider, Outcome
from tests.support.fax_servers.folder import FaxFolder
from tests.support.fax_servers.sinch import SinchFake
from tests.support.fax_servers.telnyx import FakeTelnyx, public_key_b64
from tests.support.fax_servers.twilio import ACCOUNT, TOKEN, FakeTwilio

SENDER = "+442079460999"  # Ofcom's drama range: valid numbers that reach nobody

# What a scenario may need of a provider beyond submitting and polling.
DIALS = "dials"  # it can be busy, unanswered, not a fax line; a fake scripts it
WEBHOOKS = "webhooks"  # it tells us by webhook, which a fake can drop or repeat
REFUSES = "refuses"  # its API can refuse a submission (429, 500, a bad number)


@dataclass(frozen=True)
class Vocabulary:
    """The provider's words for what the contract checks."""

    delivered: str  # a delivered fax's state
    states: dict[Outcome, str]  # a failed fax's state, per outcome
    details: dict[Outcome, str]  # our log's detail for each failure
    invalid_code: int  # the status it refuses a bad number with
    invalid_detail: str  # our log's detail then (a bad number is +442079460123)
    confirmed_by: str  # the worker our log names for the news that a fax went through
    accepted: int = 0  # the status it accepts a submission with
    polled: tuple[int | None, float | None] = (None, None)  # pages, seconds its status tells
    waiting: str = ""  # a held fax's state
    withdrawn: str | None = None  # a withdrawn fax's state; None: it cannot be withdrawn


class Adapter(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def can(self) -> frozenset[str]: ...

    @property
    def words(self) -> Vocabulary: ...

    def serve(self, tmp: Path) -> contextlib.AbstractContextManager[tuple[FakeProvider, dict[str, Any]]]:
        """Serve the fake; yield it and the settings that point the dispatcher at it."""
        ...

    def secrets(self, instance_secret: bytes) -> list[str]:
        """What no log may show: its credentials, and what our callback URLs carry for it."""
        ...


HTTP = frozenset({DIALS, WEBHOOKS, REFUSES})


@dataclass(frozen=True)
class Telnyx:
    name: str = "telnyx"
    can: frozenset[str] = HTTP
    words: Vocabulary = Vocabulary(
        delivered="delivered",
        states={o: "failed" for o in Outcome},
        details={
            Outcome.BUSY: "busy: user_busy",
            Outcome.NO_ANSWER: "no answer: receiver_no_answer",
            Outcome.NOT_A_FAX: "not a fax line: fax_initial_communication_timeout",
        },
        invalid_code=422,
        invalid_detail="bad number: telnyx refused it (422: Phone number must be in +E.164 format)",
        confirmed_by="webhook:telnyx",
        accepted=202,
        waiting="media.processed",
        withdrawn="failed",
    )

    @contextlib.contextmanager
    def serve(self, tmp: Path) -> Iterator[tuple[FakeProvider, dict[str, Any]]]:
        key = Ed25519PrivateKey.generate()
        fake = FakeTelnyx("KEYtest0000notasecret", "1293384261075731499", SENDER, key)
        with serve(fake.app) as url:
            yield (
                fake,
                {
                    "fax_provider": "telnyx",
                    "telnyx_base_url": url,
                    "telnyx_api_key": "KEYtest0000notasecret",
                    "telnyx_connection_id": "1293384261075731499",
                    "telnyx_from": SENDER,
                    "telnyx_public_key": public_key_b64(key),
                },
            )

    def secrets(self, instance_secret: bytes) -> list[str]:
        return ["KEYtest0000notasecret"]


@dataclass(frozen=True)
class Sinch:
    name: str = "sinch"
    can: frozenset[str] = HTTP
    words: Vocabulary = Vocabulary(
        delivered="COMPLETED",
        states={o: "FAILURE" for o in Outcome},
        details={
            Outcome.BUSY: "busy: CALL_ERROR 17: Busy",
            Outcome.NO_ANSWER: "no answer: CALL_ERROR 30: No answer from a fax machine",
            Outcome.NOT_A_FAX: "not a fax line: FAX_ERROR 132: No fax tone detected",
        },
        invalid_code=422,
        invalid_detail=(
            "bad number: sinch refused the number: The (+442079460123) is not a valid phone number"
        ),
        confirmed_by="webhook:sinch",
        accepted=200,
        polled=(1, None),
        waiting="QUEUED",
    )

    @contextlib.contextmanager
    def serve(self, tmp: Path) -> Iterator[tuple[FakeProvider, dict[str, Any]]]:
        fake = SinchFake("project-1", "key-id", "key-secret")
        with serve(fake.app) as url:
            try:
                yield (
                    fake,
                    {
                        "fax_provider": "sinch",
                        "sinch_base_url": f"{url}/v3",
                        "sinch_project_id": "project-1",
                        "sinch_key_id": "key-id",
                        "sinch_key_secret": "key-secret",
                    },
                )
            finally:
                fake.end_hangs()

    def secrets(self, instance_secret: bytes) -> list[str]:
        return ["key-secret", callback_password(instance_secret)]


@dataclass(frozen=True)
class Twilio:
    name: str = "twilio"
    can: frozenset[str] = HTTP
    words: Vocabulary = Vocabulary(
        delivered="delivered",
        states={
            Outcome.BUSY: "busy",
            Outcome.NO_ANSWER: "no-answer",
            Outcome.NOT_A_FAX: "failed",
        },
        details={
            Outcome.BUSY: "busy: busy (error 34002: Callee Busy)",
            Outcome.NO_ANSWER: "no answer: no-answer (error 34003: Callee did not answer)",
            Outcome.NOT_A_FAX: (
                "not a fax line: failed (error 2: Timed out waiting for initial communication)"
            ),
        },
        invalid_code=400,
        invalid_detail=(
            "bad number: twilio refused the request "
            "(400, code 21211: Invalid 'To' Phone Number: +442079460123)"
        ),
        confirmed_by="webhook:twilio",
        accepted=201,
        polled=(1, 20.0),
        waiting="queued",
        withdrawn="canceled",
    )

    @contextlib.contextmanager
    def serve(self, tmp: Path) -> Iterator[tuple[FakeProvider, dict[str, Any]]]:
        fake = FakeTwilio(sender=SENDER)
        with fake.running() as url:
            yield (
                fake,
                {
                    "fax_provider": "twilio",
                    "twilio_base_url": url,
                    "twilio_account_sid": ACCOUNT,
                    "twilio_auth_token": TOKEN,
                    "twilio_from": SENDER,
                },
            )

    def secrets(self, instance_secret: bytes) -> list[str]:
        return [TOKEN]


@dataclass(frozen=True)
class File:
    """The demo's provider writes PDFs to a folder: nothing to dial, refuse or call back."""

    name: str = "file"
    can: frozenset[str] = field(default_factory=frozenset)
    words: Vocabulary = Vocabulary("written", {}, {}, 0, "", confirmed_by="poll:w")

    @contextlib.contextmanager
    def serve(self, tmp: Path) -> Iterator[tuple[FakeProvider, dict[str, Any]]]:
        yield FaxFolder(tmp / "fax-outbox"), {"fax_provider": "file", "fax_outbox": tmp / "fax-outbox"}

    def secrets(self, instance_secret: bytes) -> list[str]:
        return []  # no credentials, no callbacks


ADAPTERS: list[Adapter] = [File(), Telnyx(), Sinch(), Twilio()]


def able(*needs: str) -> list[Any]:
    """The adapters with all that a scenario needs, as pytest parameters named after them."""
    return [pytest.param(a, id=a.name) for a in ADAPTERS if set(needs) <= a.can]
