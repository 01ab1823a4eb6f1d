"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, an ephemeral port, scripted failures.

In a test::

    with SmtpServer() as server:
        server.fail(at="data", reply="451", messages={1})   # first transaction: try again later
        server.fail(at="rcpt", reply="550", rcpt="president@example.org")
        ... point the dispatcher at server.url ...
        server.wait_for(3)
        server.received()                                   # what was accepted, in order

Transactions are numbered 1, 2, 3… across all connections, in the order their first RCPT (or
their DATA) reached the server, so "message number" means "the n-th transaction attempted".
A rule answers ``421`` (and closes the connection), ``451``, ``550``, or ``drop``: close the
connection without any reply (at DATA: after the whole message arrived, which is the case where
the client cannot know whether it was delivered). Refused and dropped messages are not stored.

As a process, for tests that kill the client (one line per accepted message, flushed at once,
``<Message-ID>\\t<Reply-To address>``; the first line on stdout is ``PORT <n>``)::

    python -m tests.support.smtp_server --port 0 --out received.txt [--delay 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Literal, TextIO

from aiosmtpd.controller import Controller

Stage = Literal["rcpt", "data"]
ReplyKind = Literal["421", "451", "550", "drop"]

REPLIES: dict[str, str] = {
    "421": "421 4.3.2 Service not available, closing transmission channel",
    "451": "451 4.3.0 Requested action aborted: try again later",
    "550": "550 5.1.1 Requested action not taken: mailbox unavailable",
}

_HEADERS = BytesParser(policy=policy.default)


def parse_headers(data: bytes) -> EmailMessage:
    message = _HEADERS.parsebytes(data, headersonly=True)
    assert isinstance(message, EmailMessage)
    return message


def parse_message(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def _header(data: bytes, name: str) -> str | None:
    value = parse_headers(data)[name]
    return None if value is None else str(value).strip()


def _address(data: bytes, name: str) -> str | None:
    """The first address (``addr_spec``) in an address header such as Reply-To."""
    value = parse_headers(data)[name]
    addresses = getattr(value, "addresses", ())
    return str(addresses[0].addr_spec) if addresses else None


@dataclass(frozen=True)
class Received:
    """A message the server accepted (replied 250 to its DATA)."""

    number: int
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message_id: str | None
    reply_to: str | None  # the address only
    at: float  # time.time() when the data arrived
    # time.time() when each accepted RCPT arrived, in the order of ``rcpt_tos``: when the letter
    # reached each mailbox's server, for pacing checks (a slow DATA does not blur them)
    rcpt_at: tuple[float, ...] = ()

    def message(self) -> EmailMessage:
        return parse_message(self.data)

    def arrivals(self) -> list[tuple[str, float]]:
        """(recipient, time its RCPT arrived) for each accepted recipient of this message."""
        times = self.rcpt_at if len(self.rcpt_at) == len(self.rcpt_tos) else (self.at,) * len(self.rcpt_tos)
        return list(zip(self.rcpt_tos, times, strict=True))


@dataclass(frozen=True)
class Event:
    """One scripted decision or acceptance, for assertions about what the client attempted."""

    number: int
    stage: Stage
    reply: str  # "250", "421", "451", "550" or "drop"
    rcpt: str | None = None  # the RCPT address (rcpt stage)
    message_id: str | None = None  # the message's Message-ID (data stage)
    at: float = field(default_factory=time.time)


@dataclass
class Rule:
    at: Stage
    reply: ReplyKind
    rcpt: str | None = None
    messages: frozenset[int] | None = None
    times: int | None = None
    hits: int = 0

    def matches(self, number: int, addresses: Iterable[str]) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.messages is not None and number not in self.messages:
            return False
        return self.rcpt is None or self.rcpt.lower() in {a.lower() for a in addresses}


class ScriptedHandler:
    """aiosmtpd handler: stores accepted messages, answers as the rules say. Thread-safe."""

    def __init__(
        self,
        on_message: Callable[[Received], None] | None = None,
        delay: float = 0.0,
        pause: Mapping[Literal["mail", "rcpt"], float] | None = None,
    ) -> None:
        self.on_message = on_message
        self.delay = delay
        # Seconds to wait before answering MAIL or RCPT: a slow server (DATA's is ``delay``).
        self.pause = dict(pause or {})
        self._lock = threading.Condition()
        self._rules: list[Rule] = []
        self._received: list[Received] = []
        self._events: list[Event] = []
        self._transactions = 0
        self._connections = 0

    # scripting -------------------------------------------------------------------------------
    def fail(
        self,
        *,
        at: Stage,
        reply: ReplyKind,
        rcpt: str | None = None,
        messages: Collection[int] | None = None,
        times: int | None = None,
    ) -> Rule:
        """Answer ``reply`` at ``at`` for transactions matching ``rcpt`` and ``messages``.

        ``rcpt`` matches the RCPT address at the rcpt stage, and any recipient at the data stage;
        ``times`` limits how often the rule fires (``None``: every match). The first matching
        rule wins.
        """
        if reply not in ("421", "451", "550", "drop"):
            raise ValueError(f"unknown reply {reply!r}")
        rule = Rule(at, reply, rcpt, None if messages is None else frozenset(messages), times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    # observing -------------------------------------------------------------------------------
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    @property
    def transactions(self) -> int:
        with self._lock:
            return self._transactions

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    def message_ids(self) -> list[str]:
        """Message-IDs of the accepted messages in order ("" for a message without one)."""
        return [r.message_id or "" for r in self.received()]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until at least ``count`` messages were accepted; ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._received)} of {count} messages after {timeout} s")
                self._lock.wait(left)
            return list(self._received)

    # aiosmtpd hooks --------------------------------------------------------------------------
    def _number(self, envelope: Any) -> int:
        number = getattr(envelope, "test_number", None)
        if number is None:
            with self._lock:
                self._transactions += 1
                number = self._transactions
            envelope.test_number = number
        return int(number)

    def _match(self, stage: Stage, number: int, addresses: Iterable[str]) -> Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.at == stage and rule.matches(number, addresses):
                    rule.hits += 1
                    return rule
        return None

    def _event(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    @staticmethod
    async def _answer(server: Any, reply: ReplyKind) -> str:
        if reply == "drop":
            # No reply at all: the client is left not knowing. connection_lost() cancels us.
            server.transport.abort()
            await asyncio.sleep(3600)
            raise AssertionError("unreachable: the handler is cancelled when the connection drops")
        if reply == "421":
            transport = server.transport
            asyncio.get_running_loop().call_soon(transport.close)  # after the reply is written
        return REPLIES[reply]

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        await asyncio.sleep(self.pause.get("mail", 0.0))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        await asyncio.sleep(self.pause.get("rcpt", 0.0))
        number = self._number(envelope)
        rule = self._match("rcpt", number, [address])
        if rule is not None:
            self._event(Event(number, "rcpt", rule.reply, rcpt=address))
            return await self._answer(server, rule.reply)
        event = Event(number, "rcpt", "250", rcpt=address)
        self._event(event)
        envelope.test_rcpt_at = [*getattr(envelope, "test_rcpt_at", ()), event.at]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        number = self._number(envelope)
        data = bytes(envelope.original_content or b"")
        message_id = _header(data, "Message-ID")
        rule = self._match("data", number, envelope.rcpt_tos)
        if rule is not None:
            self._event(Event(number, "data", rule.reply, message_id=message_id))
            return await self._answer(server, rule.reply)
        received = Received(
            number=number,
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data,
            message_id=message_id,
            reply_to=_address(data, "Reply-To"),
            at=time.time(),
            rcpt_at=tuple(getattr(envelope, "test_rcpt_at", ())),
        )
        if self.on_message is not None:
            self.on_message(received)
        with self._lock:
            self._received.append(received)
            self._events.append(Event(number, "data", "250", message_id=message_id))
            self._lock.notify_all()
        if self.delay:
            # Received and logged, but the client hears nothing yet: a window for kill tests.
            await asyncio.sleep(self.delay)
        return "250 OK queued as " + (message_id or "-")

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        # Every client connection starts with EHLO; the controller's readiness probe does not.
        session.host_name = hostname
        with self._lock:
            self._connections += 1
        return responses


def raw_header(data: bytes, name: str) -> str:
    """A header's value as it came over the wire, unfolded: encoded words left encoded."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    found = re.search(rf"^{name}:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.MULTILINE | re.IGNORECASE)
    return re.sub(r"\r\n[ \t]", " ", found.group(1)).strip() if found else ""


class QuotingHandler(ScriptedHandler):
    """Refuses every message at DATA with a reply that quotes its From and Reply-To as they were
    sent, as some servers do: what a supporter's name looks like on the wire reaches the log."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = bytes(envelope.original_content or b"")
        self._event(Event(self._number(envelope), "data", "550", message_id=_header(data, "Message-ID")))
        quoted = f"from {raw_header(data, 'From')} reply-to {raw_header(data, 'Reply-To')}"
        return f"550 5.7.1 Message refused: {quoted}"


class _Controller(Controller):
    """A Controller that binds to port 0 and learns the port the kernel chose."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class SmtpServer:
    """The server in a background thread; a context manager. ``url`` is what to configure."""

    def __init__(
        self,
        handler: ScriptedHandler | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.handler = handler or ScriptedHandler()
        self.host = host
        self._controller = _Controller(
            self.handler,
            hostname=host,
            port=port,
            server_hostname="smtp.test",  # skips socket.getfqdn(), which can hang without DNS
            ready_timeout=10.0,
        )
        self._started = False

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def start(self) -> SmtpServer:
        self._controller.start()
        self._started = True
        return self

    def stop(self) -> None:
        if self._started:
            self._controller.stop()
            self._started = False

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # conveniences: the handler's scripting API, straight through
    @property
    def fail(self) -> Callable[..., Rule]:
        return self.handler.fail

    @property
    def clear_rules(self) -> Callable[[], None]:
        return self.handler.clear_rules

    def received(self) -> list[Received]:
        return self.handler.received()

    def events(self) -> list[Event]:
        return self.handler.events()

    def message_ids(self) -> list[str]:
        return self.handler.message_ids()

    @property
    def transactions(self) -> int:
        return self.handler.transactions

    @property
    def connections(self) -> int:
        return self.handler.connections

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        return self.handler.wait_for(count, timeout)


# as a process --------------------------------------------------------------------------------
def _writer(out: TextIO) -> Callable[[Received], None]:
    def write(received: Received) -> None:
        out.write(f"{received.message_id}\t{received.reply_to}\n")
        out.flush()

    return write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed as 'PORT <n>')")
    parser.add_argument("--out", type=Path, required=True, help="file to append accepted Message-IDs to")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before each 250 to DATA")
    args = parser.parse_args(argv)

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with args.out.open("a", encoding="utf-8") as out:
        server = SmtpServer(
            ScriptedHandler(on_message=_writer(out), delay=args.delay), host=args.host, port=args.port
        )
        with server:
            print(f"PORT {server.port}", flush=True)
            while not done.wait(0.2):
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
